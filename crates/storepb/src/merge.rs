//! The one streaming k-way merge of sorted series streams, used by the store gateway (over
//! its blocks) and the querier (over its endpoints), as Thanos' `proxy_merge.go` serves
//! both: each input yields batches of series sorted by labels; the merge yields one series
//! at a time in label order, a series present in several inputs once with their chunks
//! joined (sorted by time, identical chunks once). Only one batch per input is held; a
//! binary heap finds the smallest head, holding each input's head label set itself (moved
//! out of its batch, never copied). An input that goes backwards is an error naming it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use futures::{Stream, StreamExt};
use strata_types::Labels;

use crate::AggrChunk;

/// One series: labels and chunks.
pub type SeriesItem = (Labels, Vec<AggrChunk>);

/// Why a merge stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// An input failed; its error.
    #[error("{0}")]
    Input(String),
    /// An input sent a series before the one it sent last.
    #[error("{input}: series out of order: {labels} after {previous}")]
    OutOfOrder {
        /// The input's name.
        input: String,
        /// The series.
        labels: String,
        /// The one before.
        previous: String,
    },
}

struct Input<S> {
    name: String,
    stream: S,
    buffer: VecDeque<SeriesItem>,
    /// The chunks of the series whose labels are on the heap for this input.
    head: Vec<AggrChunk>,
    done: bool,
}

/// A k-way merge of sorted streams of series batches.
pub struct SeriesMerge<S> {
    inputs: Vec<Input<S>>,
    heap: BinaryHeap<Reverse<(Labels, usize)>>,
    started: bool,
}

impl<S> std::fmt::Debug for SeriesMerge<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesMerge")
            .field("inputs", &self.inputs.len())
            .finish()
    }
}

impl<S> SeriesMerge<S>
where
    S: Stream<Item = Result<Vec<SeriesItem>, String>> + Unpin,
{
    /// A merge of `inputs`, each named (for errors) and sorted by labels.
    pub fn new(inputs: Vec<(String, S)>) -> Self {
        SeriesMerge {
            inputs: inputs
                .into_iter()
                .map(|(name, stream)| Input {
                    name,
                    stream,
                    buffer: VecDeque::new(),
                    head: Vec::new(),
                    done: false,
                })
                .collect(),
            heap: BinaryHeap::new(),
            started: false,
        }
    }

    /// Fills input `i`'s buffer if it is empty (and the input not at its end).
    async fn fill(&mut self, i: usize) -> Result<(), MergeError> {
        let Some(input) = self.inputs.get_mut(i) else {
            return Ok(());
        };
        while input.buffer.is_empty() && !input.done {
            match input.stream.next().await {
                Some(Ok(batch)) => input.buffer.extend(batch),
                Some(Err(e)) => return Err(MergeError::Input(e)),
                None => input.done = true,
            }
        }
        Ok(())
    }

    /// Fills input `i`'s buffer if it is empty and moves its first series to the heap (its
    /// labels) and the input's head (its chunks); that series must not sort before
    /// `previous`, the series the input gave last.
    async fn refill(&mut self, i: usize, previous: Option<&Labels>) -> Result<(), MergeError> {
        self.fill(i).await?;
        let Some(input) = self.inputs.get_mut(i) else {
            return Ok(());
        };
        if let Some((labels, chunks)) = input.buffer.pop_front() {
            if let Some(last) = previous
                && labels < *last
            {
                return Err(MergeError::OutOfOrder {
                    input: input.name.clone(),
                    labels: labels.to_string(),
                    previous: last.to_string(),
                });
            }
            input.head = chunks;
            self.heap.push(Reverse((labels, i)));
        }
        Ok(())
    }

    /// The next series in label order, `None` at the end.
    pub async fn next(&mut self) -> Option<Result<SeriesItem, MergeError>> {
        if !self.started {
            self.started = true;
            for i in 0..self.inputs.len() {
                if let Err(e) = self.refill(i, None).await {
                    return Some(Err(e));
                }
            }
        }
        let Reverse((labels, first)) = self.heap.pop()?;
        let mut from = vec![first];
        while self.heap.peek().is_some_and(|Reverse((l, _))| *l == labels) {
            if let Some(Reverse((_, i))) = self.heap.pop() {
                from.push(i);
            }
        }
        let mut chunks: Vec<AggrChunk> = Vec::new();
        let mut repeated = false;
        // Sized once for every input's head (a series in 24 blocks would otherwise grow
        // its list five times).
        let heads: usize = from
            .iter()
            .filter_map(|&i| self.inputs.get(i))
            .map(|input| input.head.len())
            .sum();
        for &i in &from {
            if let Some(input) = self.inputs.get_mut(i) {
                if chunks.is_empty() {
                    chunks = std::mem::take(&mut input.head);
                    chunks.reserve(heads.saturating_sub(chunks.len()));
                } else {
                    chunks.append(&mut input.head);
                }
            }
            // An input may repeat a series, even across its batches (a long series in
            // several frames): take every copy.
            while let Some(input) = self.inputs.get_mut(i) {
                while input.buffer.front().is_some_and(|(l, _)| *l == labels) {
                    if let Some((_, c)) = input.buffer.pop_front() {
                        chunks.extend(c);
                        repeated = true;
                    }
                }
                if !input.buffer.is_empty() || input.done {
                    break;
                }
                if let Err(e) = self.fill(i).await {
                    return Some(Err(e));
                }
                let continues = self
                    .inputs
                    .get(i)
                    .and_then(|input| input.buffer.front())
                    .is_some_and(|(l, _)| *l == labels);
                if !continues {
                    break;
                }
            }
        }
        for &i in &from {
            if let Err(e) = self.refill(i, Some(&labels)).await {
                return Some(Err(e));
            }
        }
        if from.len() > 1 || repeated {
            chunks.sort_by_key(|c| (c.min_time, c.max_time));
            chunks.dedup();
        }
        Some(Ok((labels, chunks)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(t: i64) -> AggrChunk {
        AggrChunk {
            min_time: t,
            max_time: t + 1,
            ..Default::default()
        }
    }

    fn series(name: &str, t: i64) -> SeriesItem {
        (Labels::from_pairs([("n", name)]), vec![chunk(t)])
    }

    type Batches = futures::stream::Iter<std::vec::IntoIter<Result<Vec<SeriesItem>, String>>>;

    fn input(batches: Vec<Vec<SeriesItem>>) -> Batches {
        futures::stream::iter(batches.into_iter().map(Ok).collect::<Vec<_>>())
    }

    async fn drain(mut m: SeriesMerge<Batches>) -> Result<Vec<SeriesItem>, MergeError> {
        let mut out = Vec::new();
        while let Some(item) = m.next().await {
            out.push(item?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn merges_in_order_and_joins_equal_series() {
        let a = input(vec![
            vec![series("a", 1), series("c", 1)],
            vec![series("e", 1)],
        ]);
        let b = input(vec![
            vec![series("b", 2)],
            vec![],
            vec![series("c", 2), series("c", 1)],
        ]);
        let c = input(vec![]);
        let out = drain(SeriesMerge::new(vec![
            ("a".into(), a),
            ("b".into(), b),
            ("c".into(), c),
        ]))
        .await
        .unwrap();
        let names: Vec<String> = out.iter().map(|(l, _)| l.to_string()).collect();
        assert_eq!(names, ["{n=\"a\"}", "{n=\"b\"}", "{n=\"c\"}", "{n=\"e\"}"]);
        // c from both inputs: chunks by time, the identical one once.
        assert_eq!(out[2].1, vec![chunk(1), chunk(2)]);
    }

    #[tokio::test]
    async fn a_series_repeated_across_batches_comes_out_once() {
        let a = input(vec![
            vec![series("a", 1)],
            vec![series("a", 2), series("b", 1)],
        ]);
        let out = drain(SeriesMerge::new(vec![("a".into(), a)]))
            .await
            .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].1, vec![chunk(1), chunk(2)]);
    }

    #[tokio::test]
    async fn an_input_out_of_order_is_an_error() {
        let a = input(vec![vec![series("b", 1), series("a", 1)]]);
        let err = drain(SeriesMerge::new(vec![("endpoint x".into(), a)]))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("endpoint x: series out of order"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_input_error_ends_the_merge() {
        let a: Batches = futures::stream::iter(vec![Ok(vec![series("a", 1)]), Err("boom".into())]);
        let err = drain(SeriesMerge::new(vec![("a".into(), a)]))
            .await
            .unwrap_err();
        assert_eq!(err, MergeError::Input("boom".into()));
    }

    #[tokio::test]
    async fn many_inputs_equal_a_sort() {
        let mut inputs = Vec::new();
        let mut all = Vec::new();
        for i in 0..20 {
            let mut names: Vec<String> = (0..50)
                .map(|j| format!("{:03}", (j * 7 + i * 13) % 200))
                .collect();
            names.sort();
            names.dedup();
            all.extend(names.iter().cloned());
            let batches: Vec<Vec<SeriesItem>> = names
                .chunks(7)
                .map(|c| c.iter().map(|n| series(n, i64::from(i))).collect())
                .collect();
            inputs.push((format!("in{i}"), input(batches)));
        }
        all.sort();
        all.dedup();
        let out = drain(SeriesMerge::new(inputs)).await.unwrap();
        let names: Vec<String> = out
            .iter()
            .map(|(l, _)| l.get("n").unwrap_or("").to_owned())
            .collect();
        assert_eq!(names, all);
    }
}
