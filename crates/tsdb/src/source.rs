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
