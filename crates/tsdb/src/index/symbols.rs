use bytes::Bytes;

use crate::encoding::{Decoder, EncodeExt, check_crc};
use crate::error::{CorruptKind, Corruption, Section};

/// Every `SAMPLING`-th symbol's offset is kept in memory, as Prometheus does.
const SAMPLING: usize = 32;

/// Slots of a [`SymbolMemo`].
const MEMO_SLOTS: usize = 512;

/// The symbols a batch of lookups found, direct-mapped by reference (see
/// [`Symbols::lookup_memo`]).
#[derive(Debug)]
pub struct SymbolMemo<'a> {
    slots: Vec<Option<(u32, &'a str)>>,
}

impl Default for SymbolMemo<'_> {
    fn default() -> Self {
        SymbolMemo {
            slots: vec![None; MEMO_SLOTS],
        }
    }
}

/// The symbol table: sorted, unique strings referenced by ordinal.
///
/// Holds the table's bytes and the offset of every 32nd symbol; a lookup skips at most 31
/// strings. Validated completely (CRC, lengths, UTF-8, order) when built.
#[derive(Debug, Clone)]
pub struct Symbols {
    /// The entries region (after the count, before the CRC).
    entries: Bytes,
    /// File offset of `entries[0]`, for error reports.
    base: u64,
    count: u32,
    sampled: Vec<u32>,
}

impl Symbols {
    /// Decodes the symbol table that starts at file offset `offset`; `data` starts there and
    /// may extend past the table's end.
    pub fn decode(data: Bytes, offset: u64) -> Result<Symbols, Corruption> {
        let mut d = Decoder::new(&data, offset, Section::Symbols);
        let len = d.be32()? as usize;
        let body_start = d.position();
        let body = d.bytes(len)?;
        let crc = d.bytes(4)?;
        check_crc(body, crc, Section::Symbols, offset + 4 + len as u64)?;

        let mut body_decoder = Decoder::new(body, offset + 4, Section::Symbols);
        let count = body_decoder.be32()?;
        let entries_start = body_start + 4;
        let mut sampled = Vec::with_capacity(count as usize / SAMPLING + 1);
        let mut previous: Option<&str> = None;
        for i in 0..count {
            if (i as usize).is_multiple_of(SAMPLING) {
                sampled.push((body_decoder.position() - 4) as u32);
            }
            let symbol = body_decoder.uvarint_str()?;
            if let Some(prev) = previous
                && prev >= symbol
            {
                return Err(body_decoder.err(CorruptKind::Unsorted("symbols")));
            }
            previous = Some(symbol);
        }
        let entries_end = entries_start + body_decoder.position() - 4;
        let entries = data.slice(entries_start..entries_end);
        Ok(Symbols {
            entries,
            base: offset + entries_start as u64,
            count,
            sampled,
        })
    }

    /// Number of symbols.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The symbol with ordinal `reference`.
    pub fn lookup(&self, reference: u32) -> Result<&str, Corruption> {
        let out_of_range = || {
            Corruption::new(
                Section::Symbols,
                self.base,
                CorruptKind::SymbolOutOfRange {
                    reference,
                    count: self.count,
                },
            )
        };
        if reference >= self.count {
            return Err(out_of_range());
        }
        let start = *self
            .sampled
            .get(reference as usize / SAMPLING)
            .ok_or_else(out_of_range)?;
        let mut d = self.decoder_at(start as usize);
        // Every symbol was checked to be UTF-8 when the table was decoded; the ones passed
        // on the way are only skipped.
        for _ in 0..reference as usize % SAMPLING {
            d.skip_uvarint_str()?;
        }
        d.uvarint_str()
    }

    /// [`Symbols::lookup`] through `memo`: the symbols of a batch of series repeat (every
    /// series names the same few labels, many share values), and a lookup scans up to 31
    /// strings, so a batch remembers what it found.
    pub fn lookup_memo<'a>(
        &'a self,
        memo: &mut SymbolMemo<'a>,
        reference: u32,
    ) -> Result<&'a str, Corruption> {
        let slot = reference as usize % MEMO_SLOTS;
        if let Some((r, s)) = memo.slots.get(slot).copied().flatten()
            && r == reference
        {
            return Ok(s);
        }
        let found = self.lookup(reference)?;
        if let Some(entry) = memo.slots.get_mut(slot) {
            *entry = Some((reference, found));
        }
        Ok(found)
    }

    /// The ordinal of `symbol`, if present.
    pub fn reverse_lookup(&self, symbol: &str) -> Result<Option<u32>, Corruption> {
        // Find the last sampled symbol <= `symbol`, then scan forward.
        let mut lo = 0usize;
        let mut hi = self.sampled.len();
        while lo < hi {
            let mid = (lo + hi) / 2;
            let at = *self.sampled.get(mid).unwrap_or(&0);
            let candidate = self.decoder_at(at as usize).uvarint_str()?;
            if candidate <= symbol {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            return Ok(None);
        }
        let block = lo - 1;
        let start = *self.sampled.get(block).unwrap_or(&0);
        let mut d = self.decoder_at(start as usize);
        let first = (block * SAMPLING) as u32;
        let last = (first + SAMPLING as u32).min(self.count);
        for reference in first..last {
            let candidate = d.uvarint_str()?;
            if candidate == symbol {
                return Ok(Some(reference));
            }
            if candidate > symbol {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// All symbols in order.
    pub fn iter(&self) -> impl Iterator<Item = Result<&str, Corruption>> + '_ {
        let mut d = self.decoder_at(0);
        (0..self.count).map(move |_| d.uvarint_str())
    }

    fn decoder_at(&self, pos: usize) -> Decoder<'_> {
        let slice = self.entries.get(pos..).unwrap_or_default();
        Decoder::new(slice, self.base + pos as u64, Section::Symbols)
    }

    /// Encodes a symbol table (`len | count | strings | CRC`). Symbols must be sorted and
    /// unique.
    pub fn encode<'s>(symbols: impl IntoIterator<Item = &'s str>) -> Vec<u8> {
        let mut body = Vec::new();
        body.put_be32(0);
        let mut count = 0u32;
        for symbol in symbols {
            body.put_uvarint_str(symbol);
            count += 1;
        }
        if let Some(slot) = body.get_mut(0..4) {
            slot.copy_from_slice(&count.to_be_bytes());
        }
        let mut out = Vec::with_capacity(body.len() + 8);
        out.put_be32(body.len() as u32);
        out.extend_from_slice(&body);
        out.put_be32(crate::encoding::crc32c(&body));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lookup_and_reverse() {
        let words: Vec<String> = (0..100).map(|i| format!("sym{i:03}")).collect();
        let mut all = vec![String::new()];
        all.extend(words);
        let bytes = Symbols::encode(all.iter().map(String::as_str));
        let symbols = Symbols::decode(Bytes::from(bytes), 5).unwrap();
        assert_eq!(symbols.len(), 101);
        for (i, word) in all.iter().enumerate() {
            assert_eq!(symbols.lookup(i as u32).unwrap(), word);
            assert_eq!(symbols.reverse_lookup(word).unwrap(), Some(i as u32));
        }
        assert_eq!(symbols.reverse_lookup("sym0500").unwrap(), None);
        assert_eq!(symbols.reverse_lookup("zzz").unwrap(), None);
        assert!(matches!(
            symbols.lookup(101).unwrap_err().kind,
            CorruptKind::SymbolOutOfRange { .. }
        ));
    }

    #[test]
    fn memo_lookups_equal_plain_lookups() {
        // More symbols than memo slots, looked up in an order that makes slots collide.
        let all: Vec<String> = (0..2000).map(|i| format!("s{i:05}")).collect();
        let bytes = Symbols::encode(all.iter().map(String::as_str));
        let symbols = Symbols::decode(Bytes::from(bytes), 0).unwrap();
        let mut memo = SymbolMemo::default();
        for round in 0..3u32 {
            for i in (0..2000u32).rev().step_by(7 + round as usize) {
                for r in [i, (i + 512) % 2000, 3] {
                    assert_eq!(symbols.lookup_memo(&mut memo, r).unwrap(), all[r as usize]);
                }
            }
        }
        assert!(symbols.lookup_memo(&mut memo, 2000).is_err());
    }

    #[test]
    fn unsorted_and_bad_crc_rejected() {
        let bytes = Symbols::encode(["b", "a"]);
        assert!(matches!(
            Symbols::decode(Bytes::from(bytes), 5).unwrap_err().kind,
            CorruptKind::Unsorted(_)
        ));
        let mut bytes = Symbols::encode(["a", "b"]);
        bytes[9] ^= 0xff;
        assert!(matches!(
            Symbols::decode(Bytes::from(bytes), 5).unwrap_err().kind,
            CorruptKind::BadCrc { .. }
        ));
    }

    proptest! {
        #[test]
        fn round_trip(set in proptest::collection::btree_set(".{0,12}", 0..200)) {
            let bytes = Symbols::encode(set.iter().map(String::as_str));
            let symbols = Symbols::decode(Bytes::from(bytes), 0).unwrap();
            let decoded: Vec<String> = symbols.iter().map(|s| s.unwrap().to_owned()).collect();
            let expected: Vec<String> = set.iter().cloned().collect();
            prop_assert_eq!(&decoded, &expected);
            for (i, s) in expected.iter().enumerate() {
                prop_assert_eq!(symbols.reverse_lookup(s).unwrap(), Some(i as u32));
            }
        }
    }
}
