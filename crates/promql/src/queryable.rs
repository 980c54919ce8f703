use strata_types::histogram::HistogramSample;
use strata_types::{Labels, Matcher, Sample};

use crate::Error;

/// Float samples a storage keeps encoded (its chunks) until the engine reads them: a range
/// query computing a function for all its steps decodes each series only for the steps of
/// the slice it evaluates, one series at a time, instead of holding every decoded sample of
/// the query at once.
pub trait EncodedSamples: Send + Sync + std::fmt::Debug {
    /// Appends the samples with `from <= t <= to` to `out`, strictly increasing in time
    /// (stale markers included). Errors name what failed to decode.
    fn decode(&self, from: i64, to: i64, out: &mut Vec<Sample>) -> Result<(), String>;
    /// How many samples `decode(i64::MIN, i64::MAX, ..)` gives.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Decodes several series at once (`batch`, of which `self` is one; all from the same
    /// storage): appends to `out` what [`decode`](Self::decode) would give for each (and
    /// possibly samples outside `[from, to]`), and pushes, for each in turn, where in `out`
    /// its samples with `from <= t <= to` are. A storage whose decoder is faster on many
    /// series' chunks at once (the XOR decoder's lanes take sixteen chunks) overrides it.
    /// On error, the index in `batch` of the series that failed, and why.
    fn decode_batch(
        &self,
        batch: &[&dyn EncodedSamples],
        from: i64,
        to: i64,
        out: &mut Vec<Sample>,
        runs: &mut Vec<std::ops::Range<usize>>,
    ) -> Result<(), (usize, String)> {
        decode_each(batch, from, to, out, runs)
    }
    /// The concrete type, for [`decode_batch`](Self::decode_batch) overrides.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// [`EncodedSamples::decode_batch`] one series at a time: each series'
/// [`EncodedSamples::decode`] in turn.
pub fn decode_each(
    batch: &[&dyn EncodedSamples],
    from: i64,
    to: i64,
    out: &mut Vec<Sample>,
    runs: &mut Vec<std::ops::Range<usize>>,
) -> Result<(), (usize, String)> {
    for (i, series) in batch.iter().enumerate() {
        let start = out.len();
        series.decode(from, to, out).map_err(|e| (i, e))?;
        runs.push(start..out.len());
    }
    Ok(())
}

/// One series with its samples in time order.
#[derive(Debug, Clone)]
pub struct Series {
    /// The series' labels.
    pub labels: Labels,
    /// Float samples, strictly increasing in time; stale markers included. Empty when
    /// `encoded` holds them.
    pub samples: Vec<Sample>,
    /// The float samples still encoded, decoded by the engine where it reads them.
    pub encoded: Option<std::sync::Arc<dyn EncodedSamples>>,
    /// Native histogram samples, strictly increasing in time (none at a time a float
    /// sample has); stale markers included.
    pub histograms: Vec<HistogramSample>,
}

impl PartialEq for Series {
    fn eq(&self, other: &Self) -> bool {
        let decoded = |s: &Series| -> Result<Vec<Sample>, String> {
            match &s.encoded {
                Some(e) => {
                    let mut out = s.samples.clone();
                    e.decode(i64::MIN, i64::MAX, &mut out)?;
                    Ok(out)
                }
                None => Ok(s.samples.clone()),
            }
        };
        self.labels == other.labels
            && self.histograms == other.histograms
            && decoded(self) == decoded(other)
    }
}

impl Series {
    /// A series of float samples only.
    pub fn floats(labels: Labels, samples: Vec<Sample>) -> Self {
        Series {
            labels,
            samples,
            encoded: None,
            histograms: Vec::new(),
        }
    }

    /// A series of float samples kept encoded.
    pub fn encoded(labels: Labels, samples: std::sync::Arc<dyn EncodedSamples>) -> Self {
        Series {
            labels,
            samples: Vec::new(),
            encoded: Some(samples),
            histograms: Vec::new(),
        }
    }

    /// How many float samples the series holds (decoded or not).
    pub fn float_count(&self) -> usize {
        self.samples.len() + self.encoded.as_ref().map_or(0, |e| e.len())
    }
}

/// What the engine will do with selected data, so a storage can prune or pick resolutions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectHints {
    /// First timestamp needed (ms, inclusive).
    pub start: i64,
    /// Last timestamp needed (ms, inclusive).
    pub end: i64,
    /// Query step (0 for instant queries).
    pub step: i64,
    /// Range of the selector (0 for instant selectors).
    pub range: i64,
    /// Function that surrounds the selector, if any.
    pub func: Option<String>,
}

/// A source of series: the engine's only way to read data.
pub trait Queryable {
    /// Series matching all `matchers` with their samples in `[hints.start, hints.end]`.
    fn select(&self, matchers: &[Matcher], hints: &SelectHints) -> Result<Vec<Series>, Error>;
}

/// An in-memory [`Queryable`] (tests, and the PromQL conformance runner).
#[derive(Debug, Clone, Default)]
pub struct MemQueryable {
    series: Vec<Series>,
    /// Answer float-only series as [`EncodedSamples`] (tests of the engine's lazy path).
    encode_floats: bool,
}

/// Float samples held in memory behind [`EncodedSamples`].
#[derive(Debug)]
struct MemEncoded(Vec<Sample>);

impl EncodedSamples for MemEncoded {
    fn decode(&self, from: i64, to: i64, out: &mut Vec<Sample>) -> Result<(), String> {
        let lo = self.0.partition_point(|s| s.t < from);
        let hi = self.0.partition_point(|s| s.t <= to);
        out.extend_from_slice(self.0.get(lo..hi).unwrap_or_default());
        Ok(())
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl MemQueryable {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether float-only series are answered as [`EncodedSamples`] (as the querier answers
    /// range queries), so the engine decodes them where it reads them.
    pub fn encode_floats(&mut self, yes: bool) {
        self.encode_floats = yes;
    }

    /// The series with `labels`, added empty if new (always `Some`).
    fn series_mut(&mut self, labels: Labels) -> Option<&mut Series> {
        let index = match self.series.iter().position(|s| s.labels == labels) {
            Some(i) => i,
            None => {
                self.series.push(Series::floats(labels, Vec::new()));
                self.series.len() - 1
            }
        };
        self.series.get_mut(index)
    }

    /// Adds samples to a series, keeping time order (later samples at the same time win).
    pub fn add(&mut self, labels: Labels, samples: &[Sample]) {
        if let Some(series) = self.series_mut(labels) {
            series.samples.extend_from_slice(samples);
            keep_last_per_time(&mut series.samples, |s| s.t);
        }
    }

    /// Adds histogram samples to a series, keeping time order (later samples at the same
    /// time win).
    pub fn add_histograms(&mut self, labels: Labels, samples: &[HistogramSample]) {
        if let Some(series) = self.series_mut(labels) {
            series.histograms.extend_from_slice(samples);
            keep_last_per_time(&mut series.histograms, |s| s.t);
        }
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.series.clear();
    }

    /// All series.
    pub fn series(&self) -> &[Series] {
        &self.series
    }
}

/// Sorts by time, keeping the last of equal times.
fn keep_last_per_time<T>(v: &mut Vec<T>, t: impl Fn(&T) -> i64) {
    v.sort_by_key(&t);
    v.reverse();
    v.dedup_by_key(|x| t(x));
    v.reverse();
}

impl Queryable for MemQueryable {
    fn select(&self, matchers: &[Matcher], hints: &SelectHints) -> Result<Vec<Series>, Error> {
        let mut out = Vec::new();
        for series in &self.series {
            if !matchers
                .iter()
                .all(|m| m.matches(series.labels.get(m.name()).unwrap_or("")))
            {
                continue;
            }
            let samples: Vec<Sample> = series
                .samples
                .iter()
                .filter(|s| s.t >= hints.start && s.t <= hints.end)
                .copied()
                .collect();
            let histograms: Vec<HistogramSample> = series
                .histograms
                .iter()
                .filter(|s| s.t >= hints.start && s.t <= hints.end)
                .cloned()
                .collect();
            if self.encode_floats && histograms.is_empty() {
                out.push(Series::encoded(
                    series.labels.clone(),
                    std::sync::Arc::new(MemEncoded(samples)),
                ));
                continue;
            }
            out.push(Series {
                labels: series.labels.clone(),
                samples,
                encoded: None,
                histograms,
            });
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}
