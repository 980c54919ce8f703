//! `--log.format`: Thanos' log lines, in logfmt or JSON, from `tracing` events.
//!
//! Thanos (go-kit log) writes `ts=… caller=file.go:12 level=info msg="…" key=value`; the same
//! keys come out here (`caller` is the Rust file and line), so log pipelines parsing Thanos'
//! lines read ours. JSON has the same keys in one object per line.

use std::fmt::{self, Write as _};

use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `--log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// `key=value` pairs, as Thanos' default.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// The event formatter for either format.
pub(crate) struct ThanosFormat {
    pub(crate) format: LogFormat,
}

/// An event's fields as (key, value) text pairs; `message` becomes `msg`.
#[derive(Default)]
struct Fields {
    pairs: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.pairs.push((key(field), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.pairs.push((key(field), value.to_owned()));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.pairs.push((key(field), value.to_string()));
    }
}

fn key(field: &Field) -> &'static str {
    match field.name() {
        "message" => "msg",
        name => name,
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "debug",
    }
}

/// A logfmt value: bare when it needs no quoting, else quoted with `"` and `\` escaped and
/// control characters as escapes (as go-logfmt does).
fn logfmt_value(out: &mut String, value: &str) {
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| c > ' ' && c != '=' && c != '"' && c != '\u{7f}');
    if bare {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One line (without the newline) for an event with these pairs.
pub(crate) fn render(format: LogFormat, pairs: &[(&str, String)]) -> String {
    let mut line = String::with_capacity(128);
    match format {
        LogFormat::Logfmt => {
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    line.push(' ');
                }
                line.push_str(k);
                line.push('=');
                logfmt_value(&mut line, v);
            }
        }
        LogFormat::Json => {
            let mut object = serde_json::Map::new();
            for (k, v) in pairs {
                object.insert((*k).to_owned(), serde_json::Value::String(v.clone()));
            }
            line = serde_json::Value::Object(object).to_string();
        }
    }
    line
}

impl<S, N> FormatEvent<S, N> for ThanosFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut pairs: Vec<(&str, String)> = Vec::with_capacity(8);
        pairs.push((
            "ts",
            humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        ));
        if let (Some(file), Some(line)) = (meta.file(), meta.line()) {
            let file = file.rsplit('/').next().unwrap_or(file);
            pairs.push(("caller", format!("{file}:{line}")));
        }
        pairs.push(("level", level_name(meta.level()).to_owned()));
        let mut fields = Fields::default();
        event.record(&mut fields);
        // `msg` first after the header, as go-kit's level.Info(logger).Log("msg", …).
        if let Some(i) = fields.pairs.iter().position(|(k, _)| *k == "msg") {
            let msg = fields.pairs.remove(i);
            pairs.push(msg);
        }
        pairs.extend(fields.pairs);
        writeln!(writer, "{}", render(self.format, &pairs))
    }
}

/// The subscriber under the span exporter: the `--log.level` filter over the registry.
pub(crate) type Base =
    tracing_subscriber::layer::Layered<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// Installs the logging subscriber: the `--log.level` filter, the span exporter's layer
/// when `--tracing.config` asks for one, and Thanos-format log lines on stderr.
pub(crate) fn init(
    level: &str,
    format: LogFormat,
    spans: Option<Box<dyn tracing_subscriber::Layer<Base> + Send + Sync>>,
) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(filter)
        .with(spans)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .event_format(ThanosFormat { format }),
        )
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        list.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    }

    #[test]
    fn logfmt_quotes_as_go_logfmt() {
        let line = render(
            LogFormat::Logfmt,
            &pairs(&[
                ("level", "info"),
                ("msg", "synced blocks"),
                ("loaded", "3"),
                ("empty", ""),
                ("eq", "a=b"),
                ("quote", "say \"hi\"\n"),
            ]),
        );
        assert_eq!(
            line,
            r#"level=info msg="synced blocks" loaded=3 empty="" eq="a=b" quote="say \"hi\"\n""#
        );
    }

    #[test]
    fn json_is_one_object() {
        let line = render(
            LogFormat::Json,
            &pairs(&[("level", "warn"), ("msg", "x \"y\"")]),
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(v["level"], "warn");
        assert_eq!(v["msg"], "x \"y\"");
    }
}
