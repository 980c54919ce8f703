//! `strata store` end to end: real Prometheus blocks (written by promtool) uploaded to a
//! bucket with Thanos metas, served by the real binary over FILESYSTEM and over S3 (an
//! in-process s3s server); Series answers hold exactly the samples in the blocks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::Path;

use strata_e2e::data::DataSet;
use strata_e2e::s3::S3Server;
use strata_e2e::store_api::{StrataProcess, series_samples, upload_block};
use strata_e2e::{block_dirs, copy_dir, promtool_create_blocks};
use strata_objstore::Bucket;
use strata_storepb::store_client::StoreClient;
use strata_storepb::{LabelNamesRequest, LabelValuesRequest, SeriesRequest, info};
use strata_types::{Labels, MatchType, Matcher, Sample};

const START_S: i64 = 1_700_000_000;
const HOURS: i64 = 6;
const EXT: [(&str, &str); 2] = [("cluster", "eu1"), ("replica", "a")];

struct Fixture {
    _dir: tempfile::TempDir,
    data: DataSet,
    blocks: Vec<std::path::PathBuf>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = DataSet::generate(11, START_S, HOURS);
    let input = dir.path().join("data.om");
    std::fs::write(&input, data.to_openmetrics()).unwrap();
    let out = dir.path().join("blocks");
    promtool_create_blocks(&input, &out);
    let blocks = block_dirs(&out);
    assert!(blocks.len() >= 3, "promtool wrote {} blocks", blocks.len());
    Fixture {
        _dir: dir,
        data,
        blocks,
    }
}

/// The data with external labels, as the gateway must serve it.
fn expected(data: &DataSet, strip: &[&str]) -> BTreeMap<Labels, Vec<Sample>> {
    data.series()
        .into_iter()
        .map(|(labels, samples)| {
            let mut b = labels.to_builder();
            for (k, v) in EXT {
                if !strip.contains(&k) {
                    b.set(k, v);
                }
            }
            (b.build(), samples)
        })
        .collect()
}

fn matcher(kind: MatchType, name: &str, value: &str) -> Matcher {
    Matcher::new(kind, name, value).unwrap()
}

fn select(
    all: &BTreeMap<Labels, Vec<Sample>>,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
) -> BTreeMap<Labels, Vec<Sample>> {
    all.iter()
        .filter(|(l, _)| {
            matchers
                .iter()
                .all(|m| m.matches(l.get(m.name()).unwrap_or("")))
        })
        .map(|(l, s)| {
            let samples: Vec<Sample> = s
                .iter()
                .filter(|x| x.t >= mint && x.t <= maxt)
                .copied()
                .collect();
            (l.clone(), samples)
        })
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

fn same(
    got: &BTreeMap<Labels, Vec<Sample>>,
    want: &BTreeMap<Labels, Vec<Sample>>,
    what: &str,
) -> usize {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: series differ"
    );
    let mut samples = 0;
    for (labels, w) in want {
        let g = &got[labels];
        assert_eq!(g.len(), w.len(), "{what}: {labels}: sample count");
        for (a, b) in g.iter().zip(w) {
            let same_value = a.v.to_bits() == b.v.to_bits() || (a.v.is_nan() && b.v.is_nan());
            assert!(a.t == b.t && same_value, "{what}: {labels}: {a:?} vs {b:?}");
        }
        samples += w.len();
    }
    samples
}

fn request(matchers: &[Matcher], mint: i64, maxt: i64) -> SeriesRequest {
    SeriesRequest {
        min_time: mint,
        max_time: maxt,
        matchers: matchers
            .iter()
            .map(strata_storepb::convert::matcher_to_proto)
            .collect(),
        ..Default::default()
    }
}

fn metric_names(data: &DataSet) -> Vec<String> {
    let mut names: Vec<String> = data
        .series()
        .keys()
        .filter_map(|l| l.metric_name().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Checks Series for a set of selectors and ranges; returns the samples compared.
async fn check_series(url: &str, data: &DataSet) -> usize {
    let all = expected(data, &[]);
    let start = START_S * 1000;
    let end = start + HOURS * 3_600_000;
    let names = metric_names(data);
    let mut cases: Vec<(Vec<Matcher>, i64, i64)> = vec![
        (
            vec![matcher(MatchType::Regex, "__name__", ".+")],
            start,
            end,
        ),
        // Crosses a block boundary in the middle of chunks.
        (
            vec![matcher(MatchType::Regex, "__name__", ".+")],
            start + 5_432_100,
            start + 9_876_500,
        ),
        (
            vec![
                matcher(MatchType::Equal, "cluster", "eu1"),
                matcher(MatchType::Regex, "__name__", ".+"),
            ],
            start,
            end,
        ),
        (
            vec![
                matcher(MatchType::Equal, "cluster", "us1"),
                matcher(MatchType::Regex, "__name__", ".+"),
            ],
            start,
            end,
        ),
        (
            vec![
                matcher(MatchType::NotRegex, "replica", "b|c"),
                matcher(MatchType::Regex, "__name__", ".*_total|.*_bucket"),
            ],
            start,
            end,
        ),
    ];
    for name in &names {
        cases.push((
            vec![matcher(MatchType::Equal, "__name__", name)],
            start,
            end,
        ));
        cases.push((
            vec![
                matcher(MatchType::Equal, "__name__", name),
                matcher(MatchType::Equal, "nonexistent", ""),
            ],
            start + 3_600_000,
            end - 1_800_000,
        ));
    }
    if let Some(first) = names.first() {
        cases.push((
            vec![
                matcher(MatchType::Equal, "__name__", first),
                matcher(MatchType::NotEqual, "instance", ""),
            ],
            start,
            end,
        ));
    }
    let mut total = 0;
    for (matchers, mint, maxt) in cases {
        let want = select(&all, &matchers, mint, maxt);
        let got = series_samples(url, request(&matchers, mint, maxt))
            .await
            .unwrap();
        total += same(&got, &want, &format!("{matchers:?} [{mint}, {maxt}]"));
    }

    // Batched frames and replica-label stripping.
    let matchers = vec![matcher(MatchType::Regex, "__name__", ".+")];
    let mut req = request(&matchers, start, end);
    req.response_batch_size = 64;
    req.without_replica_labels = vec!["replica".into()];
    let got = series_samples(url, req).await.unwrap();
    total += same(
        &got,
        &select(&expected(data, &["replica"]), &matchers, start, end),
        "batched, without replica",
    );

    // Labels only.
    let mut client = StoreClient::connect(url.to_owned()).await.unwrap();
    let mut req = request(&matchers, start, end);
    req.skip_chunks = true;
    let mut stream = client.series(req).await.unwrap().into_inner();
    let mut count = 0;
    while let Some(frame) = stream.message().await.unwrap() {
        if let Some(strata_storepb::series_response::Result::Series(s)) = frame.result {
            assert!(s.chunks.is_empty());
            count += 1;
        }
    }
    assert_eq!(count, all.len());
    total
}

async fn check_labels(url: &str, data: &DataSet) {
    let mut client = StoreClient::connect(url.to_owned()).await.unwrap();
    let names = client
        .label_names(LabelNamesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .names;
    let mut want: Vec<String> = expected(data, &[])
        .keys()
        .flat_map(|l| l.iter().map(|x| x.name.clone()).collect::<Vec<_>>())
        .collect();
    want.sort();
    want.dedup();
    assert_eq!(names, want);

    let values = client
        .label_values(LabelValuesRequest {
            label: "__name__".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .values;
    assert_eq!(values, metric_names(data));

    let values = client
        .label_values(LabelValuesRequest {
            label: "cluster".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .values;
    assert_eq!(values, vec!["eu1"]);

    // With a matcher: only the values of matching series.
    let first = &metric_names(data)[0];
    let values = client
        .label_values(LabelValuesRequest {
            label: "__name__".into(),
            matchers: vec![strata_storepb::convert::matcher_to_proto(&matcher(
                MatchType::Equal,
                "__name__",
                first,
            ))],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .values;
    assert_eq!(values, vec![first.clone()]);

    let mut info_client = info::info_client::InfoClient::connect(url.to_owned())
        .await
        .unwrap();
    let info = info_client
        .info(info::InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.component_type, "store");
    assert_eq!(info.label_sets.len(), 1);
    let store = info.store.unwrap();
    assert_eq!(store.min_time, data.start_ms);
    assert!(
        store.max_time >= data.end_ms - 15_000,
        "{} vs {}",
        store.max_time,
        data.end_ms
    );
    assert!(store.supports_without_replica_labels);
}

/// Adds noise the gateway must ignore or survive: a partial upload, a block with a corrupt
/// index, and a block marked for deletion two days ago.
async fn upload_noise(bucket: &Bucket, block: &Path, scratch: &Path) {
    let with_new_id = |name: &str| {
        let dir = scratch.join(name);
        copy_dir(block, &dir);
        let meta_path = dir.join("meta.json");
        let mut meta = strata_tsdb::BlockMeta::parse(&std::fs::read(&meta_path).unwrap()).unwrap();
        meta.ulid = ulid::Ulid::generate().to_string();
        meta.compaction.sources = vec![meta.ulid.clone()];
        std::fs::write(&meta_path, meta.to_json().unwrap()).unwrap();
        (dir, meta.ulid)
    };
    let (partial, partial_id) = with_new_id("partial");
    bucket
        .upload_file(&format!("{partial_id}/index"), &partial.join("index"))
        .await
        .unwrap();

    let (corrupt, _) = with_new_id("corrupt");
    let index = corrupt.join("index");
    let mut bytes = std::fs::read(&index).unwrap();
    let len = bytes.len();
    for b in &mut bytes[len - 200..] {
        *b ^= 0x5a;
    }
    std::fs::write(&index, bytes).unwrap();
    upload_block(bucket, &corrupt, &EXT).await;

    let (deleted, deleted_id) = with_new_id("deleted");
    upload_block(bucket, &deleted, &EXT).await;
    let two_days_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 2 * 86_400;
    let mark = format!(
        r#"{{"id":"{deleted_id}","version":1,"details":"test","deletion_time":{two_days_ago}}}"#
    );
    bucket
        .upload(
            &format!("{deleted_id}/deletion-mark.json"),
            mark.into_bytes().into(),
        )
        .await
        .unwrap();
}

fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in metrics:\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_gateway_over_filesystem_bucket() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let bucket_dir = dir.path().join("bucket");
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket_dir.display()
    );
    let bucket = Bucket::from_yaml(&yaml, None).unwrap();
    for block in &fx.blocks {
        upload_block(&bucket, block, &EXT).await;
    }
    upload_noise(&bucket, &fx.blocks[0], dir.path()).await;
    let config = dir.path().join("bucket.yml");
    std::fs::write(&config, &yaml).unwrap();
    let data_dir = dir.path().join("data");
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config-file",
        config.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    let samples = check_series(&store.grpc_url(), &fx.data).await;
    assert!(samples > 100_000, "compared {samples} samples");
    // The same requests again: each block's series for each selection now come from its
    // expanded list in the index cache (other time ranges of the same selection too), with
    // the same answers.
    let expanded = |metrics: &str, what: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!("thanos_store_index_cache_{what}_total{{"))
                    && l.contains("item_type=\"ExpandedSeries\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = store.http_get("/metrics");
    assert!(expanded(&before, "items_added") > 0.0, "{before}");
    let again = check_series(&store.grpc_url(), &fx.data).await;
    assert_eq!(again, samples);
    let after = store.http_get("/metrics");
    assert!(
        expanded(&after, "hits") > expanded(&before, "hits"),
        "no expanded series served from the cache:\n{after}"
    );
    check_labels(&store.grpc_url(), &fx.data).await;

    let metrics = store.http_get("/metrics");
    assert_eq!(
        metric_value(&metrics, "thanos_bucket_store_blocks_loaded"),
        fx.blocks.len() as f64
    );
    assert_eq!(
        metric_value(&metrics, "thanos_bucket_store_block_load_failures_total"),
        1.0
    );
    assert!(
        metrics.contains("thanos_blocks_meta_synced{state=\"no-meta-json\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("thanos_blocks_meta_synced{state=\"marked-for-deletion\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("thanos_objstore_bucket_operations_total{"),
        "{metrics}"
    );
    // Index-headers are on local disk, one per served block.
    for block in &fx.blocks {
        let id = block.file_name().unwrap();
        assert!(data_dir.join(id).join("index-header").exists());
    }
    drop(store);

    // A restart reuses the index-headers; a corrupt one is rebuilt.
    let first = fx.blocks[0].file_name().unwrap();
    std::fs::write(data_dir.join(first).join("index-header"), b"garbage").unwrap();
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config-file",
        config.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    check_series(&store.grpc_url(), &fx.data).await;
}

/// One gRPC message, length-prefixed; snappy-compressed (the framed format, as Thanos'
/// `--grpc-compression=snappy` sends it) when `snappy`.
fn grpc_frame(message: &[u8], snappy: bool) -> Vec<u8> {
    use std::io::Write;
    let (flag, payload) = if snappy {
        let mut w = snap::write::FrameEncoder::new(Vec::new());
        w.write_all(message).unwrap();
        (1u8, w.into_inner().unwrap())
    } else {
        (0u8, message.to_vec())
    };
    let mut body = vec![flag];
    body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    body.extend_from_slice(&payload);
    body
}

/// One gRPC call over a bare HTTP/2 connection with `body` (framed messages), declaring
/// `grpc-encoding: snappy` when `snappy`. Returns the `grpc-status` (from the trailers or a
/// trailers-only answer) and the answer's messages, decompressed: a snappy request is
/// answered with snappy-compressed messages (`grpc-encoding: snappy`), as grpc-go does.
async fn raw_grpc(
    address: &str,
    path: &str,
    body: Vec<u8>,
    snappy: bool,
) -> (String, Vec<Vec<u8>>) {
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut request = http::Request::post(format!("http://{address}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if snappy {
        request = request
            .header("grpc-encoding", "snappy")
            .header("grpc-accept-encoding", "snappy");
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    let status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status").cloned())
        .or_else(|| parts.headers.get("grpc-status").cloned())
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let data = collected.to_bytes();
    let answered_snappy = parts
        .headers
        .get("grpc-encoding")
        .is_some_and(|v| v == "snappy");
    assert_eq!(answered_snappy, snappy && status == "0", "{parts:?}");
    let mut messages = Vec::new();
    let mut pos = 0;
    while pos + 5 <= data.len() {
        let len = u32::from_be_bytes(data[pos + 1..pos + 5].try_into().unwrap()) as usize;
        let payload = &data[pos + 5..pos + 5 + len];
        if snappy {
            assert_eq!(data[pos], 1, "answers to snappy requests are compressed");
            let mut decoded = Vec::new();
            std::io::Read::read_to_end(&mut snap::read::FrameDecoder::new(payload), &mut decoded)
                .unwrap();
            messages.push(decoded);
        } else {
            assert_eq!(data[pos], 0, "answers to plain requests are not compressed");
            messages.push(payload.to_vec());
        }
        pos += 5 + len;
    }
    (status, messages)
}

/// Thanos queriers with `--grpc-compression=snappy` send snappy-compressed requests: they
/// get the same answers as uncompressed ones, and bad snappy data is a clear gRPC error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snappy_compressed_requests_are_served() {
    use prost::Message;
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().join("bucket").display()
    );
    let bucket = Bucket::from_yaml(&yaml, None).unwrap();
    for block in &fx.blocks {
        upload_block(&bucket, block, &EXT).await;
    }
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &yaml,
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    let call = |path: &'static str, message: Vec<u8>, snappy: bool| {
        let address = store.grpc.clone();
        async move { raw_grpc(&address, path, grpc_frame(&message, snappy), snappy).await }
    };
    let names_request = strata_storepb::LabelNamesRequest {
        start: i64::MIN,
        end: i64::MAX,
        ..Default::default()
    }
    .encode_to_vec();
    let (s1, plain) = call("/thanos.Store/LabelNames", names_request.clone(), false).await;
    let (s2, compressed) = call("/thanos.Store/LabelNames", names_request.clone(), true).await;
    assert_eq!((s1.as_str(), s2.as_str()), ("0", "0"));
    let names = |m: &[Vec<u8>]| {
        strata_storepb::LabelNamesResponse::decode(m[0].as_slice())
            .unwrap()
            .names
    };
    assert_eq!(names(&compressed), names(&plain));
    assert!(names(&plain).contains(&"__name__".to_owned()));

    // Series, streamed: the same frames either way.
    let series_request = request(
        &[matcher(MatchType::Regex, "__name__", "http_.*")],
        i64::MIN,
        i64::MAX,
    )
    .encode_to_vec();
    let (s1, plain) = call("/thanos.Store/Series", series_request.clone(), false).await;
    let (s2, compressed) = call("/thanos.Store/Series", series_request, true).await;
    assert_eq!((s1.as_str(), s2.as_str()), ("0", "0"));
    assert!(plain.len() > 1, "{} frames", plain.len());
    assert_eq!(plain, compressed);

    // A message that claims snappy but is not: InvalidArgument; the server goes on.
    let mut junk = vec![1u8];
    junk.extend_from_slice(&4u32.to_be_bytes());
    junk.extend_from_slice(b"junk");
    let (status, _) = raw_grpc(&store.grpc, "/thanos.Store/LabelNames", junk, true).await;
    assert_eq!(status, "3", "invalid snappy data is InvalidArgument");
    let (status, _) = call("/thanos.Store/LabelNames", names_request, true).await;
    assert_eq!(status, "0");

    // A querier started with --grpc-compression=snappy (the bitnami chart passes it) sends
    // compressed requests, decodes the compressed answers and gives the same results. A
    // relay between querier and store keeps the bytes of each direction: snappy's framed
    // stream identifier is in both only with compression on. (The store's answers are
    // mostly XOR chunks, which snappy cannot shrink: compressed and plain are about the same
    // size here.)
    let range = |q: &StrataProcess| {
        strata_e2e::prometheus::get_json(
            &format!("http://{}", q.http),
            "/api/v1/query_range",
            &[
                ("query", "sum by (job) (rate(http_requests_total[5m]))"),
                ("start", &START_S.to_string()),
                ("end", &(START_S + HOURS * 3600).to_string()),
                ("step", "300"),
            ],
        )
    };
    let magic = b"\xff\x06\x00\x00sNaPpY";
    let has_magic = |bytes: &[u8]| bytes.windows(magic.len()).any(|w| w == magic);
    let mut answers = Vec::new();
    for compression in ["none", "snappy"] {
        let (relay, seen) = recording_relay(&store.grpc).await;
        let q = StrataProcess::start(&[
            "query",
            "--endpoint",
            &relay,
            "--grpc-compression",
            compression,
        ]);
        let answer = tokio::task::spawn_blocking(move || {
            let answer = range(&q);
            drop(q);
            answer
        })
        .await
        .unwrap();
        assert_eq!(answer["status"], "success", "{answer}");
        let seen = seen.lock().unwrap();
        let (up, down) = (&seen.0, &seen.1);
        eprintln!(
            "--grpc-compression={compression}: querier sent {} bytes, store answered {} bytes",
            up.len(),
            down.len()
        );
        let on = compression == "snappy";
        assert_eq!(has_magic(up), on, "{compression}: requests compressed");
        assert_eq!(has_magic(down), on, "{compression}: answers compressed");
        answers.push(answer);
    }
    assert!(
        answers[0]["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{}",
        answers[0]
    );
    assert_eq!(answers[0], answers[1]);
}

/// Bytes a relay saw: sent to the target, and sent back.
type Seen = std::sync::Arc<std::sync::Mutex<(Vec<u8>, Vec<u8>)>>;

/// A TCP relay on 127.0.0.1 to `target` keeping every byte in each direction.
async fn recording_relay(target: &str) -> (String, Seen) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let seen = Seen::default();
    let target = target.to_owned();
    let record = std::sync::Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                return;
            };
            let (from_client, to_client) = inbound.into_split();
            let (from_server, to_server) = outbound.into_split();
            for (mut from, mut to, upward) in [
                (from_client, to_server, true),
                (from_server, to_client, false),
            ]
            .map(|(f, t, u)| {
                (
                    Box::new(f) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                    Box::new(t) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                    u,
                )
            }) {
                let record = std::sync::Arc::clone(&record);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n) = from.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        {
                            let mut seen = record.lock().unwrap();
                            let side = if upward { &mut seen.0 } else { &mut seen.1 };
                            side.extend_from_slice(&buf[..n]);
                        }
                        if to.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown().await;
                });
            }
        }
    });
    (address, seen)
}

/// The sum of a metric over its label sets (0 when absent).
fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `--index-cache.config` with a real memcached: a second pass over the same requests is
/// answered from memcached with the same samples, and with memcached gone the answers stay
/// exact (uncached) while the failures are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_gateway_with_memcached_index_cache() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().join("bucket").display()
    );
    let bucket = Bucket::from_yaml(&yaml, None).unwrap();
    for block in &fx.blocks {
        upload_block(&bucket, block, &EXT).await;
    }
    let port = strata_e2e::free_port();
    let memcached = strata_e2e::memcached::Memcached::start(port);
    let cache = format!(
        "type: MEMCACHED\nconfig:\n  addresses: [\"127.0.0.1:{port}\"]\n  timeout: 1s\n  max_item_size: 1MiB\nenabled_items: [Postings, Series]\n"
    );
    let data_dir = dir.path().join("data");
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &yaml,
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--index-cache.config",
        &cache,
    ]);
    let first = check_series(&store.grpc_url(), &fx.data).await;
    let hits = |m: &str| metric_sum(m, "thanos_store_index_cache_hits_total");
    let before = hits(&store.http_get("/metrics"));
    // Writes to memcached go out in the background.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let second = check_series(&store.grpc_url(), &fx.data).await;
    assert_eq!(first, second);
    let metrics = store.http_get("/metrics");
    let after = hits(&metrics);
    let requests = metric_sum(&metrics, "thanos_store_index_cache_requests_total");
    eprintln!(
        "index cache: {before} hits after the first pass, {after} after the second, of {requests} requests"
    );
    assert!(after - before > 100.0, "{before} -> {after}");
    for item in ["Postings", "Series"] {
        assert!(
            metrics.contains(&format!(
                "thanos_store_index_cache_hits_total{{item_type=\"{item}\"}}"
            )),
            "{metrics}"
        );
    }
    let failures: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("thanos_memcached_operation_failures_total"))
        .collect();
    assert_eq!(
        metric_sum(&metrics, "thanos_memcached_operation_failures_total"),
        0.0,
        "{failures:?}"
    );

    drop(memcached);
    let third = check_series(&store.grpc_url(), &fx.data).await;
    assert_eq!(first, third);
    let metrics = store.http_get("/metrics");
    assert!(metric_sum(&metrics, "thanos_memcached_operation_failures_total") > 0.0);
}

/// The store gateway over a real Garage: the same exact answers as over the other backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_gateway_over_garage() {
    let fx = fixture();
    let garage = strata_e2e::garage::Garage::start("thanos");
    let yaml = garage.bucket_yaml();
    let bucket = Bucket::from_yaml(&yaml, None).unwrap();
    for block in &fx.blocks {
        upload_block(&bucket, block, &EXT).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &yaml,
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    let samples = check_series(&store.grpc_url(), &fx.data).await;
    assert!(samples > 100_000, "compared {samples} samples");
    check_labels(&store.grpc_url(), &fx.data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_gateway_over_s3_bucket() {
    let fx = fixture();
    let server = S3Server::start("thanos");
    let bucket = Bucket::from_yaml(&server.bucket_yaml(), None).unwrap();
    for block in &fx.blocks {
        upload_block(&bucket, block, &EXT).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &server.bucket_yaml(),
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    let samples = check_series(&store.grpc_url(), &fx.data).await;
    assert!(samples > 100_000, "compared {samples} samples");
    check_labels(&store.grpc_url(), &fx.data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_gateway_limits_time_window_and_shards() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let bucket_dir = dir.path().join("bucket");
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket_dir.display()
    );
    let bucket = Bucket::from_yaml(&yaml, None).unwrap();
    for block in &fx.blocks {
        upload_block(&bucket, block, &EXT).await;
    }
    let start = START_S * 1000;
    let end = start + HOURS * 3_600_000;
    let all = vec![matcher(MatchType::Regex, "__name__", ".+")];

    // Sample limit: a clear RESOURCE_EXHAUSTED.
    let data_dir = dir.path().join("data-limit");
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &yaml,
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--store.grpc.series-sample-limit",
        "1000",
    ]);
    let err = series_samples(&store.grpc_url(), request(&all, start, end))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("samples limit"), "{err}");
    drop(store);

    // Two hashmod shards split the blocks: each block served by exactly one.
    let mut served = Vec::new();
    for shard in 0..2 {
        let relabel = format!(
            "- action: hashmod\n  source_labels: [__block_id]\n  target_label: shard\n  modulus: 2\n- action: keep\n  source_labels: [shard]\n  regex: {shard}\n"
        );
        let data_dir = dir.path().join(format!("data-shard-{shard}"));
        let store = StrataProcess::start(&[
            "store",
            "--objstore.config",
            &yaml,
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--selector.relabel-config",
            &relabel,
        ]);
        let metrics = store.http_get("/metrics");
        served.push(metric_value(&metrics, "thanos_bucket_store_blocks_loaded") as usize);
    }
    assert_eq!(served.iter().sum::<usize>(), fx.blocks.len(), "{served:?}");

    // Time window: only blocks overlapping the last two hours.
    let data_dir = dir.path().join("data-window");
    let min_time = strata_tools::format_rfc3339_millis(end - 3_600_000);
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &yaml,
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--min-time",
        &min_time,
    ]);
    let got = series_samples(&store.grpc_url(), request(&all, start, end))
        .await
        .unwrap();
    let first_kept = got.values().flatten().map(|s| s.t).min().unwrap();
    assert!(
        first_kept >= end - 3_600_000 - 3 * 3_600_000,
        "{first_kept}"
    );
    assert!(first_kept > start, "early blocks should be excluded");
}
