//! A `Queryable` over a directory of TSDB blocks, merging each series across blocks.

use std::collections::BTreeMap;
use std::path::Path;

use strata_promql::{Error, Queryable, SelectHints, Series};
use strata_tsdb::BlockReader;
use strata_types::{Labels, Matcher, Sample};

/// All blocks of a directory, opened once.
#[derive(Debug)]
pub struct BlocksQueryable {
    blocks: Vec<BlockReader>,
}

impl BlocksQueryable {
    pub fn open(dir: &Path) -> BlocksQueryable {
        let blocks = crate::block_dirs(dir)
            .iter()
            .map(|d| BlockReader::open(d).unwrap())
            .collect();
        BlocksQueryable { blocks }
    }
}

impl Queryable for BlocksQueryable {
    fn select(&self, matchers: &[Matcher], hints: &SelectHints) -> Result<Vec<Series>, Error> {
        let mut merged: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        for block in &self.blocks {
            let meta = block.meta();
            if meta.max_time <= hints.start || meta.min_time > hints.end {
                continue;
            }
            let refs = block
                .select(matchers)
                .map_err(|e| Error::Storage(e.to_string()))?;
            for series_ref in refs {
                let entry = block
                    .series(series_ref)
                    .map_err(|e| Error::Storage(e.to_string()))?;
                let samples = block
                    .samples(series_ref, &entry, hints.start, hints.end)
                    .map_err(|e| Error::Storage(e.to_string()))?;
                merged.entry(entry.labels).or_default().extend(samples);
            }
        }
        Ok(merged
            .into_iter()
            .map(|(labels, mut samples)| {
                samples.sort_by_key(|s| s.t);
                samples.dedup_by_key(|s| s.t);
                Series::floats(labels, samples)
            })
            .collect())
    }
}
