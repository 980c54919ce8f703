//! The integer histogram chunk (encoding 2, Prometheus' `HistogramChunk`): the layout once,
//! then per sample the timestamp, count, zero count and each bucket as raw values (first
//! sample) or delta-of-deltas (varbit), and the sum XOR-encoded.

use strata_types::histogram::{Histogram, bucket_count};
use strata_types::is_stale_nan;

use super::varbit::{
    Layout, XorValue, put_varbit_int, put_varbit_uint, read_layout, read_varbit_int,
    read_varbit_uint, truncated, write_layout, xor_read, xor_write,
};
use super::{CounterResetHeader, HEADER_BYTES, counter_reset_hint, layout_of};
use crate::bits::{BitReader, BitWriter};
use crate::error::ChunkError;

/// Writes an integer histogram chunk. Every histogram appended must have the layout of the
/// first (as in the chunks Prometheus writes: it re-encodes a chunk when buckets appear);
/// stale markers (a stale NaN sum) may come after any.
#[derive(Debug, Clone)]
pub struct HistogramEncoder {
    w: BitWriter,
    header: CounterResetHeader,
    num: u16,
    layout: Layout,
    t: i64,
    count: u64,
    zero_count: u64,
    t_delta: i64,
    count_delta: i64,
    zero_count_delta: i64,
    positive: Vec<i64>,
    negative: Vec<i64>,
    positive_delta: Vec<i64>,
    negative_delta: Vec<i64>,
    sum: XorValue,
}

impl HistogramEncoder {
    /// An empty chunk with the given counter reset header.
    pub fn new(header: CounterResetHeader) -> Self {
        HistogramEncoder {
            w: BitWriter::with_capacity(128),
            header,
            num: 0,
            layout: Layout::default(),
            t: 0,
            count: 0,
            zero_count: 0,
            t_delta: 0,
            count_delta: 0,
            zero_count_delta: 0,
            positive: Vec::new(),
            negative: Vec::new(),
            positive_delta: Vec::new(),
            negative_delta: Vec::new(),
            sum: XorValue::new(0.0),
        }
    }

    /// Samples appended.
    pub fn num_samples(&self) -> u16 {
        self.num
    }

    /// Appends `h` at `t` (Prometheus' `appendHistogram`).
    pub fn append(&mut self, t: i64, h: &Histogram) -> Result<(), ChunkError> {
        if self.num == u16::MAX {
            return Err(ChunkError::Full);
        }
        if self.num > 0 && t <= self.t {
            return Err(ChunkError::OutOfOrder { t, last: self.t });
        }
        let stale = is_stale_nan(h.sum);
        let empty;
        let h = if stale {
            // A stale marker: no buckets (and an empty layout if it comes first).
            empty = Histogram {
                sum: h.sum,
                ..Histogram::default()
            };
            &empty
        } else {
            h
        };
        if h.positive_buckets.len() != bucket_count(&h.positive_spans)
            || h.negative_buckets.len() != bucket_count(&h.negative_spans)
        {
            return Err(ChunkError::LayoutMismatch);
        }
        let (mut t_delta, mut count_delta, mut zero_count_delta) = (0, 0, 0);
        if self.num == 0 {
            self.layout = layout_of(
                h.schema,
                h.zero_threshold,
                &h.positive_spans,
                &h.negative_spans,
                &h.custom_values,
            );
            write_layout(&mut self.w, &self.layout);
            self.positive = vec![0; h.positive_buckets.len()];
            self.negative = vec![0; h.negative_buckets.len()];
            self.positive_delta = vec![0; h.positive_buckets.len()];
            self.negative_delta = vec![0; h.negative_buckets.len()];
            put_varbit_int(&mut self.w, t);
            put_varbit_uint(&mut self.w, h.count);
            put_varbit_uint(&mut self.w, h.zero_count);
            self.w.write_bits(h.sum.to_bits(), 64);
            self.sum.value = h.sum;
            for b in h.positive_buckets.iter().chain(&h.negative_buckets) {
                put_varbit_int(&mut self.w, *b);
            }
        } else {
            if !stale
                && layout_of(
                    h.schema,
                    h.zero_threshold,
                    &h.positive_spans,
                    &h.negative_spans,
                    &h.custom_values,
                ) != self.layout
            {
                return Err(ChunkError::LayoutMismatch);
            }
            t_delta = t.wrapping_sub(self.t);
            count_delta = (h.count as i64).wrapping_sub(self.count as i64);
            zero_count_delta = (h.zero_count as i64).wrapping_sub(self.zero_count as i64);
            let t_dod = t_delta.wrapping_sub(self.t_delta);
            let (mut count_dod, mut zero_count_dod) = (
                count_delta.wrapping_sub(self.count_delta),
                zero_count_delta.wrapping_sub(self.zero_count_delta),
            );
            if stale {
                count_dod = 0;
                zero_count_dod = 0;
            }
            put_varbit_int(&mut self.w, t_dod);
            put_varbit_int(&mut self.w, count_dod);
            put_varbit_int(&mut self.w, zero_count_dod);
            xor_write(&mut self.w, &mut self.sum, h.sum);
            for (buckets, (last, last_delta)) in [
                (
                    &h.positive_buckets,
                    (&self.positive, &mut self.positive_delta),
                ),
                (
                    &h.negative_buckets,
                    (&self.negative, &mut self.negative_delta),
                ),
            ] {
                for (i, b) in buckets.iter().enumerate() {
                    let (Some(prev), Some(prev_delta)) = (last.get(i), last_delta.get_mut(i))
                    else {
                        return Err(ChunkError::LayoutMismatch);
                    };
                    let delta = b.wrapping_sub(*prev);
                    put_varbit_int(&mut self.w, delta.wrapping_sub(*prev_delta));
                    *prev_delta = delta;
                }
            }
        }
        self.num += 1;
        self.t = t;
        self.count = h.count;
        self.zero_count = h.zero_count;
        self.t_delta = t_delta;
        self.count_delta = count_delta;
        self.zero_count_delta = zero_count_delta;
        for (dst, src) in self.positive.iter_mut().zip(&h.positive_buckets) {
            *dst = *src;
        }
        for (dst, src) in self.negative.iter_mut().zip(&h.negative_buckets) {
            *dst = *src;
        }
        self.sum.value = h.sum;
        Ok(())
    }

    /// The chunk's bytes, as Prometheus' `HistogramChunk.Bytes()`.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.w.len_bytes());
        out.extend_from_slice(&self.num.to_be_bytes());
        out.push(self.header as u8);
        self.w.append_to(&mut out);
        out
    }
}

/// Reads an integer histogram chunk, one `(t, histogram)` at a time. Errors end the
/// iteration; [`HistogramIter::finish`] tells whether the chunk was whole.
#[derive(Debug, Clone)]
pub struct HistogramIter<'a> {
    r: BitReader<'a>,
    header: CounterResetHeader,
    total: u16,
    read: u16,
    layout: Layout,
    t: i64,
    count: u64,
    zero_count: u64,
    t_delta: i64,
    count_delta: i64,
    zero_count_delta: i64,
    positive: Vec<i64>,
    negative: Vec<i64>,
    positive_delta: Vec<i64>,
    negative_delta: Vec<i64>,
    sum: XorValue,
    error: Option<ChunkError>,
}

impl<'a> HistogramIter<'a> {
    /// An iterator over `data` (the chunk's bytes, header included).
    pub fn new(data: &'a [u8]) -> Result<Self, ChunkError> {
        let (total, header) = super::read_header(data)?;
        let body = data.get(HEADER_BYTES..).unwrap_or_default();
        Ok(HistogramIter {
            r: BitReader::new(body),
            header,
            total,
            read: 0,
            layout: Layout::default(),
            t: i64::MIN,
            count: 0,
            zero_count: 0,
            t_delta: 0,
            count_delta: 0,
            zero_count_delta: 0,
            positive: Vec::new(),
            negative: Vec::new(),
            positive_delta: Vec::new(),
            negative_delta: Vec::new(),
            sum: XorValue::new(0.0),
            error: None,
        })
    }

    /// The chunk's counter reset header.
    pub fn header(&self) -> CounterResetHeader {
        self.header
    }

    /// Ok when every announced sample was read, else the error that stopped reading.
    pub fn finish(self) -> Result<(), ChunkError> {
        match self.error {
            Some(e) => Err(e),
            None if self.read < self.total => Err(ChunkError::Truncated {
                announced: self.total,
                decoded: self.read,
            }),
            None => Ok(()),
        }
    }

    fn read_next(&mut self) -> Result<(), ChunkError> {
        let r = &mut self.r;
        if self.read == 0 {
            self.layout = read_layout(r)?;
            let (np, nn) = (
                bucket_count(&self.layout.positive_spans),
                bucket_count(&self.layout.negative_spans),
            );
            self.t = read_varbit_int(r)?;
            self.count = read_varbit_uint(r)?;
            self.zero_count = read_varbit_uint(r)?;
            // The iterator's window starts at 0, as Go's (`leading` 0, `trailing` 0).
            self.sum = XorValue {
                value: f64::from_bits(r.read_bits(64).ok_or_else(|| truncated(r))?),
                leading: 0,
                trailing: 0,
            };
            self.positive = Vec::with_capacity(np);
            self.negative = Vec::with_capacity(nn);
            for _ in 0..np {
                self.positive.push(read_varbit_int(r)?);
            }
            for _ in 0..nn {
                self.negative.push(read_varbit_int(r)?);
            }
            self.positive_delta = vec![0; np];
            self.negative_delta = vec![0; nn];
            return Ok(());
        }
        self.t_delta = self.t_delta.wrapping_add(read_varbit_int(r)?);
        self.t = self.t.wrapping_add(self.t_delta);
        self.count_delta = self.count_delta.wrapping_add(read_varbit_int(r)?);
        self.count = (self.count as i64).wrapping_add(self.count_delta) as u64;
        self.zero_count_delta = self.zero_count_delta.wrapping_add(read_varbit_int(r)?);
        self.zero_count = (self.zero_count as i64).wrapping_add(self.zero_count_delta) as u64;
        xor_read(r, &mut self.sum)?;
        if is_stale_nan(self.sum.value) {
            return Ok(());
        }
        for (buckets, deltas) in [
            (&mut self.positive, &mut self.positive_delta),
            (&mut self.negative, &mut self.negative_delta),
        ] {
            for (b, d) in buckets.iter_mut().zip(deltas.iter_mut()) {
                *d = d.wrapping_add(read_varbit_int(r)?);
                *b = b.wrapping_add(*d);
            }
        }
        Ok(())
    }

    fn current(&self) -> Histogram {
        if is_stale_nan(self.sum.value) {
            return Histogram {
                sum: self.sum.value,
                ..Histogram::default()
            };
        }
        Histogram {
            counter_reset_hint: counter_reset_hint(self.header, self.read),
            schema: self.layout.schema,
            zero_threshold: self.layout.zero_threshold,
            zero_count: self.zero_count,
            count: self.count,
            sum: self.sum.value,
            positive_spans: self.layout.positive_spans.clone(),
            negative_spans: self.layout.negative_spans.clone(),
            positive_buckets: self.positive.clone(),
            negative_buckets: self.negative.clone(),
            custom_values: self.layout.custom_values.clone(),
        }
    }
}

impl Iterator for HistogramIter<'_> {
    type Item = (i64, Histogram);

    fn next(&mut self) -> Option<Self::Item> {
        if self.error.is_some() || self.read >= self.total {
            return None;
        }
        if let Err(e) = self.read_next() {
            self.error = Some(e);
            return None;
        }
        self.read += 1;
        Some((self.t, self.current()))
    }
}
