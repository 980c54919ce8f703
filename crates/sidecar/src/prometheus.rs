//! The Prometheus HTTP client of the sidecar: configuration and flags, the lowest stored
//! timestamp, label APIs, and streamed remote read.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use serde::Deserialize;
use strata_storepb::prompb::{
    ChunkedReadResponse, ChunkedSeries, LabelMatcher, Query, ReadRequest, read_request,
};
use strata_types::{Labels, MatchType, Matcher};

/// Largest remote-read frame accepted (Prometheus' default chunked read limit).
pub const MAX_FRAME: usize = 50 << 20;

/// A call to Prometheus failed.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// Transport or HTTP status error.
    #[error("prometheus {url}: {message}")]
    Http {
        /// The URL called.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The answer did not decode.
    #[error("prometheus {url}: bad response: {message}")]
    Decode {
        /// The URL called.
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// Largest HTTP API answer read from Prometheus (metadata, targets, rules, exemplars, labels).
const MAX_API_ANSWER: usize = strata_storepb::serve::MAX_MESSAGE_BYTES;

/// A Prometheus server.
#[derive(Debug, Clone)]
pub struct PromClient {
    base: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct ApiAnswer<T> {
    status: String,
    data: Option<T>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct ConfigData {
    yaml: String,
}

#[derive(Deserialize, Default)]
struct PromConfig {
    #[serde(default)]
    global: GlobalConfig,
}

#[derive(Deserialize, Default)]
struct GlobalConfig {
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
}

impl PromClient {
    /// A client for the Prometheus at `base` (e.g. `http://localhost:9090`).
    pub fn new(
        base: &str,
        timeout: Duration,
        settings: &crate::http_client::HttpClientConfig,
    ) -> Result<PromClient, crate::SidecarError> {
        let builder = settings.apply(reqwest::Client::builder().timeout(timeout))?;
        let http = builder.build().map_err(|e| PromError::Http {
            url: base.to_owned(),
            message: e.to_string(),
        })?;
        Ok(PromClient {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Asks Prometheus to reload its configuration (`POST /-/reload`; Prometheus needs
    /// `--web.enable-lifecycle`).
    pub async fn reload(&self) -> Result<(), PromError> {
        let url = format!("{}/-/reload", self.base);
        send_checked(&url, self.http.post(&url)).await?;
        Ok(())
    }

    async fn get_api<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, PromError> {
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            let mut form = form_urlencoded::Serializer::new(String::new());
            for (k, v) in query {
                form.append_pair(k, v);
            }
            url.push('?');
            url.push_str(&form.finish());
        }
        let http_err = |e: reqwest::Error| PromError::Http {
            url: url.clone(),
            message: e.to_string(),
        };
        let mut resp = self.http.get(&url).send().await.map_err(http_err)?;
        let status = resp.status();
        // Bounded: an answer passed on over gRPC must fit a message anyway.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(http_err)? {
            if body.len() + chunk.len() > MAX_API_ANSWER {
                return Err(PromError::Decode {
                    url,
                    message: format!("answer larger than {MAX_API_ANSWER} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let answer: ApiAnswer<T> =
            serde_json::from_slice(&body).map_err(|e| PromError::Decode {
                url: url.clone(),
                message: format!("HTTP {status}: {e}"),
            })?;
        if answer.status != "success" {
            return Err(PromError::Http {
                url,
                message: answer.error.unwrap_or_else(|| format!("HTTP {status}")),
            });
        }
        answer.data.ok_or_else(|| PromError::Decode {
            url,
            message: "no data".into(),
        })
    }

    /// `global.external_labels` from `/api/v1/status/config`.
    pub async fn external_labels(&self) -> Result<Labels, PromError> {
        let data: ConfigData = self.get_api("/api/v1/status/config", &[]).await?;
        let config: PromConfig =
            serde_norway::from_str(&data.yaml).map_err(|e| PromError::Decode {
                url: format!("{}/api/v1/status/config", self.base),
                message: e.to_string(),
            })?;
        Ok(Labels::from_pairs(config.global.external_labels))
    }

    /// `/api/v1/metadata` (`metric` empty: every metric; `limit` 0: no limit).
    pub async fn metadata(
        &self,
        metric: &str,
        limit: i32,
    ) -> Result<BTreeMap<String, Vec<PromMeta>>, PromError> {
        let mut query = Vec::new();
        if !metric.is_empty() {
            query.push(("metric", metric.to_owned()));
        }
        if limit > 0 {
            query.push(("limit", limit.to_string()));
        }
        self.get_api("/api/v1/metadata", &query).await
    }

    /// `/api/v1/targets?state=…` (`any`, `active` or `dropped`).
    pub async fn targets(&self, state: &str) -> Result<PromTargets, PromError> {
        self.get_api("/api/v1/targets", &[("state", state.to_owned())])
            .await
    }

    /// `/api/v1/query_exemplars` for `query` in `[start, end]` (ms).
    pub async fn exemplars(
        &self,
        query: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<PromExemplarData>, PromError> {
        let mut params = time_params(start, end);
        params.push(("query", query.to_owned()));
        self.get_api("/api/v1/query_exemplars", &params).await
    }

    /// `/api/v1/rules?type=…` (`""`: both, `alert`, `record`).
    pub async fn rules(&self, kind: &str) -> Result<PromRuleGroups, PromError> {
        let mut params = Vec::new();
        if !kind.is_empty() {
            params.push(("type", kind.to_owned()));
        }
        self.get_api("/api/v1/rules", &params).await
    }

    /// `/api/v1/status/flags`.
    pub async fn flags(&self) -> Result<BTreeMap<String, String>, PromError> {
        self.get_api("/api/v1/status/flags", &[]).await
    }

    /// The lowest timestamp Prometheus holds (ms), from its own metrics.
    pub async fn lowest_timestamp(&self) -> Result<i64, PromError> {
        let url = format!("{}/metrics", self.base);
        let http_err = |e: reqwest::Error| PromError::Http {
            url: url.clone(),
            message: e.to_string(),
        };
        let body = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(http_err)?
            .text()
            .await
            .map_err(http_err)?;
        for line in body.lines() {
            if let Some(v) = line.strip_prefix("prometheus_tsdb_lowest_timestamp_seconds ") {
                let seconds: f64 = v.trim().parse().unwrap_or(0.0);
                return Ok((seconds * 1000.0) as i64);
            }
        }
        for line in body.lines() {
            if let Some(v) = line.strip_prefix("prometheus_tsdb_lowest_timestamp ") {
                let ms: f64 = v.trim().parse().unwrap_or(0.0);
                return Ok(ms as i64);
            }
        }
        Err(PromError::Decode {
            url,
            message: "no prometheus_tsdb_lowest_timestamp metric".into(),
        })
    }

    fn selector(matchers: &[Matcher]) -> String {
        let parts: Vec<String> = matchers.iter().map(|m| m.to_string()).collect();
        format!("{{{}}}", parts.join(","))
    }

    /// `/api/v1/labels`.
    pub async fn label_names(
        &self,
        start: i64,
        end: i64,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, PromError> {
        let mut query = time_params(start, end);
        if !matchers.is_empty() {
            query.push(("match[]", Self::selector(matchers)));
        }
        self.get_api("/api/v1/labels", &query).await
    }

    /// `/api/v1/label/<name>/values`.
    pub async fn label_values(
        &self,
        name: &str,
        start: i64,
        end: i64,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, PromError> {
        let mut query = time_params(start, end);
        if !matchers.is_empty() {
            query.push(("match[]", Self::selector(matchers)));
        }
        // The name goes into the path: escaped as Prometheus' API expects (`U__…` for names
        // that are not legacy ones), which leaves only letters, digits, `_` and `:`.
        let name = strata_types::escape_name(name);
        self.get_api(&format!("/api/v1/label/{name}/values"), &query)
            .await
    }

    /// Streamed remote read: every series matching `matchers` in `[start, end]` with its
    /// XOR chunks, as Prometheus sends them, collected.
    pub async fn remote_read(
        &self,
        start: i64,
        end: i64,
        matchers: &[Matcher],
    ) -> Result<Vec<ChunkedSeries>, PromError> {
        let mut stream = self.remote_read_stream(start, end, matchers).await?;
        let mut out = Vec::new();
        while let Some(series) = stream.next().await? {
            out.push(series);
        }
        Ok(out)
    }

    /// Streamed remote read, a series at a time: the request is sent and its status and
    /// content type checked before this returns; the body is read as [`ReadStream::next`]
    /// is called, one frame in memory at a time.
    pub async fn remote_read_stream(
        &self,
        start: i64,
        end: i64,
        matchers: &[Matcher],
    ) -> Result<ReadStream, PromError> {
        let url = format!("{}/api/v1/read", self.base);
        let request = ReadRequest {
            queries: vec![Query {
                start_timestamp_ms: start,
                end_timestamp_ms: end,
                matchers: matchers.iter().map(to_prom_matcher).collect(),
                hints: None,
            }],
            accepted_response_types: vec![read_request::ResponseType::StreamedXorChunks as i32],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .map_err(|e| PromError::Decode {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let request = self
            .http
            .post(&url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .body(body);
        let resp = send_checked(&url, request).await?;
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if !content_type.starts_with("application/x-streamed-protobuf") {
            return Err(PromError::Decode {
                url,
                message: format!(
                    "unexpected content type {content_type:?} (no streamed remote read)"
                ),
            });
        }
        Ok(ReadStream {
            url,
            resp,
            buffer: Vec::new(),
            start: 0,
            pending: std::collections::VecDeque::new(),
            done: false,
        })
    }
}

/// The body of a streamed remote read, decoded frame by frame.
#[derive(Debug)]
pub struct ReadStream {
    url: String,
    resp: reqwest::Response,
    /// Bytes received; `buffer[start..]` are not decoded yet.
    buffer: Vec<u8>,
    start: usize,
    /// Series of the last frame not handed out yet.
    pending: std::collections::VecDeque<ChunkedSeries>,
    done: bool,
}

impl ReadStream {
    /// The next series, `None` at the end of the body.
    pub async fn next(&mut self) -> Result<Option<ChunkedSeries>, PromError> {
        loop {
            if let Some(series) = self.pending.pop_front() {
                return Ok(Some(series));
            }
            let rest = self.buffer.get(self.start..).unwrap_or_default();
            let frame = next_frame(rest).map_err(|message| PromError::Decode {
                url: self.url.clone(),
                message,
            })?;
            if let Some((frame, used)) = frame {
                let decoded =
                    ChunkedReadResponse::decode(frame).map_err(|e| PromError::Decode {
                        url: self.url.clone(),
                        message: e.to_string(),
                    })?;
                self.pending.extend(decoded.chunked_series);
                self.start += used;
                continue;
            }
            if self.done {
                if rest.is_empty() {
                    return Ok(None);
                }
                return Err(PromError::Decode {
                    url: self.url.clone(),
                    message: format!("{} trailing bytes in the stream", rest.len()),
                });
            }
            // Drop what was decoded before reading more, so the buffer holds about a frame.
            self.buffer.drain(..self.start);
            self.start = 0;
            match self.resp.chunk().await.map_err(|e| PromError::Http {
                url: self.url.clone(),
                message: e.to_string(),
            })? {
                Some(bytes) => self.buffer.extend_from_slice(&bytes),
                None => self.done = true,
            }
        }
    }
}

/// Sends `request` to `url`; a transport error or a status other than 2xx (with the body's
/// text) is an error.
async fn send_checked(
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, PromError> {
    let resp = request.send().await.map_err(|e| PromError::Http {
        url: url.to_owned(),
        message: e.to_string(),
    })?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(PromError::Http {
            url: url.to_owned(),
            message: format!("HTTP {status}: {}", text.trim()),
        });
    }
    Ok(resp)
}

fn time_params(start: i64, end: i64) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if start > i64::MIN / 2 {
        out.push(("start", format!("{:.3}", start as f64 / 1000.0)));
    }
    if end < i64::MAX / 2 {
        out.push(("end", format!("{:.3}", end as f64 / 1000.0)));
    }
    out
}

fn to_prom_matcher(m: &Matcher) -> LabelMatcher {
    use strata_storepb::prompb::label_matcher::Type;
    let kind = match m.kind() {
        MatchType::Equal => Type::Eq,
        MatchType::NotEqual => Type::Neq,
        MatchType::Regex => Type::Re,
        MatchType::NotRegex => Type::Nre,
    };
    LabelMatcher {
        r#type: kind as i32,
        name: m.name().to_owned(),
        value: m.value().to_owned(),
    }
}

/// One frame of a streamed remote-read body: `uvarint(len) | BE u32 CRC32C | message`.
/// Returns the message and the bytes used, `None` if `data` does not hold a whole frame.
pub fn next_frame(data: &[u8]) -> Result<Option<(&[u8], usize)>, String> {
    let Some((len, header)) = strata_chunkenc::get_uvarint(data) else {
        if data.len() >= 10 {
            return Err("malformed frame length".into());
        }
        return Ok(None);
    };
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_FRAME {
        return Err(format!(
            "frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"
        ));
    }
    let total = header + 4 + len;
    if data.len() < total {
        return Ok(None);
    }
    let (Some(crc), Some(message)) = (data.get(header..header + 4), data.get(header + 4..total))
    else {
        return Ok(None);
    };
    let stored = u32::from_be_bytes(crc.try_into().unwrap_or([0; 4]));
    let computed = crc32c::crc32c(message);
    if stored != computed {
        return Err(format!(
            "frame checksum mismatch: stored {stored:08x}, computed {computed:08x}"
        ));
    }
    Ok(Some((message, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        let message = b"hello";
        let mut data = vec![5u8];
        data.extend_from_slice(&crc32c::crc32c(message).to_be_bytes());
        data.extend_from_slice(message);
        let (m, used) = next_frame(&data).unwrap().unwrap();
        assert_eq!(m, message);
        assert_eq!(used, data.len());
        assert!(next_frame(&data[..6]).unwrap().is_none());
        let mut bad = data.clone();
        bad[1] ^= 1;
        assert!(next_frame(&bad).is_err());
        assert!(next_frame(&[0xff; 12]).is_err());
    }
}

/// One metadata entry of `/api/v1/metadata`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PromMeta {
    /// counter, gauge, histogram, …
    #[serde(rename = "type", default)]
    pub kind: String,
    /// HELP text.
    #[serde(default)]
    pub help: String,
    /// UNIT.
    #[serde(default)]
    pub unit: String,
}

/// `/api/v1/targets`' data.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromTargets {
    /// Targets being scraped.
    #[serde(default)]
    pub active_targets: Vec<PromActiveTarget>,
    /// Targets relabelling dropped.
    #[serde(default)]
    pub dropped_targets: Vec<PromDroppedTarget>,
}

/// An active target.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromActiveTarget {
    /// Labels before relabelling.
    #[serde(default)]
    pub discovered_labels: BTreeMap<String, String>,
    /// Labels after relabelling.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The scrape job.
    #[serde(default)]
    pub scrape_pool: String,
    /// What is scraped.
    #[serde(default)]
    pub scrape_url: String,
    /// The URL as seen from outside.
    #[serde(default)]
    pub global_url: String,
    /// The last scrape's error.
    #[serde(default)]
    pub last_error: String,
    /// RFC 3339.
    #[serde(default)]
    pub last_scrape: String,
    /// Seconds.
    #[serde(default)]
    pub last_scrape_duration: f64,
    /// up, down or unknown.
    #[serde(default)]
    pub health: String,
}

/// A dropped target.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromDroppedTarget {
    /// Labels before relabelling.
    #[serde(default)]
    pub discovered_labels: BTreeMap<String, String>,
}

/// One series' exemplars from `/api/v1/query_exemplars`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromExemplarData {
    /// The series.
    #[serde(default)]
    pub series_labels: BTreeMap<String, String>,
    /// Its exemplars.
    #[serde(default)]
    pub exemplars: Vec<PromExemplar>,
}

/// One exemplar.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PromExemplar {
    /// Exemplar labels (trace_id, …).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The value, as Prometheus prints it.
    pub value: String,
    /// Seconds.
    pub timestamp: f64,
}

/// `/api/v1/rules`' data.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct PromRuleGroups {
    /// The groups.
    #[serde(default)]
    pub groups: Vec<PromRuleGroup>,
}

/// A rule group.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromRuleGroup {
    /// Its name.
    pub name: String,
    /// The rule file.
    #[serde(default)]
    pub file: String,
    /// Its rules.
    #[serde(default)]
    pub rules: Vec<PromRule>,
    /// Seconds.
    #[serde(default)]
    pub interval: f64,
    /// The alert or series limit.
    #[serde(default)]
    pub limit: i64,
    /// Seconds.
    #[serde(default)]
    pub evaluation_time: f64,
    /// RFC 3339.
    #[serde(default)]
    pub last_evaluation: String,
}

/// A recording or alerting rule (`type` says which).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromRule {
    /// `alerting` or `recording`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The alert or recorded series name.
    pub name: String,
    /// The expression.
    #[serde(default)]
    pub query: String,
    /// Alerts: firing, pending, inactive.
    #[serde(default)]
    pub state: String,
    /// Alerts: `for`, seconds.
    #[serde(default)]
    pub duration: f64,
    /// Alerts: `keep_firing_for`, seconds.
    #[serde(default)]
    pub keep_firing_for: f64,
    /// Labels the rule adds.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Alerts: annotations.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Alerts: the active alerts.
    #[serde(default)]
    pub alerts: Vec<PromAlert>,
    /// ok, err, unknown.
    #[serde(default)]
    pub health: String,
    /// The last evaluation's error.
    #[serde(default)]
    pub last_error: String,
    /// Seconds.
    #[serde(default)]
    pub evaluation_time: f64,
    /// RFC 3339.
    #[serde(default)]
    pub last_evaluation: String,
}

/// An active alert.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromAlert {
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// firing or pending.
    #[serde(default)]
    pub state: String,
    /// RFC 3339.
    #[serde(default)]
    pub active_at: String,
    /// The value, as Prometheus prints it.
    #[serde(default)]
    pub value: String,
}
