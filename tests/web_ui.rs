//! The web UI in a real headless Chromium (Debian's `chromium`, driven by ChromeDriver):
//! `strata query` over `strata store`, next to Prometheus 3.5.3 on the same blocks. The
//! query page opens from `/`, completes metric and label names, runs a typed query whose
//! table and graph show Prometheus' numbers; Thanos' / Prometheus 2's `/graph?g0.…` and
//! Prometheus 3's `/query?g0.…` links run their query at once (also through the query
//! frontend); the stores page lists the live store; the store gateway and the compactor
//! serve the bucket's blocks page. Screenshots go to `$CARGO_TARGET_TMPDIR/ui-*.png`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

use serde_json::Value;
use strata_e2e::browser::Browser;
use strata_e2e::data::DataSet;
use strata_e2e::prometheus::Prometheus;
use strata_e2e::store_api::{StrataProcess, upload_block};
use strata_e2e::{block_dirs, copy_dir, promtool_create_blocks};
use strata_objstore::Bucket;

const START_S: i64 = 1_700_000_000;
const HOURS: i64 = 6;

/// A series' labels as the page prints them: `name{a="b", c="d"}`.
fn labels_text(metric: &Value) -> String {
    let map = metric.as_object().unwrap();
    let name = map.get("__name__").and_then(Value::as_str).unwrap_or("");
    let pairs: Vec<String> = map
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{name}{{{}}}", pairs.join(", "))
}

/// The rows of the page's result table, series to value.
fn table_rows(browser: &Browser) -> BTreeMap<String, String> {
    let rows = browser.eval(
        "return [...document.querySelectorAll('#result-table tbody tr')]\
         .map(tr => [...tr.cells].map(td => td.textContent));",
    );
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_owned(),
                r[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Prometheus' instant vector, series to value.
fn prometheus_vector(body: &Value) -> BTreeMap<String, String> {
    body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                labels_text(&s["metric"]),
                s["value"][1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn screenshot(browser: &Browser, name: &str) {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ui-{name}.png"));
    browser.screenshot(&path);
    eprintln!("screenshot: {}", path.display());
}

fn wait_for_table(browser: &Browser) {
    browser.wait_for(
        "return document.querySelectorAll('#result-table tbody tr').length > 0 \
         && !document.getElementById('status').textContent.startsWith('Loading');",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_page_and_stores_page_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataSet::generate(11, START_S, HOURS);
    let input = dir.path().join("data.om");
    std::fs::write(&input, data.to_openmetrics()).unwrap();
    let blocks = dir.path().join("blocks");
    promtool_create_blocks(&input, &blocks);
    let prom_dir = dir.path().join("prometheus");
    copy_dir(&blocks, &prom_dir);
    let prometheus = Prometheus::start_on_blocks(&prom_dir);
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().join("bucket").display()
    );
    let bucket = Bucket::from_yaml(&yaml, None).unwrap();
    let mut block_ids = Vec::new();
    for block in block_dirs(&blocks) {
        block_ids.push(upload_block(&bucket, &block, &[]).await.ulid);
    }
    // The compactor works on its own copy: it may rewrite what the store serves.
    copy_dir(
        &dir.path().join("bucket"),
        &dir.path().join("compactor-bucket"),
    );
    let compactor_yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().join("compactor-bucket").display()
    );
    let compactor_data = dir.path().join("compactor");
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &yaml,
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    let query = StrataProcess::start(&["query", "--endpoint", &store.grpc]);
    let querier = format!("http://{}", query.http);
    let frontend = StrataProcess::start_http_only(&[
        "query-frontend",
        "--query-frontend.downstream-url",
        &querier,
    ]);
    let end_s = START_S + 3 * 3600 + 17;
    let end_text = "2023-11-15T01:13:37Z";
    assert_eq!(
        end_s, 1_700_010_817,
        "the end time in the page's format is {end_text}"
    );

    tokio::task::spawn_blocking(move || {
        let browser = Browser::start();

        // `/` leads to the query page.
        browser.open(&format!("{querier}/"));
        browser.wait_for("return location.pathname === '/graph' && !document.getElementById('query-page').hidden;");

        // Autocompletion: a metric name, then a label name inside a grouping clause.
        browser.type_into("#expr", "sum by (jo");
        let suggested =
            browser.wait_for("const l = document.querySelector('#suggestions li'); return !document.getElementById('suggestions').hidden && l && l.textContent;");
        assert_eq!(suggested, "job", "label names are offered inside by (…)");
        browser.type_into("#expr", "\u{E004}) (rate(http_requests_t");
        let suggested =
            browser.wait_for("const l = document.querySelector('#suggestions li'); return !document.getElementById('suggestions').hidden && l && l.textContent;");
        assert_eq!(suggested, "http_requests_total");
        browser.type_into("#expr", "\u{E004}[5m]))");
        let typed = browser.eval("return document.getElementById('expr').value;");
        let expr = "sum by (job) (rate(http_requests_total[5m]))";
        assert_eq!(typed, expr);

        // The table at a fixed time: Prometheus' numbers.
        browser.type_into("#end", end_text);
        browser.click("#tab-table");
        wait_for_table(&browser);
        let want = prometheus_vector(&prometheus.query(expr, end_s as f64));
        assert!(want.len() >= 2, "{want:?}");
        assert_eq!(table_rows(&browser), want);
        screenshot(&browser, "table");

        // The graph over the hour before, one point a minute: each series a line with
        // Prometheus' number of points, the value axis spanning Prometheus' values.
        browser.click("#tab-graph");
        browser.eval("const s = document.getElementById('step'); s.value = '1m'; return true;");
        browser.click("#run");
        browser.wait_for("return document.querySelectorAll('#graph polyline').length > 0;");
        let range = prometheus.query_range(expr, (end_s - 3600) as f64, end_s as f64, 60.0);
        let series = range["data"]["result"].as_array().unwrap();
        let lines = browser.eval(
            "return [...document.querySelectorAll('#graph polyline')]\
             .map(p => [p.dataset.series, Number(p.dataset.points)]);",
        );
        let lines: BTreeMap<String, u64> = lines
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l[0].as_str().unwrap().to_owned(), l[1].as_u64().unwrap()))
            .collect();
        let want_lines: BTreeMap<String, u64> = series
            .iter()
            .map(|s| (labels_text(&s["metric"]), s["values"].as_array().unwrap().len() as u64))
            .collect();
        assert_eq!(lines, want_lines);
        let values: Vec<f64> = series
            .iter()
            .flat_map(|s| s["values"].as_array().unwrap().iter())
            .map(|v| v[1].as_str().unwrap().parse::<f64>().unwrap())
            .collect();
        let (lo, hi) = values
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        let ticks = browser.eval(
            "return [...document.querySelectorAll('#graph .ytick')].map(t => Number(t.textContent));",
        );
        let ticks: Vec<f64> = ticks.as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect();
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        assert_eq!((ticks[0], ticks[4]), (round(lo), round(hi)), "value axis {ticks:?}");
        let url = browser.eval("return location.search;");
        assert!(url.as_str().unwrap().contains("g0.tab=0"), "{url}");
        screenshot(&browser, "graph");

        // Bookmarked links run their query at once: Thanos' and Prometheus 2's form, and
        // Prometheus 3's, through the query frontend.
        let encoded = "sum%20by%20(job)%20(rate(http_requests_total%5B5m%5D))";
        let end_param = "g0.end_input=2023-11-15%2001%3A13%3A37";
        browser.open(&format!("{querier}/graph?g0.expr={encoded}&g0.tab=1&{end_param}"));
        wait_for_table(&browser);
        assert_eq!(table_rows(&browser), want);
        let frontend_url = format!("http://{}", frontend.http);
        browser.open(&format!("{frontend_url}/query?g0.expr={encoded}&g0.tab=table&{end_param}"));
        wait_for_table(&browser);
        assert_eq!(table_rows(&browser), want);
        browser.open(&format!("{querier}/graph?g0.expr={encoded}&g0.tab=0&{end_param}"));
        browser.wait_for("return document.querySelectorAll('#graph polyline').length > 0;");
        // A query error is shown, not swallowed.
        browser.open(&format!("{querier}/graph?g0.expr=sum(&g0.tab=1"));
        let status = browser.wait_for(
            "const s = document.getElementById('status').textContent; return s.startsWith('Error') && s;",
        );
        assert!(status.as_str().unwrap().contains("parse error"), "{status}");

        // The stores page lists the store, up, with its time range.
        browser.open(&format!("{querier}/stores"));
        let store_row = browser.wait_for(&format!(
            "const r = document.querySelector('tr[data-endpoint=\"{}\"]'); \
             return r && [...r.cells].map(c => c.textContent);",
            store.grpc
        ));
        assert_eq!(store_row[1], "UP", "{store_row}");
        assert!(store_row[5].as_str().unwrap().starts_with("2023-11-14"), "{store_row}");
        screenshot(&browser, "stores");

        // The blocks page of the store gateway (`/loaded`, as Thanos', and `/blocks`) and
        // of a compactor over a copy of the bucket (`/` and `/blocks`).
        for path in ["/loaded", "/blocks"] {
            let page = store.http_get(path);
            for id in &block_ids {
                assert!(page.contains(id.as_str()), "{path} lacks block {id}");
            }
        }
        let listed: Value = serde_json::from_str(&store.http_get("/api/v1/blocks")).unwrap();
        assert_eq!(
            listed["data"]["blocks"].as_array().map(Vec::len),
            Some(block_ids.len())
        );
        browser.open(&format!("http://{}/loaded", store.http));
        browser.wait_for("return document.querySelectorAll('.blk').length > 0;");
        screenshot(&browser, "blocks");
        let compactor = StrataProcess::start_http_only(&[
            "compact",
            "--objstore.config",
            &compactor_yaml,
            "--data-dir",
            compactor_data.to_str().unwrap(),
            "--wait",
            "--wait-interval=1h",
        ]);
        for path in ["/", "/blocks"] {
            let page = compactor.http_get(path);
            assert!(page.contains("<h1>Blocks in"), "{path}: {page}");
            assert!(page.contains("class=\"blk"), "{path}: no block drawn");
        }
    })
    .await
    .unwrap();
}
