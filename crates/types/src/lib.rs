//! Shared data types of Strata: label sets, label matchers and samples, and Prometheus'
//! time and duration strings.
//!
//! This crate owns the in-memory model only. It performs no IO, has no async code and knows
//! nothing of any file or wire format; the TSDB block format lives in `strata-tsdb`, chunk
//! encodings in `strata-chunkenc`.

pub mod api_time;
mod error_class;
mod labels;
mod matcher;
mod sample;
pub mod time;

pub use error_class::ErrorClass;
pub use labels::{Label, Labels, LabelsBuilder, METRIC_NAME};
pub use matcher::{MatchType, Matcher, MatcherError, go_regex_compat};
pub use sample::{STALE_NAN_BITS, Sample, is_stale_nan, stale_nan};
