//! Conversions between Store API messages and Strata types.

use prost::Message;
use strata_types::{Labels, MatchType, Matcher};

use crate::{ANY_TYPE_PREFIX, Label, LabelMatcher, label_matcher};

/// A request carried a matcher Strata cannot use.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The matcher type number is not one of EQ, NEQ, RE, NRE.
    #[error("unknown matcher type {0}")]
    UnknownMatcherType(i32),
    /// The regular expression does not compile.
    #[error(transparent)]
    Matcher(#[from] strata_types::MatcherError),
    /// A hints `Any` has another type or does not decode.
    #[error("hints: {0}")]
    Hints(String),
}

/// [`labels_to_proto`], the label set consumed: its strings are moved when nothing else
/// holds it.
pub fn labels_into_proto(labels: Labels) -> Vec<Label> {
    labels
        .into_vec()
        .into_iter()
        .map(|l| Label {
            name: l.name,
            value: l.value,
        })
        .collect()
}

/// Store API labels from a Strata label set.
pub fn labels_to_proto(labels: &Labels) -> Vec<Label> {
    labels
        .iter()
        .map(|l| Label {
            name: l.name.clone(),
            value: l.value.clone(),
        })
        .collect()
}

/// A Strata label set from Store API labels (sorted and de-duplicated, empty values dropped).
pub fn labels_from_proto(labels: &[Label]) -> Labels {
    Labels::from_pairs(
        labels
            .iter()
            .filter(|l| !l.value.is_empty())
            .map(|l| (l.name.as_str(), l.value.as_str())),
    )
}

/// [`labels_from_proto`] for labels the caller owns: moved, strings and all, when they are
/// sorted by name, unique and without empty values (as every Store API answer's are).
pub fn labels_from_proto_owned(labels: Vec<Label>) -> Labels {
    let ready = labels
        .windows(2)
        .all(|pair| matches!(pair, [a, b] if a.name < b.name))
        && labels.iter().all(|l| !l.value.is_empty());
    if !ready {
        return labels_from_proto(&labels);
    }
    Labels::from_sorted(
        labels
            .into_iter()
            .map(|l| strata_types::Label {
                name: l.name,
                value: l.value,
            })
            .collect(),
    )
}

/// A Strata matcher from a Store API matcher.
pub fn matcher_from_proto(m: &LabelMatcher) -> Result<Matcher, ConvertError> {
    let kind = match label_matcher::Type::try_from(m.r#type) {
        Ok(label_matcher::Type::Eq) => MatchType::Equal,
        Ok(label_matcher::Type::Neq) => MatchType::NotEqual,
        Ok(label_matcher::Type::Re) => MatchType::Regex,
        Ok(label_matcher::Type::Nre) => MatchType::NotRegex,
        Err(_) => return Err(ConvertError::UnknownMatcherType(m.r#type)),
    };
    Ok(Matcher::new(kind, m.name.clone(), m.value.clone())?)
}

/// Strata matchers from Store API matchers.
pub fn matchers_from_proto(ms: &[LabelMatcher]) -> Result<Vec<Matcher>, ConvertError> {
    ms.iter().map(matcher_from_proto).collect()
}

/// A Store API matcher from a Strata matcher.
pub fn matcher_to_proto(m: &Matcher) -> LabelMatcher {
    let kind = match m.kind() {
        MatchType::Equal => label_matcher::Type::Eq,
        MatchType::NotEqual => label_matcher::Type::Neq,
        MatchType::Regex => label_matcher::Type::Re,
        MatchType::NotRegex => label_matcher::Type::Nre,
    };
    LabelMatcher {
        r#type: kind as i32,
        name: m.name().to_owned(),
        value: m.value().to_owned(),
    }
}

/// The chunk hash Thanos puts in `Chunk.hash`: xxhash64 (seed 0) of the data.
pub fn chunk_hash(data: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(data, 0)
}

/// Packs a hints message into `google.protobuf.Any` as Go's `types.MarshalAny` does.
pub fn to_any<M: Message + prost::Name>(message: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("{ANY_TYPE_PREFIX}{}", M::full_name()),
        value: message.encode_to_vec(),
    }
}

/// Unpacks hints from `google.protobuf.Any`, checking the type URL.
pub fn from_any<M: Message + prost::Name + Default>(
    any: &prost_types::Any,
) -> Result<M, ConvertError> {
    let want = M::full_name();
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    if name != want {
        return Err(ConvertError::Hints(format!("type {name:?}, want {want:?}")));
    }
    M::decode(any.value.as_slice()).map_err(|e| ConvertError::Hints(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs
            .iter()
            .map(|(n, v)| Label {
                name: (*n).to_owned(),
                value: (*v).to_owned(),
            })
            .collect()
    }

    /// Moving owned labels gives what copying them gives, sorted or not, with empty values
    /// and repeated names too.
    #[test]
    fn owned_labels_equal_copied_labels() {
        for pairs in [
            &[("__name__", "up"), ("a", "1"), ("b", "2")][..],
            &[("b", "2"), ("a", "1")][..],
            &[("a", "1"), ("b", ""), ("c", "3")][..],
            &[("a", "1"), ("a", "2")][..],
            &[][..],
        ] {
            let labels = proto(pairs);
            let strata = labels_from_proto(&labels);
            // Moved out when the only holder, copied when shared: the same pairs.
            assert_eq!(labels_into_proto(strata.clone()), labels_to_proto(&strata));
            let expected = labels_to_proto(&strata);
            assert_eq!(labels_into_proto(strata), expected);
            assert_eq!(
                labels_from_proto_owned(labels.clone()),
                labels_from_proto(&labels),
                "{pairs:?}"
            );
        }
    }
}
