//! Success answers in Prometheus' JSON envelope.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::json::write_str;

/// `{"status":"success","data":…}` with `warnings` and `infos` when not empty.
pub(crate) fn success(data: &str, warnings: &[String], infos: &[String]) -> Response {
    let mut body = String::with_capacity(data.len() + 64);
    body.push_str("{\"status\":\"success\",\"data\":");
    body.push_str(data);
    for (key, list) in [("warnings", warnings), ("infos", infos)] {
        if list.is_empty() {
            continue;
        }
        body.push_str(",\"");
        body.push_str(key);
        body.push_str("\":[");
        for (i, w) in list.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            write_str(&mut body, w);
        }
        body.push(']');
    }
    body.push('}');
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// A JSON array of strings.
pub(crate) fn string_list<'a>(values: impl IntoIterator<Item = &'a String>) -> String {
    let mut data = String::from("[");
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        write_str(&mut data, v);
    }
    data.push(']');
    data
}

/// A query's warnings and infos as Prometheus' API shows them: storage warnings (failed
/// endpoints) and the engine's annotations, with positions in `query`, at most ten of each.
pub(crate) fn annotation_strings(
    storage: Vec<String>,
    engine: strata_promql::Annotations,
    query: &str,
) -> (Vec<String>, Vec<String>) {
    let mut all = strata_promql::Annotations::default();
    for w in storage {
        all.add_warning_text(w);
    }
    all.merge(engine);
    all.as_strings(query, 10)
}

/// A time as Go's `time.Time` marshals to JSON (RFC 3339, nanoseconds without trailing
/// zeros).
pub(crate) fn go_time(t: std::time::SystemTime) -> String {
    let text = humantime::format_rfc3339_nanos(t).to_string();
    match text.strip_suffix('Z').and_then(|t| t.split_once('.')) {
        Some((seconds, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() {
                format!("{seconds}Z")
            } else {
                format!("{seconds}.{fraction}Z")
            }
        }
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_times() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_120);
        assert_eq!(go_time(t), "2023-11-14T22:13:20.12Z");
        assert_eq!(
            go_time(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20Z"
        );
    }
}
