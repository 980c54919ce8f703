//! Request parameters as Prometheus' API reads them: Go's `ParseForm` (a form body's values
//! before the query string's, the body bounded), `FormValue` (the first value, empty when
//! missing), and Prometheus' time, duration and limit parsers.

use axum::body::to_bytes;
use axum::extract::Request;
use axum::http::header;
use strata_types::api_time::{ApiTime, parse_api_duration, parse_api_time};

use super::error::ApiError;

/// Largest request body read for POST forms (Go's `ParseForm` reads at most 10 MB).
const MAX_BODY: usize = 10 << 20;

/// The request's parameters.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Reads the form body (POST with `application/x-www-form-urlencoded`) and the query
    /// string.
    pub(crate) async fn from_request(req: Request) -> Result<Params, ApiError> {
        let query: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| parse_form(q.as_bytes()))
            .unwrap_or_default();
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let mut pairs = Vec::new();
        if is_form {
            let body = to_bytes(req.into_body(), MAX_BODY)
                .await
                .map_err(|e| ApiError::bad_data(format!("error parsing form values: {e}")))?;
            pairs = parse_form(&body);
        }
        pairs.extend(query);
        Ok(Params(pairs))
    }

    /// Go's `FormValue`: the first value, `""` when missing.
    pub(crate) fn value(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The first value, `None` when missing or empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        Some(self.value(name)).filter(|v| !v.is_empty())
    }

    /// Every value of `name` (`match[]`, `storeMatch[]`, `replicaLabels[]`).
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A boolean (Go's `strconv.ParseBool`), `default` when missing.
    pub(crate) fn bool(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
                _ => Err(ApiError::param(
                    name,
                    format!("strconv.ParseBool: parsing {v:?}: invalid syntax"),
                )),
            },
        }
    }

    /// Prometheus' `parseTimeParam`: `default` when missing.
    pub(crate) fn time_or(&self, name: &str, default: ApiTime) -> Result<ApiTime, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_api_time(v).map_err(|e| {
                ApiError::param(name, format!("invalid time value for '{name}': {e}"))
            }),
        }
    }

    /// Prometheus' `parseTime` of a required parameter (`start`, `end` of `query_range`).
    pub(crate) fn time(&self, name: &str) -> Result<ApiTime, ApiError> {
        parse_api_time(self.value(name)).map_err(|e| ApiError::param(name, e))
    }

    /// Prometheus' `parseDuration`, in nanoseconds.
    pub(crate) fn duration(&self, name: &str) -> Result<i64, ApiError> {
        parse_api_duration(self.value(name)).map_err(|e| ApiError::param(name, e))
    }

    /// Prometheus' `parseLimitParam`: 0 (no limit) when missing.
    pub(crate) fn limit(&self) -> Result<usize, ApiError> {
        let Some(v) = self.get("limit") else {
            return Ok(0);
        };
        let n = go_atoi(v).map_err(|e| ApiError::param("limit", e))?;
        if n < 0 {
            return Err(ApiError::param("limit", "limit must be non-negative"));
        }
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

fn parse_form(data: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(data)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Go's `strconv.Atoi` on 64-bit machines, with its error messages.
fn go_atoi(s: &str) -> Result<i64, String> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing {s:?}: invalid syntax"));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {s:?}: value out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoi_as_go() {
        assert_eq!(go_atoi("12"), Ok(12));
        assert_eq!(go_atoi("-3"), Ok(-3));
        assert_eq!(
            go_atoi("zz"),
            Err("strconv.Atoi: parsing \"zz\": invalid syntax".to_owned())
        );
        assert_eq!(
            go_atoi("99999999999999999999"),
            Err("strconv.Atoi: parsing \"99999999999999999999\": value out of range".to_owned())
        );
    }
}
