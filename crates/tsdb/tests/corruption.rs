//! Damaged blocks give typed errors that name the block and the section, never a panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use strata_tsdb::index::{Toc, encode_series};
use strata_tsdb::{BlockOptions, BlockReader, BlockWriter, CorruptKind, Error, Section};
use strata_types::{Labels, Sample};

fn write_block(dir: &Path) -> PathBuf {
    let mut writer = BlockWriter::new(dir).unwrap();
    for instance in 0..4 {
        for job in ["api", "db", "web"] {
            let labels = Labels::from_pairs([
                ("__name__", "up".to_owned()),
                ("instance", format!("host-{instance}")),
                ("job", job.to_owned()),
            ]);
            let samples: Vec<Sample> = (0..300i32)
                .map(|i| Sample::new(i64::from(i) * 15_000, f64::from(i % 7)))
                .collect();
            writer.add_samples(&labels, &samples, 7_200_000).unwrap();
        }
    }
    writer.finish(BlockOptions::default()).unwrap().0
}

fn read_everything(dir: &Path) -> Result<usize, Error> {
    let block = BlockReader::open(dir)?;
    let mut samples = 0;
    for series_ref in block.index().all_postings()? {
        let entry = block.series(series_ref)?;
        samples += block.samples(series_ref, &entry, i64::MIN, i64::MAX)?.len();
    }
    for name in block.index().label_names() {
        for value in block.index().label_values(&name)? {
            block.index().postings(&name, &value)?;
        }
    }
    Ok(samples)
}

fn corruption(err: &Error) -> (Section, &CorruptKind) {
    match err {
        Error::Corrupt { source, .. } => (source.section, &source.kind),
        other => panic!("expected a corruption error, got {other}"),
    }
}

fn modify(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

fn toc(dir: &Path) -> Toc {
    let index = std::fs::read(dir.join("index")).unwrap();
    Toc::decode(&index[index.len() - 52..], index.len() as u64).unwrap()
}

#[test]
fn intact_block_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_block(tmp.path());
    assert_eq!(read_everything(&dir).unwrap(), 12 * 300);
}

/// What to damage, how, and the section and kind of error expected.
type DamageCase = (
    &'static str,
    Box<dyn Fn(&Path)>,
    Section,
    fn(&CorruptKind) -> bool,
);

#[test]
fn each_kind_of_damage_is_named() {
    let cases: Vec<DamageCase> = vec![
        (
            "wrong index magic",
            Box::new(|d: &Path| modify(&d.join("index"), |b| b[0] = 0)),
            Section::IndexHeader,
            |k| matches!(k, CorruptKind::BadMagic { .. }),
        ),
        (
            "index version 1",
            Box::new(|d: &Path| modify(&d.join("index"), |b| b[4] = 1)),
            Section::IndexHeader,
            |k| matches!(k, CorruptKind::BadVersion(1)),
        ),
        (
            "truncated index",
            Box::new(|d: &Path| modify(&d.join("index"), |b| b.truncate(b.len() - 10))),
            Section::Toc,
            |k| matches!(k, CorruptKind::BadCrc { .. }),
        ),
        (
            "bad TOC CRC",
            Box::new(|d: &Path| {
                modify(&d.join("index"), |b| {
                    let n = b.len();
                    b[n - 1] ^= 0xff;
                })
            }),
            Section::Toc,
            |k| matches!(k, CorruptKind::BadCrc { .. }),
        ),
        (
            "bad symbol table CRC",
            Box::new(|d: &Path| {
                let t = toc(d);
                modify(&d.join("index"), |b| b[t.symbols as usize + 10] ^= 0x01)
            }),
            Section::Symbols,
            |k| matches!(k, CorruptKind::BadCrc { .. }),
        ),
        (
            "symbol table length past the end",
            Box::new(|d: &Path| {
                let t = toc(d);
                modify(&d.join("index"), |b| {
                    b[t.symbols as usize..t.symbols as usize + 4]
                        .copy_from_slice(&u32::MAX.to_be_bytes())
                })
            }),
            Section::Symbols,
            |k| matches!(k, CorruptKind::Truncated { .. }),
        ),
        (
            "bad postings offset table CRC",
            Box::new(|d: &Path| {
                let t = toc(d);
                modify(&d.join("index"), |b| {
                    b[t.postings_table as usize + 9] ^= 0x01
                })
            }),
            Section::PostingsOffsetTable,
            |k| matches!(k, CorruptKind::BadCrc { .. }),
        ),
        (
            "postings length past the end",
            Box::new(|d: &Path| {
                let t = toc(d);
                modify(&d.join("index"), |b| {
                    b[t.postings as usize..t.postings as usize + 4]
                        .copy_from_slice(&0x7fff_fff0u32.to_be_bytes())
                })
            }),
            Section::Postings,
            |k| matches!(k, CorruptKind::Truncated { .. }),
        ),
        (
            "bad series CRC",
            Box::new(|d: &Path| {
                let t = toc(d);
                let first = t.series.div_ceil(16) * 16;
                modify(&d.join("index"), |b| b[first as usize + 2] ^= 0x01)
            }),
            Section::Series,
            |k| matches!(k, CorruptKind::BadCrc { .. }),
        ),
        (
            "wrong chunk segment magic",
            Box::new(|d: &Path| modify(&d.join("chunks/000001"), |b| b[1] = 0)),
            Section::Chunks(0),
            |k| matches!(k, CorruptKind::BadMagic { .. }),
        ),
        (
            "bad chunk CRC",
            Box::new(|d: &Path| modify(&d.join("chunks/000001"), |b| b[20] ^= 0x10)),
            Section::Chunks(0),
            |k| matches!(k, CorruptKind::BadCrc { .. }),
        ),
        (
            "truncated chunk segment",
            Box::new(|d: &Path| modify(&d.join("chunks/000001"), |b| b.truncate(b.len() / 2))),
            Section::Chunks(0),
            |k| {
                matches!(
                    k,
                    CorruptKind::Truncated { .. } | CorruptKind::OutOfBounds { .. }
                )
            },
        ),
        (
            "bad tombstones CRC",
            Box::new(|d: &Path| modify(&d.join("tombstones"), |b| b[6] ^= 1)),
            Section::Tombstones,
            |k| matches!(k, CorruptKind::BadCrc { .. }),
        ),
        (
            "wrong tombstones magic",
            Box::new(|d: &Path| modify(&d.join("tombstones"), |b| b[0] = 9)),
            Section::Tombstones,
            |k| matches!(k, CorruptKind::BadMagic { .. }),
        ),
    ];
    for (what, damage, section, kind_ok) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_block(tmp.path());
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        damage(&dir);
        let err = read_everything(&dir).expect_err(what);
        let (found_section, kind) = corruption(&err);
        assert_eq!(found_section, section, "{what}: {err}");
        assert!(kind_ok(kind), "{what}: unexpected kind {kind:?}");
        let message = err.to_string();
        assert!(
            message.contains(&name) && message.contains(&section.to_string()),
            "{what}: message {message:?}"
        );
    }
}

#[test]
fn out_of_range_symbol_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_block(tmp.path());
    let block = BlockReader::open(&dir).unwrap();
    let first_ref = block.index().all_postings().unwrap()[0];
    let entry = block.series(first_ref).unwrap();
    let symbols = block.index().symbols();
    let mut refs: Vec<(u32, u32)> = entry
        .labels
        .iter()
        .map(|l| {
            (
                symbols.reverse_lookup(&l.name).unwrap().unwrap(),
                symbols.reverse_lookup(&l.value).unwrap().unwrap(),
            )
        })
        .collect();
    let mut original = Vec::new();
    encode_series(&mut original, &refs, &entry.chunks);
    refs[0].1 = 127; // one byte like the original reference, but past the 26 symbols
    let mut damaged = Vec::new();
    encode_series(&mut damaged, &refs, &entry.chunks);
    assert_eq!(original.len(), damaged.len());
    drop(block);
    let offset = first_ref as usize * 16;
    modify(&dir.join("index"), |b| {
        b[offset..offset + damaged.len()].copy_from_slice(&damaged)
    });
    let err = read_everything(&dir).unwrap_err();
    let (section, kind) = corruption(&err);
    assert_eq!(section, Section::Symbols);
    assert!(
        matches!(kind, CorruptKind::SymbolOutOfRange { reference: 127, .. }),
        "{kind:?}"
    );
}

#[test]
fn malformed_meta_json_is_a_meta_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_block(tmp.path());
    std::fs::write(dir.join("meta.json"), b"{\"ulid\": 1").unwrap();
    assert!(matches!(BlockReader::open(&dir), Err(Error::Meta { .. })));
}

#[test]
fn every_truncation_and_bit_flip_of_the_index_is_survived() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_block(tmp.path());
    let index = std::fs::read(dir.join("index")).unwrap();
    let mut errors = 0;
    for cut in 0..index.len() {
        std::fs::write(dir.join("index"), &index[..cut]).unwrap();
        if read_everything(&dir).is_err() {
            errors += 1;
        }
    }
    assert_eq!(errors, index.len(), "every truncation must be detected");
    for position in 0..index.len() {
        let mut flipped = index.clone();
        flipped[position] ^= 0x40;
        std::fs::write(dir.join("index"), &flipped).unwrap();
        // Padding bytes are not covered by any checksum; everything else is. No panic either way.
        let _ = read_everything(&dir);
    }
}

#[test]
fn every_bit_flip_of_the_chunks_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_block(tmp.path());
    let path = dir.join("chunks/000001");
    let chunks = std::fs::read(&path).unwrap();
    for position in (0..chunks.len()).step_by(7) {
        let mut flipped = chunks.clone();
        flipped[position] ^= 0x08;
        std::fs::write(&path, &flipped).unwrap();
        let outcome = read_everything(&dir);
        // Header bytes 5..8 are padding; everything else is magic, version or CRC-covered.
        if !(5..8).contains(&position) {
            assert!(outcome.is_err(), "flip at {position} went unnoticed");
        }
    }
}
