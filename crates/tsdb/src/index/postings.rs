use crate::encoding::{Decoder, EncodeExt, check_crc};
use crate::error::{CorruptKind, Corruption, Section};

/// A sorted list of series references.
pub type Postings = Vec<u32>;

/// Decodes the postings list whose `len` field is at file offset `offset`; `data` starts
/// there. Checks the CRC, that the count agrees with the length and that refs increase.
pub fn decode_postings(data: &[u8], offset: u64) -> Result<Postings, Corruption> {
    let mut d = Decoder::new(data, offset, Section::Postings);
    let len = d.be32()? as usize;
    let body = d.bytes(len)?;
    let crc = d.bytes(4)?;
    check_crc(body, crc, Section::Postings, offset + 4 + len as u64)?;
    let mut body_decoder = Decoder::new(body, offset + 4, Section::Postings);
    let count = body_decoder.be32()? as usize;
    if count.checked_mul(4) != Some(len.saturating_sub(4)) || len < 4 {
        return Err(body_decoder.err(CorruptKind::Invalid("postings count disagrees with length")));
    }
    let mut refs = Vec::with_capacity(count);
    let mut previous: Option<u32> = None;
    for _ in 0..count {
        let reference = body_decoder.be32()?;
        if previous.is_some_and(|p| p >= reference) {
            return Err(body_decoder.err(CorruptKind::Unsorted("postings")));
        }
        previous = Some(reference);
        refs.push(reference);
    }
    Ok(refs)
}

/// Encodes a postings list (`len | count | refs | CRC`), appending to `out`.
pub(crate) fn encode_postings(out: &mut Vec<u8>, refs: &[u32]) {
    let mut body = Vec::with_capacity(4 + refs.len() * 4);
    body.put_be32(refs.len() as u32);
    for &reference in refs {
        body.put_be32(reference);
    }
    out.put_be32(body.len() as u32);
    let crc = crate::encoding::crc32c(&body);
    out.extend_from_slice(&body);
    out.put_be32(crc);
}

/// The references present in every list. Intersects the shortest lists first and gallops
/// through long lists.
pub fn intersect(mut lists: Vec<Postings>) -> Postings {
    if lists.is_empty() {
        return Vec::new();
    }
    lists.sort_by_key(Vec::len);
    let mut iter = lists.into_iter();
    let mut acc = iter.next().unwrap_or_default();
    for list in iter {
        if acc.is_empty() {
            break;
        }
        acc = intersect_two(&acc, &list);
    }
    acc
}

fn intersect_two(small: &[u32], large: &[u32]) -> Postings {
    let mut out = Vec::with_capacity(small.len());
    let mut rest = large;
    for &reference in small {
        // Gallop: find the first element >= reference.
        let mut step = 1usize;
        let mut hi = 0usize;
        while rest.get(hi).is_some_and(|&x| x < reference) {
            hi += step;
            step *= 2;
        }
        let window_end = (hi + 1).min(rest.len());
        let window_start = hi.saturating_sub(step / 2).min(window_end);
        let window = rest.get(window_start..window_end).unwrap_or_default();
        let index = window_start + window.partition_point(|&x| x < reference);
        rest = rest.get(index..).unwrap_or_default();
        if rest.first() == Some(&reference) {
            out.push(reference);
            rest = rest.get(1..).unwrap_or_default();
        }
        if rest.is_empty() {
            break;
        }
    }
    out
}

/// The references present in any list, sorted and unique.
pub fn merge(lists: Vec<Postings>) -> Postings {
    match lists.len() {
        0 => Vec::new(),
        1 => lists.into_iter().next().unwrap_or_default(),
        _ => {
            let mut all: Vec<u32> = lists.into_iter().flatten().collect();
            all.sort_unstable();
            all.dedup();
            all
        }
    }
}

/// References of `base` that are not in `remove`.
pub fn without(base: &[u32], remove: &[u32]) -> Postings {
    let mut out = Vec::with_capacity(base.len());
    let mut rest = remove;
    for &reference in base {
        let index = rest.partition_point(|&x| x < reference);
        rest = rest.get(index..).unwrap_or_default();
        if rest.first() != Some(&reference) {
            out.push(reference);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn round_trip_and_crc() {
        let mut out = Vec::new();
        encode_postings(&mut out, &[1, 5, 9]);
        assert_eq!(decode_postings(&out, 0).unwrap(), vec![1, 5, 9]);
        out[6] ^= 1;
        assert!(matches!(
            decode_postings(&out, 0).unwrap_err().kind,
            CorruptKind::BadCrc { .. }
        ));
    }

    fn sorted_set() -> impl Strategy<Value = Vec<u32>> {
        proptest::collection::btree_set(0u32..500, 0..200).prop_map(|s| s.into_iter().collect())
    }

    proptest! {
        #[test]
        fn set_operations_match_btreeset(a in sorted_set(), b in sorted_set(), c in sorted_set()) {
            let (sa, sb, sc): (BTreeSet<u32>, BTreeSet<u32>, BTreeSet<u32>) =
                (a.iter().copied().collect(), b.iter().copied().collect(), c.iter().copied().collect());
            let expected: Vec<u32> = sa.iter().filter(|x| sb.contains(x) && sc.contains(x)).copied().collect();
            prop_assert_eq!(intersect(vec![a.clone(), b.clone(), c.clone()]), expected);
            let expected: Vec<u32> = sa.union(&sb).copied().collect();
            prop_assert_eq!(merge(vec![a.clone(), b.clone()]), expected);
            let expected: Vec<u32> = sa.difference(&sb).copied().collect();
            prop_assert_eq!(without(&a, &b), expected);
            let mut encoded = Vec::new();
            encode_postings(&mut encoded, &a);
            prop_assert_eq!(decode_postings(&encoded, 0).unwrap(), a);
        }
    }
}
