//! Reading a range of a FILESYSTEM bucket's file as a read-only memory mapping.
//!
//! The only module of the crate with `unsafe` code: memory-mapping a file.

#![allow(unsafe_code)]

use std::fs::File;
use std::io::{Error, ErrorKind};
use std::ops::Range;
use std::path::Path;

use bytes::Bytes;

/// Bytes `range` of the file at `path`, mapped read-only with their pages faulted in at
/// once (`MAP_POPULATE`), so that reading them later neither copies nor faults. The
/// mapping lives as long as the returned [`Bytes`] or any slice of it. A range past the end
/// of the file is an error, as for any other read.
pub(crate) fn map_range(path: &Path, range: Range<u64>) -> std::io::Result<Bytes> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    if range.start > range.end || range.end > size {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "range {}..{} is outside the file ({size} bytes)",
                range.start, range.end
            ),
        ));
    }
    if range.start == range.end {
        return Ok(Bytes::new());
    }
    let len = usize::try_from(range.end - range.start)
        .map_err(|_| Error::new(ErrorKind::InvalidInput, "range longer than memory"))?;
    // SAFETY: the mapping is read-only and a bucket's objects are never modified in place:
    // uploads write a staging file and rename it over the object (`Local::copy_in`,
    // object_store's `put`), which leaves a mapped old file intact, and deleting a mapped
    // file keeps its pages until unmapped. Only another program truncating a file of the
    // bucket underneath us could fault the mapping, which is outside a FILESYSTEM bucket's
    // contract (Prometheus relies on the same for its block files).
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(range.start)
            .len(len)
            .populate()
            .map(&file)
    };
    match map {
        Ok(map) => Ok(Bytes::from_owner(map)),
        // Out of mappings (`vm.max_map_count`) or address space: read the range instead.
        Err(_) => read_range(&file, range.start, len),
    }
}

/// Bytes `[offset, offset + len)` of `file`, read into memory.
fn read_range(file: &File, offset: u64, len: usize) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_range_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        // Unaligned starts and ends, a whole file, an empty range.
        for range in [0..20_000u64, 1..2, 4095..4097, 12_345..20_000, 7..7] {
            let got = map_range(&path, range.clone()).unwrap();
            assert_eq!(&got[..], &data[range.start as usize..range.end as usize]);
        }
        // Past the end, or reversed: errors, not a fault.
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 10..5;
        for range in [0..20_001u64, 20_001..20_002, reversed] {
            let err = map_range(&path, range).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
        }
        let missing = map_range(&dir.path().join("missing"), 0..1).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn the_read_fallback_gives_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..9_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(
            &read_range(&file, 4095, 3000).unwrap()[..],
            &data[4095..7095]
        );
        // A file shorter than asked (truncated underneath): an error, not short bytes.
        assert!(read_range(&file, 8_000, 2_000).is_err());
    }

    #[test]
    fn mapped_bytes_survive_replacing_and_deleting_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 10_000]).unwrap();
        let got = map_range(&path, 100..9_000).unwrap();
        // Replaced by rename, as uploads do, then deleted.
        let staging = dir.path().join("f#1");
        std::fs::write(&staging, vec![9u8; 10_000]).unwrap();
        std::fs::rename(&staging, &path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(got.iter().all(|&b| b == 7));
        assert_eq!(got.len(), 8_900);
    }
}
