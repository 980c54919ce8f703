//! Go's `encoding/binary` varints: LEB128 unsigned (`PutUvarint`) and zig-zag signed (`PutVarint`).

/// Appends `v` as a Go uvarint.
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` as a Go (zig-zag) varint.
pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    let zigzag = ((v << 1) ^ (v >> 63)) as u64;
    put_uvarint(out, zigzag);
}

/// Reads a Go uvarint from the start of `buf`: the value and the bytes consumed. `None` when
/// `buf` ends first or the encoding is longer than 10 bytes or overflows 64 bits.
#[inline]
pub fn get_uvarint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    let mut shift: u32 = 0;
    for (i, &byte) in buf.iter().enumerate() {
        if i == 10 {
            return None;
        }
        if byte < 0x80 {
            if i == 9 && byte > 1 {
                return None;
            }
            return Some((value | (u64::from(byte) << shift), i + 1));
        }
        value |= u64::from(byte & 0x7f) << shift;
        shift += 7;
    }
    None
}

/// Reads a Go varint (zig-zag) from the start of `buf`.
#[inline]
pub fn get_varint(buf: &[u8]) -> Option<(i64, usize)> {
    let (zigzag, n) = get_uvarint(buf)?;
    let value = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
    Some((value, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        let mut out = Vec::new();
        put_varint(&mut out, 1_700_000_000_000);
        assert_eq!(out, [0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62]);
        assert_eq!(get_varint(&out), Some((1_700_000_000_000, 6)));
        let mut out = Vec::new();
        put_uvarint(&mut out, 6_360_000);
        assert_eq!(out, [0xc0, 0x97, 0x84, 0x03]);
    }

    #[test]
    fn rejects_overlong_and_truncated() {
        assert_eq!(get_uvarint(&[0x80; 11]), None);
        assert_eq!(get_uvarint(&[0x80, 0x80]), None);
        assert_eq!(get_uvarint(&[]), None);
        assert_eq!(
            get_uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            None
        );
    }

    proptest! {
        #[test]
        fn uvarint_round_trip(v: u64) {
            let mut out = Vec::new();
            put_uvarint(&mut out, v);
            prop_assert_eq!(get_uvarint(&out), Some((v, out.len())));
        }

        #[test]
        fn varint_round_trip(v: i64) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            prop_assert_eq!(get_varint(&out), Some((v, out.len())));
        }
    }
}
