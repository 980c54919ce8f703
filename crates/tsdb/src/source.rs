//! Loading block files into memory-mapped [`Bytes`].
//!
//! The only module of the crate with `unsafe` code: memory-mapping a file.

#![allow(unsafe_code)]

use std::fs::File;
use std::path::Path;

use bytes::Bytes;

/// Maps `path` read-only. Block files are immutable once written (Prometheus and Strata write
/// them to a temporary directory and rename it), so the mapping's contents do not change.
/// The index writer also maps the index it is writing, after the symbol table: it only
/// appends past the mapped length, so the mapped bytes never change either.
pub fn map_file(path: &Path) -> std::io::Result<Bytes> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: the file is opened read-only and block files are never modified in place;
    // another process truncating it underneath us is outside the contract of a block
    // directory (Prometheus relies on the same).
    let map = unsafe { memmap2::Mmap::map(&file)? };
    Ok(Bytes::from_owner(map))
}

/// A read-only file mapping whose resident pages can be handed back to the kernel.
#[derive(Debug, Clone)]
pub struct MappedFile {
    map: Option<std::sync::Arc<memmap2::Mmap>>,
}

struct SharedMap(std::sync::Arc<memmap2::Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref()
    }
}

impl MappedFile {
    /// Drops the mapping's pages from this process' resident set (`MADV_DONTNEED`): they
    /// stay in the page cache and are mapped in again when touched. For a file read once
    /// end to end at load (to validate it), this keeps resident only what lookups touch.
    pub fn release(&self) -> std::io::Result<()> {
        let Some(map) = &self.map else {
            return Ok(());
        };
        // SAFETY: the mapping is read-only and file-backed and the file is never modified
        // in place, so dropping its pages loses nothing: later reads see the same bytes.
        unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) }
    }
}

/// Maps `path` read-only, as [`map_file`], also returning a handle to release its pages.
pub fn map_file_releasable(path: &Path) -> std::io::Result<(Bytes, MappedFile)> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok((Bytes::new(), MappedFile { map: None }));
    }
    // SAFETY: as in `map_file`.
    let map = std::sync::Arc::new(unsafe { memmap2::Mmap::map(&file)? });
    let bytes = Bytes::from_owner(SharedMap(std::sync::Arc::clone(&map)));
    Ok((bytes, MappedFile { map: Some(map) }))
}
