//! A concurrency gate with Thanos' gate metrics (`pkg/gate`): `<name>_queries_in_flight`,
//! `<name>_queries_max` and `<name>_duration_seconds` (time spent waiting for a turn), e.g.
//! `thanos_query_concurrent_gate_*` on the querier and `thanos_bucket_store_series_gate_*` on
//! the store gateway.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// Thanos' gate duration buckets.
const BUCKETS: [f64; 11] = [0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0];

/// A gate of `max` permits whose waits and holders are counted.
#[derive(Debug, Clone)]
pub struct Gate {
    semaphore: Arc<Semaphore>,
    in_flight: Gauge,
    waiting: Histogram,
}

/// A turn through the gate; dropping it ends the turn.
#[derive(Debug)]
pub struct Turn {
    _permit: OwnedSemaphorePermit,
    in_flight: Gauge,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

impl Gate {
    /// A gate of `max` (at least 1) permits; with a registry, its metrics under `name`.
    pub fn new(max: usize, name: &str, registry: Option<&mut Registry>) -> Gate {
        let max = max.max(1);
        let gate = Gate {
            semaphore: Arc::new(Semaphore::new(max)),
            in_flight: Gauge::default(),
            waiting: Histogram::new(BUCKETS),
        };
        if let Some(registry) = registry {
            let limit: Gauge = Gauge::default();
            limit.set(i64::try_from(max).unwrap_or(i64::MAX));
            registry.register(
                format!("{name}_queries_max"),
                "Maximum number of concurrent queries.",
                limit,
            );
            registry.register(
                format!("{name}_queries_in_flight"),
                "Number of queries that are currently in flight.",
                gate.in_flight.clone(),
            );
            registry.register(
                format!("{name}_duration_seconds"),
                "How many seconds it took for queries to wait at the gate.",
                gate.waiting.clone(),
            );
        }
        gate
    }

    /// Waits for a turn.
    pub async fn enter(&self) -> Result<Turn, AcquireError> {
        let started = Instant::now();
        let permit = Arc::clone(&self.semaphore).acquire_owned().await?;
        self.waiting.observe(started.elapsed().as_secs_f64());
        self.in_flight.inc();
        Ok(Turn {
            _permit: permit,
            in_flight: self.in_flight.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn turns_are_counted() {
        let mut registry = Registry::default();
        let gate = Gate::new(2, "thanos_query_concurrent_gate", Some(&mut registry));
        let a = gate.enter().await.unwrap();
        let _b = gate.enter().await.unwrap();
        assert_eq!(gate.in_flight.get(), 2);
        drop(a);
        assert_eq!(gate.in_flight.get(), 1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("thanos_query_concurrent_gate_queries_max 2"),
            "{text}"
        );
        assert!(
            text.contains("thanos_query_concurrent_gate_queries_in_flight 1"),
            "{text}"
        );
        assert!(
            text.contains("thanos_query_concurrent_gate_duration_seconds_count 2"),
            "{text}"
        );
    }
}
