use strata_types::histogram::HistogramSample;
use strata_types::{Labels, Matcher, Sample};

use crate::Error;

/// One series with its samples in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series' labels.
    pub labels: Labels,
    /// Float samples, strictly increasing in time; stale markers included.
    pub samples: Vec<Sample>,
    /// Native histogram samples, strictly increasing in time (none at a time a float
    /// sample has); stale markers included.
    pub histograms: Vec<HistogramSample>,
}

impl Series {
    /// A series of float samples only.
    pub fn floats(labels: Labels, samples: Vec<Sample>) -> Self {
        Series {
            labels,
            samples,
            histograms: Vec::new(),
        }
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
}

impl MemQueryable {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
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
            let histograms = series
                .histograms
                .iter()
                .filter(|s| s.t >= hints.start && s.t <= hints.end)
                .cloned()
                .collect();
            out.push(Series {
                labels: series.labels.clone(),
                samples,
                histograms,
            });
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}
