//! Sixteen XOR chunks decoded at once, one per 64-bit lane of two AVX-512 registers.
//!
//! One chunk's decoding is a serial chain: where sample `k + 1` starts depends on every
//! code of sample `k`, so a scalar decoder waits on that chain (or on mispredicted branches,
//! because the value codes of real counters and gauges are unpredictable). Sixteen chunks are
//! sixteen independent chains: each lane walks its own chunk with gathers, variable shifts and
//! masks, without branches, and the lanes' latencies overlap.
//!
//! Exactness rests on one rule: a lane that meets anything unusual (the rare 64-bit
//! delta-of-delta code, an impossible value window, a position past its chunk's end) stops,
//! and its chunk is decoded again, whole, by the scalar decoder, whose result (samples or
//! error) is what the caller gets. Memory safety does not rest on the decoding logic: every
//! gather index is clamped into the buffer first.

// The gathers and vector loads/stores of `std::arch` take raw pointers; each use below says
// why the memory it touches is inside a live buffer.
#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m512i, _mm512_add_epi64, _mm512_and_si512, _mm512_cmpeq_epi64_mask, _mm512_cmpgt_epu64_mask,
    _mm512_i64gather_epi64, _mm512_loadu_si512, _mm512_lzcnt_epi64, _mm512_mask_add_epi64,
    _mm512_mask_mov_epi64, _mm512_mask_sub_epi64, _mm512_mask_xor_epi64, _mm512_min_epu64,
    _mm512_movepi64_mask, _mm512_permutexvar_epi64, _mm512_set1_epi64, _mm512_setr_epi64,
    _mm512_shldv_epi64, _mm512_shuffle_epi8, _mm512_sllv_epi64, _mm512_srli_epi64,
    _mm512_srlv_epi64, _mm512_storeu_si512, _mm512_sub_epi64, _mm512_ternarylogic_epi64,
};

use super::{Sink, State, XorIter};
use crate::ChunkError;

/// Lanes in one register.
const LANES: usize = 8;
/// Chunks one call of [`decode_group`] takes: two registers of lanes.
pub(super) const GROUP: usize = 2 * LANES;
/// Zero bytes after each chunk in the gather buffer: a lane's reads reach at most 24 + 13
/// bits plus 16 bytes past its position, and its position is checked against its end.
const PAD: usize = 32;

/// Whether this CPU has the AVX-512 subsets the lane decoder uses.
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512cd")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vbmi2")
}

/// One lane's chunk after its first two samples, decoded by the scalar code.
struct Lane {
    /// Bit position of sample 2 in the gather buffer.
    pos: u64,
    /// Bit position just past the chunk's last byte in the gather buffer.
    end: u64,
    /// Samples left after the first two.
    remaining: u64,
    state: State,
}

/// Decodes up to sixteen chunks whose sample counts are known, writing chunk `i`'s samples
/// to `outputs[i]` (each exactly as long as its header says). Returns, for each chunk, the
/// error that decoding it gave, decided by the scalar decoder.
///
/// `scratch` holds the gather buffer (the chunks, each padded with zeros) and the lanes' output
/// rows; it is reused from group to group.
pub(super) fn decode_group<S: Sink>(
    chunks: &[&[u8]],
    outputs: &mut [S],
    scratch: &mut Scratch,
) -> [Option<ChunkError>; GROUP] {
    debug_assert!(chunks.len() <= GROUP && chunks.len() == outputs.len());
    let mut errors: [Option<ChunkError>; GROUP] = Default::default();
    let mut lanes: [Option<Lane>; GROUP] = Default::default();
    scratch.buf.clear();
    for (i, (chunk, out)) in chunks.iter().zip(outputs.iter_mut()).enumerate() {
        let base = scratch.buf.len();
        scratch.buf.extend_from_slice(chunk);
        scratch.buf.resize(scratch.buf.len() + PAD, 0);
        let Some(lane) = start_lane(chunk, base, out) else {
            continue;
        };
        if let Some(slot) = lanes.get_mut(i) {
            *slot = Some(lane);
        }
    }
    // Room for the clamped gathers of an empty group.
    scratch.buf.resize(scratch.buf.len().max(2 * PAD), 0);
    let rounds = lanes
        .iter()
        .flatten()
        .map(|lane| lane.remaining)
        .max()
        .unwrap_or(0) as usize;
    // Every row a round reaches is overwritten; only the length matters.
    scratch.t.resize(rounds * GROUP, 0);
    scratch.v.resize(rounds * GROUP, 0);
    let failed = if rounds == 0 {
        0
    } else {
        // SAFETY: `available()` was checked by the caller before any group was decoded.
        unsafe { run_lanes(&lanes, &scratch.buf, &mut scratch.t, &mut scratch.v, rounds) }
    };
    for (i, (chunk, out)) in chunks.iter().zip(outputs.iter_mut()).enumerate() {
        let lane = match lanes.get(i) {
            Some(Some(lane)) if failed & (1 << i) == 0 => lane,
            // No lane (at most two samples, or a bad start) or a lane that stopped early:
            // the scalar decoder decides.
            _ => {
                if let (Err(err), Some(slot)) = (out.decode_scalar(chunk), errors.get_mut(i)) {
                    *slot = Some(err);
                }
                continue;
            }
        };
        // Column `i` of the lanes' output rows, one row a round.
        debug_assert!(out.len() == lane.remaining as usize + 2);
        out.put_rows(&scratch.t, &scratch.v, i);
    }
    errors
}

/// Reusable buffers of [`decode_group`].
#[derive(Debug, Default)]
pub(super) struct Scratch {
    buf: Vec<u8>,
    t: Vec<i64>,
    v: Vec<i64>,
}

impl Scratch {
    /// Frees the buffers after a rare large group (a chunk far longer than 120 samples).
    pub(super) fn shrink(&mut self) {
        if self.t.capacity() > 1 << 16 || self.buf.capacity() > 1 << 20 {
            *self = Scratch::default();
        }
    }
}

thread_local! {
    /// One [`Scratch`] a thread: decoding is called series after series.
    pub(super) static SCRATCH: std::cell::RefCell<Scratch> =
        std::cell::RefCell::new(Scratch::default());
}

/// Decodes a chunk's first two samples (varints, not lane-friendly) into `out` and returns
/// its lane, or `None` when the scalar decoder should take the whole chunk.
fn start_lane<S: Sink>(chunk: &[u8], base: usize, out: &mut S) -> Option<Lane> {
    let mut iter = XorIter::new(chunk).ok()?;
    if iter.total <= 2 || out.len() != usize::from(iter.total) {
        return None;
    }
    for k in 0..2 {
        let (t, v) = iter.next_sample()?;
        out.put(k, t, v);
    }
    let base_bits = (base as u64) * 8;
    Some(Lane {
        pos: base_bits + iter.pos as u64,
        end: base_bits + (chunk.len() as u64) * 8,
        remaining: u64::from(iter.total - 2),
        state: iter.state.clone(),
    })
}

/// A vector of eight lanes from an array.
#[inline]
#[target_feature(enable = "avx512f")]
fn load(values: &[i64; LANES]) -> __m512i {
    // SAFETY: reads exactly the 64 bytes of `values`; unaligned loads are allowed.
    unsafe { _mm512_loadu_si512(values.as_ptr().cast()) }
}

/// Eight lanes into an array.
#[inline]
#[target_feature(enable = "avx512f")]
fn store(vector: __m512i) -> [i64; LANES] {
    let mut out = [0i64; LANES];
    // SAFETY: writes exactly the 64 bytes of `out`; unaligned stores are allowed.
    unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), vector) };
    out
}

/// Eight big-endian 64-bit words of `buf` at byte offsets `at` (clamped into `buf`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn gather_be(buf: &[u8], at: __m512i, bswap: __m512i) -> __m512i {
    // `buf` holds at least 16 bytes (see decode_group), so the clamp is non-negative.
    let last = _mm512_set1_epi64((buf.len() - 8) as i64);
    let at = _mm512_min_epu64(at, last);
    // SAFETY: every offset is at most `buf.len() - 8`, so each 8-byte read is inside `buf`.
    let words = unsafe { _mm512_i64gather_epi64::<1>(at, buf.as_ptr().cast()) };
    _mm512_shuffle_epi8(words, bswap)
}

/// One register's worth of lanes: eight chunks' decoder states.
struct Regs {
    p: __m512i,
    end: __m512i,
    remaining: __m512i,
    t: __m512i,
    t_delta: __m512i,
    v: __m512i,
    lead: __m512i,
    sig: __m512i,
    live: u8,
    failed: u8,
}

/// The constants of [`step`].
struct Consts {
    bswap: __m512i,
    ts_len: __m512i,
    code_len: __m512i,
    payload_shift: __m512i,
    half: __m512i,
    wrap: __m512i,
    one: __m512i,
    three: __m512i,
    seven: __m512i,
    eight: __m512i,
    eleven: __m512i,
    mask5: __m512i,
    mask6: __m512i,
    sixty_four: __m512i,
}

/// Loads eight lanes' states into registers.
#[inline]
#[target_feature(enable = "avx512f")]
fn regs(lanes: &[Option<Lane>]) -> Regs {
    let field = |f: &dyn Fn(&Lane) -> u64| -> [i64; LANES] {
        let mut out = [0i64; LANES];
        for (slot, lane) in out.iter_mut().zip(lanes) {
            if let Some(lane) = lane {
                *slot = f(lane) as i64;
            }
        }
        out
    };
    let mut live: u8 = 0;
    for (i, lane) in lanes.iter().take(LANES).enumerate() {
        if lane.is_some() {
            live |= 1 << i;
        }
    }
    Regs {
        p: load(&field(&|l| l.pos)),
        end: load(&field(&|l| l.end)),
        remaining: load(&field(&|l| l.remaining)),
        t: load(&field(&|l| l.state.t as u64)),
        t_delta: load(&field(&|l| l.state.t_delta)),
        v: load(&field(&|l| l.state.v)),
        lead: load(&field(&|l| u64::from(l.state.leading))),
        sig: load(&field(&|l| {
            u64::from(64u32.saturating_sub(l.state.leading + l.state.trailing))
        })),
        live,
        failed: 0,
    }
}

/// Walks every lane to its chunk's end; returns a bit mask of lanes that stopped early.
/// Two registers of lanes advance together, so that one's latency hides the other's.
///
/// # Safety
/// The CPU must have the features [`available`] checks.
#[target_feature(enable = "avx512f,avx512cd,avx512bw,avx512dq,avx512vbmi2")]
unsafe fn run_lanes(
    lanes: &[Option<Lane>; GROUP],
    buf: &[u8],
    out_t: &mut [i64],
    out_v: &mut [i64],
    rounds: usize,
) -> u16 {
    let (first, second) = lanes.split_at(LANES);
    let mut a = regs(first);
    let mut b = regs(second);
    let c = Consts {
        bswap: _mm512_setr_epi64(
            0x0001_0203_0405_0607,
            0x0809_0a0b_0c0d_0e0f,
            0x0001_0203_0405_0607,
            0x0809_0a0b_0c0d_0e0f,
            0x0001_0203_0405_0607,
            0x0809_0a0b_0c0d_0e0f,
            0x0001_0203_0405_0607,
            0x0809_0a0b_0c0d_0e0f,
        ),
        // Tables indexed by the leading ones of the delta-of-delta code (0..=3).
        ts_len: _mm512_setr_epi64(1, 16, 20, 24, 0, 0, 0, 0),
        code_len: _mm512_setr_epi64(1, 2, 3, 4, 0, 0, 0, 0),
        payload_shift: _mm512_setr_epi64(64, 50, 47, 44, 64, 64, 64, 64),
        half: _mm512_setr_epi64(0, 1 << 13, 1 << 16, 1 << 19, 0, 0, 0, 0),
        wrap: _mm512_setr_epi64(0, 1 << 14, 1 << 17, 1 << 20, 0, 0, 0, 0),
        one: _mm512_set1_epi64(1),
        three: _mm512_set1_epi64(3),
        seven: _mm512_set1_epi64(7),
        eight: _mm512_set1_epi64(8),
        eleven: _mm512_set1_epi64(11),
        mask5: _mm512_set1_epi64(0x1f),
        mask6: _mm512_set1_epi64(0x3f),
        sixty_four: _mm512_set1_epi64(64),
    };
    for (round, (t_row, v_row)) in out_t
        .chunks_exact_mut(GROUP)
        .zip(out_v.chunks_exact_mut(GROUP))
        .take(rounds)
        .enumerate()
    {
        let round = _mm512_set1_epi64(round as i64);
        let more_a = step(&mut a, round, &c, buf);
        let more_b = step(&mut b, round, &c, buf);
        let (t_a, t_b) = t_row.split_at_mut(LANES);
        let (v_a, v_b) = v_row.split_at_mut(LANES);
        t_a.copy_from_slice(&store(a.t));
        v_a.copy_from_slice(&store(a.v));
        t_b.copy_from_slice(&store(b.t));
        v_b.copy_from_slice(&store(b.v));
        if !more_a && !more_b {
            break;
        }
    }
    // A lane that ended past its chunk read bytes that are not its own.
    a.failed |= a.live & _mm512_cmpgt_epu64_mask(a.p, a.end);
    b.failed |= b.live & _mm512_cmpgt_epu64_mask(b.p, b.end);
    u16::from(a.failed) | (u16::from(b.failed) << LANES)
}

/// Decodes sample `round + 2` of every lane still going; false once none is.
#[inline]
#[target_feature(enable = "avx512f,avx512cd,avx512bw,avx512dq,avx512vbmi2")]
fn step(r: &mut Regs, round: __m512i, c: &Consts, buf: &[u8]) -> bool {
    let wanted = r.live & !r.failed & _mm512_cmpgt_epu64_mask(r.remaining, round);
    let active = wanted & !_mm512_cmpgt_epu64_mask(r.p, r.end);
    // Lanes past their end before finishing are truncated: the scalar decoder says so.
    r.failed |= wanted & !active;
    if active == 0 {
        return false;
    }
    // 128 bits from byte `p / 8`: enough for the timestamp code (at most 24 bits after the
    // first 7), the value header (13) and its significant bits (64).
    let at = _mm512_srli_epi64::<3>(r.p);
    let high = gather_be(buf, at, c.bswap);
    let low = gather_be(buf, _mm512_add_epi64(at, c.eight), c.bswap);
    let skip = _mm512_and_si512(r.p, c.seven);
    let head = _mm512_shldv_epi64(high, low, skip);
    // Leading ones of the timestamp code: lzcnt of the complement.
    let ones = _mm512_lzcnt_epi64(_mm512_ternarylogic_epi64::<0x55>(head, head, head));
    r.failed |= active & _mm512_cmpgt_epu64_mask(ones, c.three);
    let len = _mm512_permutexvar_epi64(ones, c.ts_len);
    let raw = _mm512_srlv_epi64(
        _mm512_sllv_epi64(head, _mm512_permutexvar_epi64(ones, c.code_len)),
        _mm512_permutexvar_epi64(ones, c.payload_shift),
    );
    let negative = _mm512_cmpgt_epu64_mask(raw, _mm512_permutexvar_epi64(ones, c.half));
    let dod = _mm512_mask_sub_epi64(raw, negative, raw, _mm512_permutexvar_epi64(ones, c.wrap));
    r.t_delta = _mm512_mask_add_epi64(r.t_delta, active, r.t_delta, dod);
    r.t = _mm512_mask_add_epi64(r.t, active, r.t, r.t_delta);

    // The value's control bits, right after the timestamp code.
    let control = _mm512_sllv_epi64(head, len);
    let nonzero = _mm512_movepi64_mask(control) & active;
    let new_window = _mm512_cmpeq_epi64_mask(_mm512_srli_epi64::<62>(control), c.three) & active;
    let new_lead = _mm512_and_si512(_mm512_srli_epi64::<57>(control), c.mask5);
    let new_sig = _mm512_add_epi64(
        _mm512_and_si512(
            _mm512_sub_epi64(_mm512_srli_epi64::<51>(control), c.one),
            c.mask6,
        ),
        c.one,
    );
    r.lead = _mm512_mask_mov_epi64(r.lead, new_window, new_lead);
    r.sig = _mm512_mask_mov_epi64(r.sig, new_window, new_sig);
    let window = _mm512_add_epi64(r.lead, r.sig);
    r.failed |= active & _mm512_cmpgt_epu64_mask(window, c.sixty_four);
    let header = _mm512_mask_add_epi64(c.one, nonzero, c.one, c.one);
    let header = _mm512_mask_add_epi64(header, new_window, header, c.eleven);
    let q = _mm512_add_epi64(_mm512_add_epi64(r.p, len), header);

    // The value's significant bits start at most 7 + 24 + 13 bits into the 128.
    let word = _mm512_shldv_epi64(
        high,
        low,
        _mm512_add_epi64(skip, _mm512_add_epi64(len, header)),
    );
    let bits = _mm512_srlv_epi64(word, _mm512_sub_epi64(c.sixty_four, r.sig));
    let delta = _mm512_sllv_epi64(bits, _mm512_sub_epi64(c.sixty_four, window));
    r.v = _mm512_mask_xor_epi64(r.v, nonzero, r.v, delta);
    let next = _mm512_mask_add_epi64(q, nonzero, q, r.sig);
    r.p = _mm512_mask_mov_epi64(r.p, active, next);
    true
}
