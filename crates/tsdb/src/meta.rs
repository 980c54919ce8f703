//! `meta.json`: Prometheus' block metadata plus Thanos' `thanos` section.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// meta.json could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// Not valid JSON of the expected shape.
    #[error("malformed: {0}")]
    Json(#[from] serde_json::Error),
    /// Only version 1 exists.
    #[error("unsupported meta.json version {0}")]
    Version(u32),
    /// Only version 1 (or 0, read as 1) of the thanos section exists.
    #[error("unsupported thanos section version {0}")]
    ThanosVersion(u32),
    /// The ULID does not parse.
    #[error("invalid ulid {0:?}")]
    Ulid(String),
    /// maxTime before minTime.
    #[error("maxTime {max_time} before minTime {min_time}")]
    TimeRange {
        /// minTime.
        min_time: i64,
        /// maxTime.
        max_time: i64,
    },
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// Block statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    /// Samples in the block.
    #[serde(rename = "numSamples", default, skip_serializing_if = "is_zero")]
    pub num_samples: u64,
    /// Series in the block.
    #[serde(rename = "numSeries", default, skip_serializing_if = "is_zero")]
    pub num_series: u64,
    /// Chunks in the block.
    #[serde(rename = "numChunks", default, skip_serializing_if = "is_zero")]
    pub num_chunks: u64,
    /// Tombstone entries.
    #[serde(rename = "numTombstones", default, skip_serializing_if = "is_zero")]
    pub num_tombstones: u64,
    /// Fields of newer Prometheus versions (e.g. numFloatSamples), kept as they were.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A parent block of a compacted block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDesc {
    /// Parent ULID.
    pub ulid: String,
    /// Parent minTime.
    #[serde(rename = "minTime")]
    pub min_time: i64,
    /// Parent maxTime.
    #[serde(rename = "maxTime")]
    pub max_time: i64,
}

/// Compaction history of a block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compaction {
    /// 1 for blocks cut from the head, +1 per compaction.
    pub level: u32,
    /// ULIDs of the level-1 blocks this block holds data of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// Whether the block may be deleted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deletable: bool,
    /// Direct parents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<BlockDesc>,
    /// Whether compaction of this block failed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub failed: bool,
    /// Compaction hints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
}

/// Resolution of a (possibly downsampled) block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downsample {
    /// 0 (raw), 300000 (5m) or 3600000 (1h) milliseconds.
    pub resolution: i64,
}

/// A file of the block, with its size, as Thanos lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockFile {
    /// Path relative to the block directory.
    pub rel_path: String,
    /// Size in bytes (absent for meta.json).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Optional content hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<serde_json::Value>,
}

/// Sizes that help readers plan byte-range requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexStats {
    /// Largest series entry in the index, in bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub series_max_size: u64,
    /// Largest chunk, in bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub chunk_max_size: u64,
}

/// The `thanos` section of meta.json.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThanosMeta {
    /// Section version; 0 is read as 1.
    #[serde(default)]
    pub version: u32,
    /// External labels: the stream the block belongs to.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Resolution.
    #[serde(default)]
    pub downsample: Downsample,
    /// Who wrote the block: sidecar, compactor, receive, ...
    #[serde(default)]
    pub source: String,
    /// Deprecated list of segment file names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segment_files: Vec<String>,
    /// Files of the block with sizes, sorted by path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<BlockFile>,
    /// Index sizes for range planning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_stats: Option<IndexStats>,
    /// Other fields (rewrites, extensions, upload_time, ...), kept as they were.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The contents of meta.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// Block ULID.
    pub ulid: String,
    /// First timestamp (inclusive, ms).
    #[serde(rename = "minTime")]
    pub min_time: i64,
    /// End of the block's range (exclusive, ms).
    #[serde(rename = "maxTime")]
    pub max_time: i64,
    /// Statistics.
    #[serde(default)]
    pub stats: BlockStats,
    /// Compaction history.
    #[serde(default)]
    pub compaction: Compaction,
    /// Format version, always 1.
    pub version: u32,
    /// Thanos' section, when the block went through Thanos or Strata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thanos: Option<ThanosMeta>,
    /// Unknown top-level fields, kept as they were.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl BlockMeta {
    /// A level-1 meta for a new block that is its own source.
    pub fn new_level1(ulid: ulid::Ulid, min_time: i64, max_time: i64) -> Self {
        BlockMeta {
            ulid: ulid.to_string(),
            min_time,
            max_time,
            stats: BlockStats::default(),
            compaction: Compaction {
                level: 1,
                sources: vec![ulid.to_string()],
                ..Compaction::default()
            },
            version: 1,
            thanos: None,
            extra: BTreeMap::new(),
        }
    }

    /// Parses and validates meta.json bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, MetaError> {
        let meta: BlockMeta = serde_json::from_slice(bytes)?;
        if meta.version != 1 {
            return Err(MetaError::Version(meta.version));
        }
        if let Some(thanos) = &meta.thanos
            && thanos.version > 1
        {
            return Err(MetaError::ThanosVersion(thanos.version));
        }
        if meta.ulid.parse::<ulid::Ulid>().is_err() {
            return Err(MetaError::Ulid(meta.ulid.clone()));
        }
        if meta.max_time < meta.min_time {
            return Err(MetaError::TimeRange {
                min_time: meta.min_time,
                max_time: meta.max_time,
            });
        }
        Ok(meta)
    }

    /// Serialises as Prometheus does: tab-indented JSON.
    pub fn to_json(&self) -> Result<Vec<u8>, MetaError> {
        let mut out = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
        self.serialize(&mut serializer)?;
        Ok(out)
    }

    /// The block's ULID.
    pub fn ulid(&self) -> Result<ulid::Ulid, MetaError> {
        self.ulid
            .parse()
            .map_err(|_| MetaError::Ulid(self.ulid.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMTOOL_META: &str = r#"{
	"ulid": "01M84YYR1EQ8DC961DB3BHGVFB",
	"minTime": 1700000000000,
	"maxTime": 1700006360001,
	"stats": {
		"numSamples": 321,
		"numSeries": 3,
		"numChunks": 3
	},
	"compaction": {
		"level": 1,
		"sources": [
			"01M84YYR1EQ8DC961DB3BHGVFB"
		]
	},
	"version": 1
}"#;

    #[test]
    fn round_trips_promtool_meta_byte_for_byte() {
        let meta = BlockMeta::parse(PROMTOOL_META.as_bytes()).unwrap();
        assert_eq!(meta.stats.num_samples, 321);
        assert_eq!(
            String::from_utf8(meta.to_json().unwrap()).unwrap(),
            PROMTOOL_META
        );
    }

    #[test]
    fn thanos_section_and_unknown_fields_survive() {
        let json = r#"{"ulid":"01M84YYR1EQ8DC961DB3BHGVFB","minTime":0,"maxTime":10,"stats":{"numSamples":1,"numFloatSamples":1},
            "compaction":{"level":2,"sources":["01M84YYR1EQ8DC961DB3BHGVFB"]},"version":1,
            "thanos":{"version":1,"labels":{"cluster":"eu1","replica":"0"},"downsample":{"resolution":300000},
            "source":"sidecar","files":[{"rel_path":"chunks/000001","size_bytes":10},{"rel_path":"meta.json"}],
            "upload_time":"2026-01-01T00:00:00Z"}}"#;
        let meta = BlockMeta::parse(json.as_bytes()).unwrap();
        let thanos = meta.thanos.as_ref().unwrap();
        assert_eq!(
            thanos.labels.get("cluster").map(String::as_str),
            Some("eu1")
        );
        assert_eq!(thanos.downsample.resolution, 300_000);
        assert_eq!(thanos.files[1].size_bytes, None);
        let again = BlockMeta::parse(&meta.to_json().unwrap()).unwrap();
        assert_eq!(again, meta);
        assert!(again.thanos.unwrap().extra.contains_key("upload_time"));
        assert!(again.stats.extra.contains_key("numFloatSamples"));
    }

    #[test]
    fn rejects_bad_versions_and_garbage() {
        assert!(matches!(
            BlockMeta::parse(
                br#"{"ulid":"01M84YYR1EQ8DC961DB3BHGVFB","minTime":0,"maxTime":1,"version":2}"#
            ),
            Err(MetaError::Version(2))
        ));
        assert!(matches!(
            BlockMeta::parse(br#"{"ulid":"x","minTime":0,"maxTime":1,"version":1}"#),
            Err(MetaError::Ulid(_))
        ));
        assert!(matches!(BlockMeta::parse(b"{"), Err(MetaError::Json(_))));
        assert!(matches!(
            BlockMeta::parse(
                br#"{"ulid":"01M84YYR1EQ8DC961DB3BHGVFB","minTime":5,"maxTime":1,"version":1}"#
            ),
            Err(MetaError::TimeRange { .. })
        ));
    }
}
