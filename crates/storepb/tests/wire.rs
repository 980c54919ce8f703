//! Wire compatibility with Thanos: bytes laid out by hand from the field numbers and wire
//! types of Thanos' `storepb`, `labelpb`, `hintspb` and `infopb` protos decode into the
//! expected messages, and our encoding of them is byte-identical.

use prost::Message;
use strata_storepb::{
    AggrChunk, Chunk, Label, LabelMatcher, LabelValuesRequest, PartialResponseStrategy, Series,
    SeriesBatch, SeriesRequest, SeriesResponse, ZLabelSet, chunk, hintspb, info, label_matcher,
    series_response,
};

/// A minimal protobuf writer: tag = field << 3 | wire type.
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn varint(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
        self
    }
    fn tag(&mut self, field: u64, wire: u64) -> &mut Self {
        self.varint(field << 3 | wire)
    }
    fn int(&mut self, field: u64, v: i64) -> &mut Self {
        self.tag(field, 0).varint(v as u64)
    }
    fn bytes(&mut self, field: u64, b: &[u8]) -> &mut Self {
        self.tag(field, 2).varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn msg(&mut self, field: u64, m: &W) -> &mut Self {
        self.bytes(field, &m.0)
    }
}

fn label(name: &str, value: &str) -> W {
    let mut w = W::default();
    w.bytes(1, name.as_bytes()).bytes(2, value.as_bytes());
    w
}

fn matcher(kind: i64, name: &str, value: &str) -> W {
    let mut w = W::default();
    if kind != 0 {
        w.int(1, kind);
    }
    w.bytes(2, name.as_bytes()).bytes(3, value.as_bytes());
    w
}

#[test]
fn series_request_from_thanos_layout() {
    // hints: Any{type_url=1, value=2} holding hintspb.SeriesRequestHints{block_matchers=1,
    // enable_query_stats=2}.
    let mut hints = W::default();
    hints.msg(1, &matcher(0, "__block_id", "01ABC")).int(2, 1);
    let mut any = W::default();
    any.bytes(1, b"type.googleapis.com/hintspb.SeriesRequestHints")
        .bytes(2, &hints.0);
    let mut query_hints = W::default();
    let mut func = W::default();
    func.bytes(1, b"rate");
    let mut range = W::default();
    range.int(1, 300_000);
    query_hints.int(1, 30_000).msg(2, &func).msg(5, &range);

    let mut w = W::default();
    w.int(1, 1_700_000_000_000)
        .int(2, 1_700_000_600_000)
        .msg(3, &matcher(0, "__name__", "up"))
        .msg(3, &matcher(2, "job", "api|db"))
        .msg(3, &matcher(3, "instance", ""))
        .int(4, 300_000)
        .int(5, 1) // aggregates: COUNT (unpacked, as gogo writes repeated enums packed or not)
        .int(5, 2)
        .int(7, 1) // ABORT
        .int(8, 1) // skip_chunks
        .msg(9, &any)
        .msg(12, &query_hints)
        .bytes(14, b"replica")
        .int(15, 1000)
        .int(16, 64);
    let req = SeriesRequest::decode(w.0.as_slice()).unwrap();
    assert_eq!(req.min_time, 1_700_000_000_000);
    assert_eq!(req.max_time, 1_700_000_600_000);
    assert_eq!(req.matchers.len(), 3);
    assert_eq!(req.matchers[1].r#type, label_matcher::Type::Re as i32);
    assert_eq!(req.matchers[1].value, "api|db");
    assert_eq!(req.matchers[2].r#type, label_matcher::Type::Nre as i32);
    assert_eq!(req.max_resolution_window, 300_000);
    assert_eq!(req.aggregates, vec![1, 2]);
    assert_eq!(
        req.partial_response_strategy,
        PartialResponseStrategy::Abort as i32
    );
    assert!(req.skip_chunks);
    assert_eq!(req.without_replica_labels, vec!["replica"]);
    assert_eq!(req.limit, 1000);
    assert_eq!(req.response_batch_size, 64);
    let qh = req.query_hints.as_ref().unwrap();
    assert_eq!(qh.step_millis, 30_000);
    assert_eq!(qh.func.as_ref().unwrap().name, "rate");
    assert_eq!(qh.range.as_ref().unwrap().millis, 300_000);
    let hints: hintspb::SeriesRequestHints =
        strata_storepb::convert::from_any(req.hints.as_ref().unwrap()).unwrap();
    assert_eq!(hints.block_matchers[0].name, "__block_id");
    assert!(hints.enable_query_stats);

    // Converted matchers behave as Prometheus matchers.
    let ms = strata_storepb::convert::matchers_from_proto(&req.matchers).unwrap();
    assert!(ms[1].matches("db") && !ms[1].matches("dbx"));
    assert!(!ms[2].matches(""));
}

#[test]
fn series_response_frames_from_thanos_layout() {
    // Series{labels=1 (Label), chunks=2 (AggrChunk{min_time=1,max_time=2,raw=3 Chunk{type=1,data=2,hash=3}})}
    let mut raw = W::default();
    raw.bytes(2, &[0, 1, 2, 3]).int(3, 0xdead_beef);
    let mut aggr = W::default();
    aggr.int(1, 1000).int(2, 2000).msg(3, &raw);
    let mut series = W::default();
    series
        .msg(1, &label("__name__", "up"))
        .msg(1, &label("replica", "a"))
        .msg(2, &aggr);
    let mut frame = W::default();
    frame.msg(1, &series);
    let resp = SeriesResponse::decode(frame.0.as_slice()).unwrap();
    let want = Series {
        labels: vec![
            Label {
                name: "__name__".into(),
                value: "up".into(),
            },
            Label {
                name: "replica".into(),
                value: "a".into(),
            },
        ],
        chunks: vec![AggrChunk {
            min_time: 1000,
            max_time: 2000,
            raw: Some(Chunk {
                r#type: chunk::Encoding::Xor as i32,
                data: vec![0, 1, 2, 3].into(),
                hash: 0xdead_beef,
            }),
            ..Default::default()
        }],
    };
    assert_eq!(
        resp.result,
        Some(series_response::Result::Series(want.clone()))
    );
    // Our encoding is the same bytes (fields in number order, defaults omitted).
    assert_eq!(resp.encode_to_vec(), frame.0);

    let mut warning = W::default();
    warning.bytes(2, b"store unavailable");
    let resp = SeriesResponse::decode(warning.0.as_slice()).unwrap();
    assert_eq!(
        resp.result,
        Some(series_response::Result::Warning("store unavailable".into()))
    );

    let mut batch = W::default();
    batch.msg(1, &series).msg(1, &series);
    let mut frame = W::default();
    frame.msg(4, &batch);
    let resp = SeriesResponse::decode(frame.0.as_slice()).unwrap();
    assert_eq!(
        resp.result,
        Some(series_response::Result::Batch(SeriesBatch {
            series: vec![want.clone(), want]
        }))
    );
}

#[test]
fn label_values_request_and_info_response() {
    let mut w = W::default();
    w.bytes(1, b"job")
        .int(3, 1)
        .int(4, 10)
        .int(5, 20)
        .msg(7, &matcher(1, "env", "dev"))
        .bytes(8, b"replica")
        .int(9, 5);
    let req = LabelValuesRequest::decode(w.0.as_slice()).unwrap();
    assert_eq!(req.label, "job");
    assert_eq!(req.start, 10);
    assert_eq!(req.end, 20);
    assert_eq!(
        req.matchers,
        vec![LabelMatcher {
            r#type: 1,
            name: "env".into(),
            value: "dev".into()
        }]
    );
    assert_eq!(req.limit, 5);

    // InfoResponse{label_sets=1 ZLabelSet, ComponentType=2, store=3 StoreInfo{min_time=1,
    // max_time=2, supports_sharding=3, supports_without_replica_labels=5}}
    let mut set = W::default();
    set.msg(1, &label("cluster", "eu1"));
    let mut store = W::default();
    store.int(1, -5).int(2, i64::MAX).int(3, 1).int(5, 1);
    let mut w = W::default();
    w.msg(1, &set).bytes(2, b"store").msg(3, &store);
    let resp = info::InfoResponse::decode(w.0.as_slice()).unwrap();
    assert_eq!(
        resp.label_sets,
        vec![ZLabelSet {
            labels: vec![Label {
                name: "cluster".into(),
                value: "eu1".into()
            }]
        }]
    );
    assert_eq!(resp.component_type, "store");
    let store = resp.store.as_ref().unwrap();
    assert_eq!(store.min_time, -5);
    assert_eq!(store.max_time, i64::MAX);
    assert!(store.supports_sharding && store.supports_without_replica_labels);
    assert_eq!(resp.encode_to_vec(), w.0);
}

#[test]
fn grpc_method_paths_are_thanos() {
    // tonic derives paths from package + service + method names.
    let src = include_str!(concat!(env!("OUT_DIR"), "/thanos.rs"));
    assert!(src.contains("\"/thanos.Store/Series\""));
    assert!(src.contains("\"/thanos.Store/LabelNames\""));
    assert!(src.contains("\"/thanos.Store/LabelValues\""));
    let info = include_str!(concat!(env!("OUT_DIR"), "/thanos.info.rs"));
    assert!(info.contains("\"/thanos.info.Info/Info\""));
}
