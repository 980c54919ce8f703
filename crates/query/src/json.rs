//! Prometheus' JSON for query results, byte for byte: timestamps as integer seconds followed
//! by `.` and three zero-padded millisecond digits only when those are not zero
//! (`jsonutil.MarshalTimestamp`), sample values as strings formatted as Prometheus does.

use std::fmt::Write;

use strata_promql::{Value, format_float};
use strata_types::Labels;
use strata_types::histogram::FloatHistogram;

/// Appends `t` (ms) as Prometheus' `jsonutil.MarshalTimestamp` does.
pub fn write_timestamp(out: &mut String, t: i64) {
    let mut t = t;
    if t < 0 {
        out.push('-');
        t = t.saturating_neg();
    }
    let _ = write!(out, "{}", t / 1000);
    let fraction = t % 1000;
    if fraction != 0 {
        let _ = write!(out, ".{fraction:03}");
    }
}

/// Appends a JSON string literal.
pub fn write_str(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

/// Appends `{"name":"value",…}`.
pub fn write_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, &l.name);
        out.push(':');
        write_str(out, &l.value);
    }
    out.push('}');
}

fn write_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    write_timestamp(out, t);
    out.push_str(",\"");
    out.push_str(&format_float(v));
    out.push_str("\"]");
}

/// Appends a native histogram as Prometheus' `jsonutil.MarshalHistogram` does: count, sum
/// and the buckets holding observations as `[boundaries, lower, upper, count]`, where
/// boundaries is 0 (left open), 1 (right open), 2 (open) or 3 (closed).
pub fn write_histogram(out: &mut String, h: &FloatHistogram) {
    out.push_str("{\"count\":\"");
    out.push_str(&format_float(h.count));
    out.push_str("\",\"sum\":\"");
    out.push_str(&format_float(h.sum));
    out.push('"');
    let mut first = true;
    for b in h.all_buckets() {
        if b.count == 0.0 {
            continue;
        }
        out.push_str(if first { ",\"buckets\":[" } else { "," });
        first = false;
        let boundaries = match (b.lower_inclusive, b.upper_inclusive) {
            (true, true) => 3,
            (true, false) => 1,
            (false, true) => 0,
            (false, false) => 2,
        };
        let _ = write!(
            out,
            "[{boundaries},\"{}\",\"{}\",\"{}\"]",
            format_float(b.lower),
            format_float(b.upper),
            format_float(b.count)
        );
    }
    if !first {
        out.push(']');
    }
    out.push('}');
}

fn write_histogram_point(out: &mut String, t: i64, h: &FloatHistogram) {
    out.push('[');
    write_timestamp(out, t);
    out.push(',');
    write_histogram(out, h);
    out.push(']');
}

/// The `data` object of a query answer. Instant vectors carry the evaluation time `time`.
pub fn write_query_data(out: &mut String, value: &Value, time: i64) {
    match value {
        Value::Scalar { v, .. } => {
            out.push_str("{\"resultType\":\"scalar\",\"result\":");
            write_point(out, time, *v);
            out.push('}');
        }
        Value::String { s, .. } => {
            out.push_str("{\"resultType\":\"string\",\"result\":[");
            write_timestamp(out, time);
            out.push(',');
            write_str(out, s);
            out.push_str("]}");
        }
        Value::Vector(elements) => {
            out.push_str("{\"resultType\":\"vector\",\"result\":[");
            for (i, e) in elements.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(out, &e.labels);
                match &e.h {
                    Some(h) => {
                        out.push_str(",\"histogram\":");
                        write_histogram_point(out, time, h);
                    }
                    None => {
                        out.push_str(",\"value\":");
                        write_point(out, time, e.v);
                    }
                }
                out.push('}');
            }
            out.push_str("]}");
        }
        Value::Matrix(series) => {
            out.push_str("{\"resultType\":\"matrix\",\"result\":[");
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(out, &s.labels);
                // Prometheus leaves out an empty list.
                if !s.samples.is_empty() || s.histograms.is_empty() {
                    out.push_str(",\"values\":[");
                    for (j, p) in s.samples.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        write_point(out, p.t, p.v);
                    }
                    out.push(']');
                }
                if !s.histograms.is_empty() {
                    out.push_str(",\"histograms\":[");
                    for (j, p) in s.histograms.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        write_histogram_point(out, p.t, &p.h);
                    }
                    out.push(']');
                }
                out.push('}');
            }
            out.push_str("]}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_as_prometheus() {
        let mut s = String::new();
        write_timestamp(&mut s, 1_700_000_000_000);
        s.push(' ');
        write_timestamp(&mut s, 1_700_000_000_500);
        s.push(' ');
        write_timestamp(&mut s, 1_700_000_000_007);
        s.push(' ');
        write_timestamp(&mut s, -1500);
        assert_eq!(s, "1700000000 1700000000.500 1700000000.007 -1.500");
    }
}
