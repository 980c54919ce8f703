//! Cutting a series' samples into chunks the way Prometheus' head does, so blocks written
//! here have the same chunk boundaries as blocks Prometheus writes from the same samples.

use strata_chunkenc::{ChunkError, Encoding, SAMPLES_PER_CHUNK, XorEncoder};
use strata_types::Sample;

/// One encoded chunk with the times of its first and last sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedChunk {
    /// First sample time.
    pub min_time: i64,
    /// Last sample time.
    pub max_time: i64,
    /// Encoding of `data`.
    pub encoding: Encoding,
    /// Chunk payload.
    pub data: Vec<u8>,
}

/// End of the aligned range of width `range` that holds `t` (Go's truncating division).
fn range_end(t: i64, range: i64) -> i64 {
    (t / range) * range + range
}

/// Prometheus' `computeChunkEndTime`: once a chunk is a quarter full, predict an end time
/// that spreads the remaining samples of the range evenly over chunks.
fn compute_chunk_end_time(start: i64, current: i64, max: i64) -> i64 {
    let per_quarter = (current - start + 1) * 4;
    let n = if per_quarter > 0 {
        (max - start) / per_quarter
    } else {
        0
    };
    if n <= 1 {
        return max;
    }
    start + (max - start) / n
}

/// Splits samples (strictly increasing timestamps) into XOR chunks as Prometheus 2.42's head
/// appender does for a chunk range `chunk_range`: a chunk ends at the range boundary, at the
/// time predicted after 30 samples, or after 240 samples.
///
/// A live Prometheus uses its minimum block duration as the chunk range (2h by default);
/// `promtool tsdb create-blocks-from` uses twice the block duration (4h for 2h blocks).
pub fn cut_xor_chunks(
    samples: &[Sample],
    chunk_range: i64,
) -> Result<Vec<EncodedChunk>, ChunkError> {
    let chunk_range = chunk_range.max(1);
    let mut chunks = Vec::new();
    let mut current: Option<(XorEncoder, i64)> = None;
    let mut next_at = i64::MIN;
    for sample in samples {
        let cut = match &current {
            None => true,
            Some((encoder, min_time)) => {
                let n = usize::from(encoder.num_samples());
                if n == SAMPLES_PER_CHUNK / 4 {
                    next_at = compute_chunk_end_time(*min_time, encoder.last_timestamp(), next_at);
                }
                sample.t >= next_at || n >= SAMPLES_PER_CHUNK * 2
            }
        };
        if cut {
            if let Some((encoder, min_time)) = current.take() {
                chunks.push(EncodedChunk {
                    min_time,
                    max_time: encoder.last_timestamp(),
                    encoding: Encoding::Xor,
                    data: encoder.bytes(),
                });
            }
            current = Some((XorEncoder::new(), sample.t));
            next_at = range_end(sample.t, chunk_range);
        }
        if let Some((encoder, _)) = current.as_mut() {
            encoder.append(sample.t, sample.v)?;
        }
    }
    if let Some((encoder, min_time)) = current.take() {
        chunks.push(EncodedChunk {
            min_time,
            max_time: encoder.last_timestamp(),
            encoding: Encoding::Xor,
            data: encoder.bytes(),
        });
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_scrape_fills_120_sample_chunks_within_range() {
        // 15s scrape over 2h: 480 samples; Prometheus makes 4 chunks of 120.
        let samples: Vec<Sample> = (0..480)
            .map(|i| Sample::new(i * 15_000, i as f64))
            .collect();
        let chunks = cut_xor_chunks(&samples, 7_200_000).unwrap();
        let sizes: Vec<u16> = chunks
            .iter()
            .map(|c| strata_chunkenc::xor_num_samples(&c.data).unwrap())
            .collect();
        assert_eq!(sizes, [120, 120, 120, 120]);
    }

    #[test]
    fn chunks_never_cross_the_range_boundary() {
        let samples: Vec<Sample> = (0..100)
            .map(|i| Sample::new(7_000_000 + i * 10_000, 1.0))
            .collect();
        let chunks = cut_xor_chunks(&samples, 7_200_000).unwrap();
        assert!(
            chunks
                .iter()
                .all(|c| c.max_time < 7_200_000 || c.min_time >= 7_200_000)
        );
        assert_eq!(chunks.len(), 2);
    }

    #[test]
    fn out_of_order_is_an_error() {
        let samples = [Sample::new(10, 1.0), Sample::new(5, 1.0)];
        assert!(cut_xor_chunks(&samples, 100).is_err());
    }
}
