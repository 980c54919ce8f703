//! The Thanos Store API (`thanos.Store`) and Info API (`thanos.info.Info`), generated from
//! `/proto` and wire-compatible with Thanos, plus conversions between their messages and
//! Strata's label and matcher types.

#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    rust_2018_idioms
)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/protos.rs"));
}

pub use generated::hintspb;
/// Prometheus' remote-read messages (package `prometheus`).
pub use generated::prometheus as prompb;
pub use generated::thanos::info;
pub use generated::thanos::*;

pub mod convert;
pub mod grpc_metrics;
pub mod merge;
pub mod serve;
pub mod snappy;

/// `ComponentType` of a store gateway in `InfoResponse`.
pub const COMPONENT_STORE: &str = "store";
/// `ComponentType` of a sidecar.
pub const COMPONENT_SIDECAR: &str = "sidecar";
/// `ComponentType` of a querier.
pub const COMPONENT_QUERY: &str = "query";

/// Type URL prefix of hints carried in `google.protobuf.Any` (Go `types.MarshalAny`).
pub const ANY_TYPE_PREFIX: &str = "type.googleapis.com/";

impl AggrChunk {
    /// Its chunks in field order: raw, count, sum, min, max, counter (`None` where absent).
    pub fn parts(&self) -> [Option<&Chunk>; 6] {
        [
            self.raw.as_ref(),
            self.count.as_deref(),
            self.sum.as_deref(),
            self.min.as_deref(),
            self.max.as_deref(),
            self.counter.as_deref(),
        ]
    }
}
