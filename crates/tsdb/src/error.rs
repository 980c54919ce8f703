use std::fmt;
use std::path::PathBuf;

/// A part of a block, named in corruption errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// The index header (magic and version).
    IndexHeader,
    /// The index table of contents (last 52 bytes).
    Toc,
    /// The symbol table.
    Symbols,
    /// The series section.
    Series,
    /// The legacy label indices.
    LabelIndices,
    /// A postings list.
    Postings,
    /// The postings offset table.
    PostingsOffsetTable,
    /// A chunk segment file (0-based index of the segment).
    Chunks(u32),
    /// The tombstones file.
    Tombstones,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Section::IndexHeader => f.write_str("index header"),
            Section::Toc => f.write_str("index TOC"),
            Section::Symbols => f.write_str("index symbol table"),
            Section::Series => f.write_str("index series"),
            Section::LabelIndices => f.write_str("index label indices"),
            Section::Postings => f.write_str("index postings"),
            Section::PostingsOffsetTable => f.write_str("index postings offset table"),
            Section::Chunks(segment) => write!(f, "chunk segment {:06}", segment + 1),
            Section::Tombstones => f.write_str("tombstones"),
        }
    }
}

/// What is wrong with a piece of a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptKind {
    /// Fewer bytes than a field needs.
    #[error("truncated: needs {needed} bytes, {available} available")]
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// A magic number does not match.
    #[error("bad magic 0x{found:08x}, expected 0x{expected:08x}")]
    BadMagic {
        /// Found.
        found: u32,
        /// Expected.
        expected: u32,
    },
    /// A format version is not supported.
    #[error("unsupported version {0}")]
    BadVersion(u8),
    /// A CRC32C checksum does not match.
    #[error("checksum mismatch: stored 0x{stored:08x}, computed 0x{computed:08x}")]
    BadCrc {
        /// Stored in the file.
        stored: u32,
        /// Computed over the bytes.
        computed: u32,
    },
    /// A length or offset points past the end of the data.
    #[error("{what} {value} points past the end ({limit})")]
    OutOfBounds {
        /// Which field.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The limit it exceeds.
        limit: u64,
    },
    /// A varint is malformed.
    #[error("malformed varint")]
    BadVarint,
    /// A symbol reference past the symbol table.
    #[error("symbol reference {reference} out of range ({count} symbols)")]
    SymbolOutOfRange {
        /// The reference.
        reference: u32,
        /// Symbols in the table.
        count: u32,
    },
    /// A string is not UTF-8.
    #[error("string is not valid UTF-8")]
    BadUtf8,
    /// An ordering invariant is broken.
    #[error("not sorted: {0}")]
    Unsorted(&'static str),
    /// A chunk's payload could not be decoded.
    #[error("chunk payload: {0}")]
    Chunk(#[from] strata_chunkenc::ChunkError),
    /// A structural rule is broken.
    #[error("{0}")]
    Invalid(&'static str),
}

/// Corruption found by a sans-IO decoder: the section, the byte offset and what is wrong.
/// Block readers wrap it in [`Error::Corrupt`] with the block's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{section} at byte {offset}: {kind}")]
pub struct Corruption {
    /// Section of the block.
    pub section: Section,
    /// Byte offset inside the file where the problem was found.
    pub offset: u64,
    /// What is wrong.
    pub kind: CorruptKind,
}

impl Corruption {
    /// A corruption at `offset` of `section`.
    pub fn new(section: Section, offset: u64, kind: CorruptKind) -> Self {
        Corruption {
            section,
            offset,
            kind,
        }
    }
}

/// Errors of the block reader and writer. Each names the block (ULID or directory).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes of the block are corrupt.
    #[error("block {block}: {source}")]
    Corrupt {
        /// Block ULID or directory.
        block: String,
        /// What and where.
        source: Corruption,
    },
    /// A file could not be read or written.
    #[error("block {block}: {path}: {source}")]
    Io {
        /// Block ULID or directory.
        block: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// meta.json is malformed or of an unsupported version.
    #[error("block {block}: meta.json: {source}")]
    Meta {
        /// Block ULID or directory.
        block: String,
        /// The problem.
        source: crate::meta::MetaError,
    },
    /// A chunk reference points nowhere.
    #[error("block {block}: chunk reference {reference:#x} points outside the chunk segments")]
    BadChunkRef {
        /// Block ULID or directory.
        block: String,
        /// The reference.
        reference: u64,
    },
    /// The writer was given input that breaks the block format's rules.
    #[error("block {block}: invalid input to writer: {reason}")]
    InvalidInput {
        /// Block ULID or directory.
        block: String,
        /// Which rule.
        reason: String,
    },
}

impl Error {
    /// A corruption of block `block`.
    pub fn corrupt(block: &str, source: Corruption) -> Self {
        Error::Corrupt {
            block: block.to_owned(),
            source,
        }
    }

    pub(crate) fn io(block: &str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            block: block.to_owned(),
            path: path.into(),
            source,
        }
    }

    /// Invalid input for block `block`.
    pub fn invalid(block: &str, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            block: block.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
