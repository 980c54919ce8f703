//! The blocks page: the bucket's blocks on a timeline, one row of bars per stream and
//! resolution (like Thanos' block viewer), plus the same data as JSON at `/api/v1/blocks`.
//! Served by `strata tools bucket web` (at `/`), the compactor (at `/` and `/blocks`) and
//! the store gateway (at `/loaded`, as Thanos', and `/blocks`). The bucket is listed anew
//! on each request; no JavaScript needed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use strata_objstore::Bucket;

use strata_block::listing::{BlockRow, list_blocks};

/// The page at each of `pages` (e.g. `/`, `/blocks`) and its JSON at `/api/v1/blocks`.
pub fn router(bucket: Bucket, pages: &[&str]) -> Router {
    let mut router = Router::new().route("/api/v1/blocks", get(api));
    for path in pages {
        router = router.route(path, get(page));
    }
    router.with_state(Listing {
        bucket,
        one_at_a_time: Arc::new(tokio::sync::Semaphore::new(1)),
    })
}

/// The bucket, listed by one request at a time (a listing reads every block's meta.json;
/// many clients reloading the page wait their turn instead of multiplying bucket calls).
#[derive(Clone)]
struct Listing {
    bucket: Bucket,
    one_at_a_time: Arc<tokio::sync::Semaphore>,
}

impl Listing {
    async fn list(&self) -> Result<(Vec<BlockRow>, Vec<String>), String> {
        let _permit = self
            .one_at_a_time
            .acquire()
            .await
            .map_err(|e| e.to_string())?;
        list_blocks(&self.bucket).await.map_err(|e| e.to_string())
    }
}

/// `2006-01-02T15:04:05.000Z` of a time in milliseconds.
fn format_rfc3339_millis(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

async fn api(State(listing): State<Listing>) -> Response {
    match listing.list().await {
        Ok((rows, partial)) => axum::Json(serde_json::json!({
            "status": "success",
            "data": {"blocks": rows, "partial": partial},
        }))
        .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

async fn page(State(listing): State<Listing>) -> Response {
    match listing.list().await {
        Ok((rows, partial)) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            render_page(listing.bucket.name(), &rows, &partial),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML page: a timeline per (labels, resolution) group, blocks as bars positioned by
/// time, coloured by compaction level, marked blocks hatched.
pub fn render_page(bucket: &str, rows: &[BlockRow], partial: &[String]) -> String {
    let min = rows.iter().map(|r| r.min_time).min().unwrap_or(0);
    let max = rows
        .iter()
        .map(|r| r.max_time)
        .max()
        .unwrap_or(1)
        .max(min + 1);
    let span = (max - min) as f64;
    let mut groups: BTreeMap<(String, i64), Vec<&BlockRow>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((r.labels.clone(), r.resolution))
            .or_default()
            .push(r);
    }
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Strata blocks: {b}</title><style>\
body{{font-family:sans-serif;margin:1em}} .group{{margin:1em 0}} .lane{{position:relative;height:22px;background:#f4f4f4;margin:2px 0}}\
.blk{{position:absolute;top:1px;height:20px;border:1px solid #333;box-sizing:border-box;font-size:10px;overflow:hidden;white-space:nowrap}}\
.l1{{background:#9ecae1}} .l2{{background:#6baed6}} .l3{{background:#3182bd;color:#fff}} .l4{{background:#08519c;color:#fff}}\
.marked{{background-image:repeating-linear-gradient(45deg,transparent,transparent 4px,#e34a33 4px,#e34a33 6px)}}\
table{{border-collapse:collapse;font-size:12px}} td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}</style></head><body>\
<h1>Blocks in {b}</h1><p>{n} blocks from {from} until {until}; {p} partial uploads.</p>",
        b = escape(bucket),
        n = rows.len(),
        from = format_rfc3339_millis(min),
        until = format_rfc3339_millis(max),
        p = partial.len(),
    );
    for ((labels, resolution), blocks) in &groups {
        let _ = write!(
            html,
            "<div class=\"group\"><h3>{} &middot; resolution {}</h3>",
            escape(labels),
            if *resolution == 0 {
                "raw".to_owned()
            } else {
                format!("{}s", resolution / 1000)
            }
        );
        // Lanes: a block goes into the first lane where it does not overlap.
        let mut lanes: Vec<Vec<&BlockRow>> = Vec::new();
        for b in blocks {
            let lane = lanes
                .iter()
                .position(|l| l.last().is_none_or(|last| last.max_time <= b.min_time));
            match lane {
                Some(i) => {
                    if let Some(l) = lanes.get_mut(i) {
                        l.push(b);
                    }
                }
                None => lanes.push(vec![b]),
            }
        }
        for lane in lanes {
            html.push_str("<div class=\"lane\">");
            for b in lane {
                let left = (b.min_time - min) as f64 / span * 100.0;
                let width = ((b.max_time - b.min_time) as f64 / span * 100.0).max(0.2);
                let class = format!(
                    "blk l{}{}",
                    b.level.clamp(1, 4),
                    if b.marks.iter().any(|m| m == "deletion") {
                        " marked"
                    } else {
                        ""
                    }
                );
                let _ = write!(
                    html,
                    "<div class=\"{class}\" style=\"left:{left:.4}%;width:{width:.4}%\" title=\"{id}&#10;{from} .. {until}&#10;level {lvl}, {series} series, {samples} samples, {size} bytes&#10;marks: {marks}\">{id}</div>",
                    id = b.id,
                    from = format_rfc3339_millis(b.min_time),
                    until = format_rfc3339_millis(b.max_time),
                    lvl = b.level,
                    series = b.series,
                    samples = b.samples,
                    size = b.size_bytes,
                    marks = if b.marks.is_empty() {
                        "none".to_owned()
                    } else {
                        b.marks.join(",")
                    },
                );
            }
            html.push_str("</div>");
        }
        html.push_str("</div>");
    }
    html.push_str("<h2>All blocks</h2><table><tr><th>ULID</th><th>from</th><th>until</th><th>resolution</th><th>level</th><th>series</th><th>samples</th><th>bytes</th><th>marks</th><th>labels</th></tr>");
    for r in rows {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.id,
            format_rfc3339_millis(r.min_time),
            format_rfc3339_millis(r.max_time),
            r.resolution,
            r.level,
            r.series,
            r.samples,
            r.size_bytes,
            escape(&r.marks.join(",")),
            escape(&r.labels)
        );
    }
    html.push_str("</table></body></html>");
    html
}
