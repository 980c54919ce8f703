//! What every Thanos component exports about itself: `thanos_build_info` (version, revision,
//! branch, toolchain, platform) and the process metrics of Prometheus' Go client
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds`), read from `/proc/self` at each scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// The build this binary is.
#[derive(Debug, Clone, Copy)]
pub struct BuildInfo {
    /// The crate version.
    pub version: &'static str,
    /// Git commit (empty outside a checkout).
    pub revision: &'static str,
    /// Git branch.
    pub branch: &'static str,
    /// `rustc --version` of the build.
    pub toolchain: &'static str,
}

/// This binary's build.
pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    revision: env!("STRATA_REVISION"),
    branch: env!("STRATA_BRANCH"),
    toolchain: env!("STRATA_RUSTC"),
};

/// Registers `thanos_build_info` and the process metrics.
pub fn register(registry: &mut Registry) {
    let info = prometheus_client::metrics::info::Info::new(vec![
        ("version", BUILD.version.to_owned()),
        ("revision", BUILD.revision.to_owned()),
        ("branch", BUILD.branch.to_owned()),
        ("goversion", BUILD.toolchain.to_owned()),
        ("goos", std::env::consts::OS.to_owned()),
        ("goarch", std::env::consts::ARCH.to_owned()),
        ("tags", String::new()),
    ]);
    // prometheus-client appends `_info` to Info metrics: `thanos_build_info`.
    registry.register(
        "thanos_build",
        "A metric with a constant '1' value labeled by version, revision, branch, and goversion from which thanos was built, and the goos and goarch for the build.",
        info,
    );
    registry.register_collector(Box::new(ProcessCollector::new()));
}

#[derive(Debug)]
struct ProcessCollector {
    start_time: f64,
    ticks: f64,
    page_size: f64,
}

impl ProcessCollector {
    fn new() -> ProcessCollector {
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let page_size = rustix::param::page_size() as f64;
        let start_time = stat_fields()
            .and_then(|f| f.get(19).and_then(|s| s.parse::<f64>().ok()))
            .and_then(|started_ticks| boot_time().map(|boot| boot + started_ticks / ticks))
            .unwrap_or(0.0);
        ProcessCollector {
            start_time,
            ticks,
            page_size,
        }
    }
}

/// Fields of `/proc/self/stat` after the command name (field 3 of the man page is index 0).
fn stat_fields() -> Option<Vec<String>> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_owned).collect())
}

fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn max_fds() -> Option<f64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let fields = stat_fields().unwrap_or_default();
        let num = |i: usize| {
            fields
                .get(i)
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15 (indices 11 and 12); vsize 23, rss 24 (pages).
        let cpu = (num(11) + num(12)) / self.ticks;
        let virt = num(20);
        let rss = num(21) * self.page_size;
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as f64;
        let counter = ConstCounter::new(cpu);
        counter.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            counter.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                virt,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max_fds().unwrap_or(0.0),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                self.start_time,
            ),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn exports_build_info_and_process_metrics() {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("thanos_build_info{version=\""), "{text}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(rss > 1e6, "{rss}");
        let start: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_start_time_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(start > 1.6e9, "{start}");
    }
}
