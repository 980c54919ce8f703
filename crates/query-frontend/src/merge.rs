//! Range-query answers as cacheable extents, and the merge of extents back into exactly the
//! JSON the downstream would send for the whole range.
//!
//! Sample values and timestamps are kept as the text the downstream wrote, so a merged
//! answer is byte-identical to a whole-range answer of the same downstream.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_types::Labels;

/// One series' points: (timestamp in ms, timestamp text, value text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoints {
    /// The metric's labels.
    pub metric: BTreeMap<String, String>,
    /// Points in time order.
    pub values: Vec<(i64, String, String)>,
    /// Native histogram points in time order: (timestamp in ms, timestamp text, the
    /// histogram's JSON object as the downstream wrote it).
    #[serde(default)]
    pub histograms: Vec<(i64, String, String)>,
}

/// The answer of a range query over `[start, end]` (ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extent {
    /// First evaluation time covered.
    pub start: i64,
    /// Last evaluation time covered.
    pub end: i64,
    /// Series with their points.
    pub series: Vec<SeriesPoints>,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    data: Option<AnswerData>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    infos: Vec<String>,
}

/// The `warnings` and `infos` of answers, merged (sorted, each once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    /// Warnings.
    pub warnings: Vec<String>,
    /// Infos.
    pub infos: Vec<String>,
}

impl Notes {
    /// Whether there is neither.
    pub fn is_empty(&self) -> bool {
        self.warnings.is_empty() && self.infos.is_empty()
    }

    /// Adds `other`'s.
    pub fn extend(&mut self, other: Notes) {
        for (mine, theirs) in [
            (&mut self.warnings, other.warnings),
            (&mut self.infos, other.infos),
        ] {
            mine.extend(theirs);
            mine.sort();
            mine.dedup();
        }
    }

    /// The `,"warnings":[…],"infos":[…]` members of a JSON answer (those not empty).
    pub fn json_members(&self) -> String {
        let mut out = String::new();
        for (key, list) in [("warnings", &self.warnings), ("infos", &self.infos)] {
            if !list.is_empty() {
                out.push_str(",\"");
                out.push_str(key);
                out.push_str("\":");
                out.push_str(&serde_json::to_string(list).unwrap_or_else(|_| "[]".into()));
            }
        }
        out
    }
}

#[derive(Deserialize)]
struct AnswerData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<RawSeries>,
}

#[derive(Deserialize)]
struct RawSeries {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(Box<serde_json::value::RawValue>, String)>,
    #[serde(default)]
    histograms: Vec<(
        Box<serde_json::value::RawValue>,
        Box<serde_json::value::RawValue>,
    )>,
}

/// A timestamp's text and its milliseconds.
fn timestamp(ts: &serde_json::value::RawValue) -> Result<(i64, String), MergeError> {
    let text = ts.get().to_owned();
    let seconds: f64 = text
        .parse()
        .map_err(|_| MergeError(format!("bad timestamp {text}")))?;
    Ok(((seconds * 1000.0).round() as i64, text))
}

/// A downstream answer that cannot be merged.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MergeError(pub String);

/// Parses a successful matrix answer into an extent; also returns its warnings and infos.
pub fn parse_extent(body: &[u8], start: i64, end: i64) -> Result<(Extent, Notes), MergeError> {
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| MergeError(format!("bad answer: {e}")))?;
    if answer.status != "success" {
        return Err(MergeError("answer is not a success".into()));
    }
    let data = answer
        .data
        .ok_or_else(|| MergeError("answer without data".into()))?;
    if data.result_type != "matrix" {
        return Err(MergeError(format!("result type {}", data.result_type)));
    }
    let mut series = Vec::with_capacity(data.result.len());
    for s in data.result {
        let mut values = Vec::with_capacity(s.values.len());
        for (ts, v) in s.values {
            let (ms, text) = timestamp(&ts)?;
            values.push((ms, text, v));
        }
        let mut histograms = Vec::with_capacity(s.histograms.len());
        for (ts, h) in s.histograms {
            let (ms, text) = timestamp(&ts)?;
            histograms.push((ms, text, h.get().to_owned()));
        }
        series.push(SeriesPoints {
            metric: s.metric,
            values,
            histograms,
        });
    }
    Ok((
        Extent { start, end, series },
        Notes {
            warnings: answer.warnings,
            infos: answer.infos,
        },
    ))
}

impl Extent {
    /// The part of this extent within `[start, end]`.
    pub fn slice(&self, start: i64, end: i64) -> Extent {
        let series = self
            .series
            .iter()
            .filter_map(|s| {
                let within = |points: &[(i64, String, String)]| -> Vec<(i64, String, String)> {
                    points
                        .iter()
                        .filter(|(t, _, _)| *t >= start && *t <= end)
                        .cloned()
                        .collect()
                };
                let values = within(&s.values);
                let histograms = within(&s.histograms);
                (!values.is_empty() || !histograms.is_empty()).then(|| SeriesPoints {
                    metric: s.metric.clone(),
                    values,
                    histograms,
                })
            })
            .collect();
        Extent {
            start: start.max(self.start),
            end: end.min(self.end),
            series,
        }
    }
}

fn labels_of(metric: &BTreeMap<String, String>) -> Labels {
    Labels::from_pairs(metric.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Joins extents (in any order) into one, series sorted as Prometheus sorts a matrix.
pub fn merge_extents(parts: Vec<Extent>) -> Extent {
    let start = parts.iter().map(|p| p.start).min().unwrap_or(0);
    let end = parts.iter().map(|p| p.end).max().unwrap_or(0);
    let mut by_labels: BTreeMap<Labels, SeriesPoints> = BTreeMap::new();
    for part in parts {
        for s in part.series {
            let key = labels_of(&s.metric);
            match by_labels.get_mut(&key) {
                Some(existing) => {
                    existing.values.extend(s.values);
                    existing.histograms.extend(s.histograms);
                }
                None => {
                    by_labels.insert(key, s);
                }
            }
        }
    }
    let mut series: Vec<SeriesPoints> = by_labels.into_values().collect();
    for s in &mut series {
        for points in [&mut s.values, &mut s.histograms] {
            points.sort_by_key(|(t, _, _)| *t);
            points.dedup_by_key(|(t, _, _)| *t);
        }
    }
    Extent { start, end, series }
}

/// The JSON answer of an extent, as Prometheus writes a matrix.
pub fn write_answer(extent: &Extent, notes: &Notes) -> String {
    let mut out =
        String::from("{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[");
    for (i, s) in extent.series.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"metric\":");
        out.push_str(&serde_json::to_string(&s.metric).unwrap_or_else(|_| "{}".into()));
        // As Prometheus: a list only when it has points.
        if !s.values.is_empty() || s.histograms.is_empty() {
            out.push_str(",\"values\":[");
            for (j, (_, t, v)) in s.values.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push('[');
                out.push_str(t);
                out.push_str(",\"");
                out.push_str(v);
                out.push_str("\"]");
            }
            out.push(']');
        }
        if !s.histograms.is_empty() {
            out.push_str(",\"histograms\":[");
            for (j, (_, t, h)) in s.histograms.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push('[');
                out.push_str(t);
                out.push(',');
                out.push_str(h);
                out.push(']');
            }
            out.push(']');
        }
        out.push('}');
    }
    out.push_str("]}");
    out.push_str(&notes.json_members());
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_split_merge_round_trip() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1700000000,"1"],[1700000060.500,"NaN"],[1700000120,"+Inf"]]},{"metric":{"job":"b"},"values":[[1700000060.500,"2.5e-07"]]}]}}"#;
        let (extent, notes) = parse_extent(body, 1_700_000_000_000, 1_700_000_120_000).unwrap();
        assert!(notes.is_empty());
        assert_eq!(
            write_answer(&extent, &Notes::default()).as_bytes(),
            body.as_slice()
        );
        let a = extent.slice(1_700_000_000_000, 1_700_000_060_000);
        let b = extent.slice(1_700_000_060_001, 1_700_000_120_000);
        let merged = merge_extents(vec![b, a]);
        assert_eq!(
            write_answer(&merged, &Notes::default()).as_bytes(),
            body.as_slice()
        );
    }

    #[test]
    fn native_histogram_points_round_trip() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"h"},"histograms":[[1700000000,{"count":"2","sum":"0.5","buckets":[[0,"0.25","0.5","2"]]}],[1700000060,{"count":"3","sum":"1"}]]},{"metric":{"__name__":"mixed"},"values":[[1700000000,"1"]],"histograms":[[1700000060,{"count":"1","sum":"1"}]]}]}}"#;
        let (extent, _) = parse_extent(body, 1_700_000_000_000, 1_700_000_060_000).unwrap();
        assert_eq!(
            write_answer(&extent, &Notes::default()).as_bytes(),
            body.as_slice()
        );
        let a = extent.slice(1_700_000_000_000, 1_700_000_030_000);
        let b = extent.slice(1_700_000_030_001, 1_700_000_060_000);
        assert_eq!(a.series.len(), 2);
        let merged = merge_extents(vec![b, a]);
        assert_eq!(
            write_answer(&merged, &Notes::default()).as_bytes(),
            body.as_slice()
        );
    }
}
