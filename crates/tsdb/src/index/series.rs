use strata_types::{Label, Labels};

use super::symbols::{SymbolMemo, Symbols};
use crate::encoding::{Decoder, EncodeExt, check_crc};
use crate::error::{CorruptKind, Corruption, Section};

/// Where one chunk of a series lies and which time it covers (both ends inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    /// Timestamp of the first sample (ms).
    pub min_time: i64,
    /// Timestamp of the last sample (ms).
    pub max_time: i64,
    /// `segment index << 32 | byte offset` in the chunk segment files.
    pub chunk_ref: u64,
}

/// One entry of the series section: its labels and chunk references.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesEntry {
    /// The series' labels.
    pub labels: Labels,
    /// Its chunks in time order.
    pub chunks: Vec<ChunkMeta>,
}

/// Decodes the series entry at file offset `offset` (`data` starts there and may extend
/// further), resolving label symbols through `symbols`.
pub fn decode_series(
    data: &[u8],
    offset: u64,
    symbols: &Symbols,
) -> Result<SeriesEntry, Corruption> {
    decode_series_with(data, offset, symbols, &mut SymbolMemo::default())
}

/// [`decode_series`] for one of a batch of series: symbol lookups go through `memo`, which
/// the batch shares.
pub fn decode_series_with<'s>(
    data: &[u8],
    offset: u64,
    symbols: &'s Symbols,
    memo: &mut SymbolMemo<'s>,
) -> Result<SeriesEntry, Corruption> {
    let section = Section::Series;
    let mut d = Decoder::new(data, offset, section);
    let len = d.uvarint()?;
    let len = usize::try_from(len).map_err(|_| {
        d.err(CorruptKind::OutOfBounds {
            what: "series length",
            value: len,
            limit: data.len() as u64,
        })
    })?;
    let body_offset = d.offset();
    let body = d.bytes(len)?;
    let crc = d.bytes(4)?;
    check_crc(body, crc, section, body_offset + len as u64)?;

    let mut b = Decoder::new(body, body_offset, section);
    let label_count = b.uvarint()?;
    // Each label takes at least 2 bytes: bound allocations by the input.
    if label_count > body.len() as u64 / 2 {
        return Err(b.err(CorruptKind::OutOfBounds {
            what: "label count",
            value: label_count,
            limit: body.len() as u64 / 2,
        }));
    }
    let mut labels = Vec::with_capacity(label_count as usize);
    for _ in 0..label_count {
        let name_ref = b.uvarint32()?;
        let value_ref = b.uvarint32()?;
        let name = symbols.lookup_memo(memo, name_ref)?;
        let value = symbols.lookup_memo(memo, value_ref)?;
        if labels
            .last()
            .is_some_and(|prev: &Label| prev.name.as_str() >= name)
        {
            return Err(b.err(CorruptKind::Unsorted("series labels")));
        }
        labels.push(Label::new(name, value));
    }
    let chunk_count = b.uvarint()?;
    // Each chunk meta takes at least 3 bytes.
    if chunk_count > body.len() as u64 / 3 {
        return Err(b.err(CorruptKind::OutOfBounds {
            what: "chunk count",
            value: chunk_count,
            limit: body.len() as u64 / 3,
        }));
    }
    let mut chunks = Vec::with_capacity(chunk_count as usize);
    let mut previous: Option<ChunkMeta> = None;
    for _ in 0..chunk_count {
        let meta = match previous {
            None => {
                let min_time = b.varint()?;
                let max_time = min_time.wrapping_add(b.uvarint()? as i64);
                let chunk_ref = b.uvarint()?;
                ChunkMeta {
                    min_time,
                    max_time,
                    chunk_ref,
                }
            }
            Some(prev) => {
                let min_time = prev.max_time.wrapping_add(b.uvarint()? as i64);
                let max_time = min_time.wrapping_add(b.uvarint()? as i64);
                let chunk_ref = prev.chunk_ref.wrapping_add(b.varint()? as u64);
                ChunkMeta {
                    min_time,
                    max_time,
                    chunk_ref,
                }
            }
        };
        if meta.max_time < meta.min_time {
            return Err(b.err(CorruptKind::Invalid("chunk max time before min time")));
        }
        chunks.push(meta);
        previous = Some(meta);
    }
    Ok(SeriesEntry {
        labels: Labels::from_sorted(labels),
        chunks,
    })
}

/// Encodes a series entry body from label symbol references and chunk metas: `len | body |
/// CRC`, appended to `out` (alignment is the caller's job).
pub fn encode_series(out: &mut Vec<u8>, label_refs: &[(u32, u32)], chunks: &[ChunkMeta]) {
    let mut body = Vec::with_capacity(16 + label_refs.len() * 4 + chunks.len() * 12);
    body.put_uvarint(label_refs.len() as u64);
    for &(name, value) in label_refs {
        body.put_uvarint(u64::from(name));
        body.put_uvarint(u64::from(value));
    }
    body.put_uvarint(chunks.len() as u64);
    let mut previous: Option<&ChunkMeta> = None;
    for chunk in chunks {
        match previous {
            None => {
                body.put_varint(chunk.min_time);
                body.put_uvarint(chunk.max_time.wrapping_sub(chunk.min_time) as u64);
                body.put_uvarint(chunk.chunk_ref);
            }
            Some(prev) => {
                body.put_uvarint(chunk.min_time.wrapping_sub(prev.max_time) as u64);
                body.put_uvarint(chunk.max_time.wrapping_sub(chunk.min_time) as u64);
                body.put_varint(chunk.chunk_ref.wrapping_sub(prev.chunk_ref) as i64);
            }
        }
        previous = Some(chunk);
    }
    out.put_uvarint(body.len() as u64);
    let crc = crate::encoding::crc32c(&body);
    out.extend_from_slice(&body);
    out.put_be32(crc);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn symbols() -> Symbols {
        let bytes = Symbols::encode([
            "",
            "127.0.0.1:80",
            "__name__",
            "api",
            "http_requests_total",
            "instance",
            "job",
        ]);
        Symbols::decode(Bytes::from(bytes), 0).unwrap()
    }

    #[test]
    fn decodes_the_bytes_prometheus_wrote() {
        // The first series of a promtool 2.42 block (see the reference notes): len 19,
        // 3 labels, 1 chunk from 1700000000000 spanning 6360000 ms at ref 8.
        let mut body = vec![0x03, 0x02, 0x04, 0x05, 0x01, 0x06, 0x03, 0x01];
        body.extend_from_slice(&[
            0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62, 0xc0, 0x97, 0x84, 0x03, 0x08,
        ]);
        let mut data = vec![body.len() as u8];
        data.extend_from_slice(&body);
        data.extend_from_slice(&crate::encoding::crc32c(&body).to_be_bytes());
        assert_eq!(data[0], 19);
        let entry = decode_series(&data, 112, &symbols()).unwrap();
        assert_eq!(
            entry.labels.to_string(),
            r#"{__name__="http_requests_total", instance="127.0.0.1:80", job="api"}"#
        );
        assert_eq!(
            entry.chunks,
            [ChunkMeta {
                min_time: 1_700_000_000_000,
                max_time: 1_700_006_360_000,
                chunk_ref: 8
            }]
        );
        let mut encoded = Vec::new();
        encode_series(&mut encoded, &[(2, 4), (5, 1), (6, 3)], &entry.chunks);
        assert_eq!(encoded, data);
    }

    #[test]
    fn symbol_out_of_range_is_reported() {
        let mut data = Vec::new();
        encode_series(&mut data, &[(2, 99)], &[]);
        let err = decode_series(&data, 16, &symbols()).unwrap_err();
        assert!(matches!(
            err.kind,
            CorruptKind::SymbolOutOfRange {
                reference: 99,
                count: 7
            }
        ));
    }

    proptest! {
        #[test]
        fn chunk_metas_round_trip(
            start in -1_000_000_000i64..1_000_000_000_000,
            spans in proptest::collection::vec((0i64..10_000_000, 1i64..1_000_000, 1u64..100_000), 0..50),
        ) {
            let mut chunks = Vec::new();
            let mut t = start;
            let mut chunk_ref = 8u64;
            for (span, gap, size) in spans {
                chunks.push(ChunkMeta { min_time: t, max_time: t + span, chunk_ref });
                t += span + gap;
                chunk_ref += size;
            }
            let mut data = Vec::new();
            encode_series(&mut data, &[(2, 4)], &chunks);
            let entry = decode_series(&data, 0, &symbols()).unwrap();
            prop_assert_eq!(entry.chunks, chunks);
        }
    }
}
