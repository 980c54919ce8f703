//! Shared data types of Strata: label sets, label matchers and samples, and Prometheus'
//! time and duration strings.
//!
//! This crate owns the in-memory model only. It performs no IO, has no async code and knows
//! nothing of any file or wire format; the TSDB block format lives in `strata-tsdb`, chunk
//! encodings in `strata-chunkenc`.

pub mod api_time;
mod env_subst;
mod error_class;
pub mod histogram;
mod labels;
mod matcher;
mod name_escaping;
mod sample;
mod secret;
pub mod time;

pub use env_subst::expand_env;
pub use error_class::ErrorClass;
pub use labels::{Label, Labels, LabelsBuilder, METRIC_NAME};
pub use matcher::{MatchType, Matcher, MatcherError, go_regex_compat};
pub use name_escaping::{escape_name, unescape_name};
pub use sample::{STALE_NAN_BITS, Sample, is_stale_nan, stale_nan};
pub use secret::Secret;
