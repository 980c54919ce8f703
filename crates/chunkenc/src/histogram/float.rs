//! The float histogram chunk (encoding 3, Prometheus' `FloatHistogramChunk`): the layout
//! once, then per sample the timestamp (raw, then delta-of-delta varbit) and the count,
//! zero count, sum and each bucket as raw floats (first sample) or XOR against the field's
//! previous value.

use strata_types::histogram::{FloatHistogram, bucket_count};
use strata_types::is_stale_nan;

use super::varbit::{
    Layout, XorValue, put_varbit_int, read_layout, read_varbit_int, truncated, write_layout,
    xor_read, xor_write,
};
use super::{CounterResetHeader, HEADER_BYTES, counter_reset_hint, layout_of};
use crate::bits::{BitReader, BitWriter};
use crate::error::ChunkError;

/// Writes a float histogram chunk; as [`super::HistogramEncoder`], every histogram must have
/// the first one's layout, stale markers aside.
#[derive(Debug, Clone)]
pub struct FloatHistogramEncoder {
    w: BitWriter,
    header: CounterResetHeader,
    num: u16,
    layout: Layout,
    t: i64,
    t_delta: i64,
    count: XorValue,
    zero_count: XorValue,
    sum: XorValue,
    positive: Vec<XorValue>,
    negative: Vec<XorValue>,
}

impl FloatHistogramEncoder {
    /// An empty chunk with the given counter reset header.
    pub fn new(header: CounterResetHeader) -> Self {
        FloatHistogramEncoder {
            w: BitWriter::with_capacity(128),
            header,
            num: 0,
            layout: Layout::default(),
            t: 0,
            t_delta: 0,
            count: XorValue::new(0.0),
            zero_count: XorValue::new(0.0),
            sum: XorValue::new(0.0),
            positive: Vec::new(),
            negative: Vec::new(),
        }
    }

    /// Samples appended.
    pub fn num_samples(&self) -> u16 {
        self.num
    }

    /// Appends `h` at `t` (Prometheus' `appendFloatHistogram`).
    pub fn append(&mut self, t: i64, h: &FloatHistogram) -> Result<(), ChunkError> {
        if self.num == u16::MAX {
            return Err(ChunkError::Full);
        }
        if self.num > 0 && t <= self.t {
            return Err(ChunkError::OutOfOrder { t, last: self.t });
        }
        let stale = is_stale_nan(h.sum);
        let empty;
        let h = if stale {
            empty = FloatHistogram {
                sum: h.sum,
                ..FloatHistogram::default()
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
        let mut t_delta = 0;
        if self.num == 0 {
            self.layout = layout_of(
                h.schema,
                h.zero_threshold,
                &h.positive_spans,
                &h.negative_spans,
                &h.custom_values,
            );
            write_layout(&mut self.w, &self.layout);
            self.positive = h
                .positive_buckets
                .iter()
                .map(|v| XorValue::new(*v))
                .collect();
            self.negative = h
                .negative_buckets
                .iter()
                .map(|v| XorValue::new(*v))
                .collect();
            put_varbit_int(&mut self.w, t);
            for v in [h.count, h.zero_count, h.sum] {
                self.w.write_bits(v.to_bits(), 64);
            }
            self.count.value = h.count;
            self.zero_count.value = h.zero_count;
            self.sum.value = h.sum;
            for b in h.positive_buckets.iter().chain(&h.negative_buckets) {
                self.w.write_bits(b.to_bits(), 64);
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
            put_varbit_int(&mut self.w, t_delta.wrapping_sub(self.t_delta));
            xor_write(&mut self.w, &mut self.count, h.count);
            xor_write(&mut self.w, &mut self.zero_count, h.zero_count);
            xor_write(&mut self.w, &mut self.sum, h.sum);
            for (states, values) in [
                (&mut self.positive, &h.positive_buckets),
                (&mut self.negative, &h.negative_buckets),
            ] {
                for (i, v) in values.iter().enumerate() {
                    let state = states.get_mut(i).ok_or(ChunkError::LayoutMismatch)?;
                    xor_write(&mut self.w, state, *v);
                }
            }
        }
        self.num += 1;
        self.t = t;
        self.t_delta = t_delta;
        Ok(())
    }

    /// The chunk's bytes, as Prometheus' `FloatHistogramChunk.Bytes()`.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.w.len_bytes());
        out.extend_from_slice(&self.num.to_be_bytes());
        out.push(self.header as u8);
        self.w.append_to(&mut out);
        out
    }
}

/// Reads a float histogram chunk, one `(t, histogram)` at a time.
#[derive(Debug, Clone)]
pub struct FloatHistogramIter<'a> {
    r: BitReader<'a>,
    header: CounterResetHeader,
    total: u16,
    read: u16,
    layout: Layout,
    t: i64,
    t_delta: i64,
    count: XorValue,
    zero_count: XorValue,
    sum: XorValue,
    positive: Vec<XorValue>,
    negative: Vec<XorValue>,
    error: Option<ChunkError>,
}

impl<'a> FloatHistogramIter<'a> {
    /// An iterator over `data` (the chunk's bytes, header included).
    pub fn new(data: &'a [u8]) -> Result<Self, ChunkError> {
        let (total, header) = super::read_header(data)?;
        let body = data.get(HEADER_BYTES..).unwrap_or_default();
        Ok(FloatHistogramIter {
            r: BitReader::new(body),
            header,
            total,
            read: 0,
            layout: Layout::default(),
            t: i64::MIN,
            t_delta: 0,
            count: XorValue::new(0.0),
            zero_count: XorValue::new(0.0),
            sum: XorValue::new(0.0),
            positive: Vec::new(),
            negative: Vec::new(),
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
            self.t = read_varbit_int(r)?;
            let mut raw = || {
                r.read_bits(64)
                    .map(f64::from_bits)
                    .ok_or_else(|| truncated(r))
            };
            // The iterator's windows start at 0, as Go's (`leading` 0, `trailing` 0).
            let start = |v: f64| XorValue {
                value: v,
                leading: 0,
                trailing: 0,
            };
            self.count = start(raw()?);
            self.zero_count = start(raw()?);
            self.sum = start(raw()?);
            let (np, nn) = (
                bucket_count(&self.layout.positive_spans),
                bucket_count(&self.layout.negative_spans),
            );
            self.positive = Vec::with_capacity(np);
            self.negative = Vec::with_capacity(nn);
            for _ in 0..np {
                self.positive.push(start(raw()?));
            }
            for _ in 0..nn {
                self.negative.push(start(raw()?));
            }
            return Ok(());
        }
        self.t_delta = self.t_delta.wrapping_add(read_varbit_int(r)?);
        self.t = self.t.wrapping_add(self.t_delta);
        xor_read(r, &mut self.count)?;
        xor_read(r, &mut self.zero_count)?;
        xor_read(r, &mut self.sum)?;
        if is_stale_nan(self.sum.value) {
            return Ok(());
        }
        for state in self.positive.iter_mut().chain(self.negative.iter_mut()) {
            xor_read(r, state)?;
        }
        Ok(())
    }

    fn current(&self) -> FloatHistogram {
        if is_stale_nan(self.sum.value) {
            return FloatHistogram {
                sum: self.sum.value,
                ..FloatHistogram::default()
            };
        }
        FloatHistogram {
            counter_reset_hint: counter_reset_hint(self.header, self.read),
            schema: self.layout.schema,
            zero_threshold: self.layout.zero_threshold,
            zero_count: self.zero_count.value,
            count: self.count.value,
            sum: self.sum.value,
            positive_spans: self.layout.positive_spans.clone(),
            negative_spans: self.layout.negative_spans.clone(),
            positive_buckets: self.positive.iter().map(|s| s.value).collect(),
            negative_buckets: self.negative.iter().map(|s| s.value).collect(),
            custom_values: self.layout.custom_values.clone(),
        }
    }
}

impl Iterator for FloatHistogramIter<'_> {
    type Item = (i64, FloatHistogram);

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
