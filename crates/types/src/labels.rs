use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// The label that holds a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// One label pair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    /// Label name.
    pub name: String,
    /// Label value; never empty in a stored series (an empty value means "no such label").
    pub value: String,
}

impl Label {
    /// A label pair.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A label set, always sorted by name with unique names. Immutable and shared: cloning is a
/// reference-count increment (the engine hands the same series' labels to every step), and
/// changes go through [`LabelsBuilder`].
///
/// Ordering follows Prometheus' `labels.Compare`: pair by pair, name first, then value; a
/// set that is a prefix of another sorts first.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Labels {
    labels: Arc<[Label]>,
}

impl Default for Labels {
    fn default() -> Self {
        Labels::empty()
    }
}

impl Labels {
    /// The empty label set.
    pub fn empty() -> Self {
        Labels {
            labels: Arc::from(Vec::new()),
        }
    }

    /// Builds a label set from pairs in any order. Later duplicates of a name win; pairs with
    /// an empty value are dropped, as Prometheus does.
    pub fn from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: Into<String>,
        V: Into<String>,
    {
        let mut builder = LabelsBuilder::new();
        for (name, value) in pairs {
            builder.set(name, value);
        }
        builder.into_labels()
    }

    /// The label pairs, moved out when this is the only reference to them (no string
    /// copied), else copied.
    pub fn into_vec(mut self) -> Vec<Label> {
        match Arc::get_mut(&mut self.labels) {
            Some(only) => only.iter_mut().map(std::mem::take).collect(),
            None => self.labels.to_vec(),
        }
    }

    /// Wraps labels that the caller guarantees are sorted by name, unique and non-empty.
    /// Checked in debug builds.
    pub fn from_sorted(labels: Vec<Label>) -> Self {
        debug_assert!(
            labels
                .windows(2)
                .all(|w| matches!(w, [a, b] if a.name < b.name)),
            "labels must be sorted by name and unique"
        );
        Labels {
            labels: Arc::from(labels),
        }
    }

    /// Whether names are sorted and unique: what every stored series must satisfy.
    pub fn is_sorted_unique(labels: &[Label]) -> bool {
        labels
            .windows(2)
            .all(|w| matches!(w, [a, b] if a.name < b.name))
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .and_then(|i| self.labels.get(i))
            .map(|l| l.value.as_str())
    }

    /// The metric name, if set.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// Number of label pairs.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set has no labels.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.labels.iter()
    }

    /// The pairs as a slice.
    pub fn as_slice(&self) -> &[Label] {
        &self.labels
    }

    /// The identity of the shared allocation: two sets with the same key are the same
    /// allocation (so equal); equal sets can have different keys. For memoizing work per
    /// series while the set is kept alive.
    pub fn identity(&self) -> usize {
        Arc::as_ptr(&self.labels).cast::<Label>() as usize
    }

    /// Whether another handle holds this allocation too (an interning table drops the
    /// sets only it holds).
    pub fn is_shared(&self) -> bool {
        Arc::strong_count(&self.labels) > 1
    }

    /// A builder seeded with these labels.
    pub fn to_builder(&self) -> LabelsBuilder {
        LabelsBuilder {
            labels: self.labels.to_vec(),
        }
    }
}

impl Ord for Labels {
    fn cmp(&self, other: &Self) -> Ordering {
        if Arc::ptr_eq(&self.labels, &other.labels) {
            return Ordering::Equal;
        }
        for (a, b) in self.labels.iter().zip(other.labels.iter()) {
            let by_name = a.name.cmp(&b.name);
            if by_name != Ordering::Equal {
                return by_name;
            }
            let by_value = a.value.cmp(&b.value);
            if by_value != Ordering::Equal {
                return by_value;
            }
        }
        self.labels.len().cmp(&other.labels.len())
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Labels {
    /// Prometheus' text form: `{a="1", b="2"}`, values escaped as Go's `%q` does for ASCII.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, label) in self.labels.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}=\"", label.name)?;
            for c in label.value.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    other => write!(f, "{other}")?,
                }
            }
            f.write_str("\"")?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.labels.iter()
    }
}

/// Builds a [`Labels`] by setting and deleting names.
#[derive(Debug, Clone, Default)]
pub struct LabelsBuilder {
    labels: Vec<Label>,
}

impl LabelsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        LabelsBuilder { labels: Vec::new() }
    }

    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let name = name.into();
        let value = value.into();
        match self.labels.binary_search_by(|l| l.name.cmp(&name)) {
            Ok(i) => {
                if value.is_empty() {
                    self.labels.remove(i);
                } else if let Some(slot) = self.labels.get_mut(i) {
                    slot.value = value;
                }
            }
            Err(i) => {
                if !value.is_empty() {
                    self.labels.insert(i, Label { name, value });
                }
            }
        }
        self
    }

    /// Deletes `name` if present.
    pub fn delete(&mut self, name: &str) -> &mut Self {
        if let Ok(i) = self.labels.binary_search_by(|l| l.name.as_str().cmp(name)) {
            self.labels.remove(i);
        }
        self
    }

    /// The finished, sorted label set.
    pub fn build(&self) -> Labels {
        Labels {
            labels: Arc::from(self.labels.as_slice()),
        }
    }

    /// The label set, the builder consumed (its strings moved, not copied).
    pub fn into_labels(self) -> Labels {
        Labels {
            labels: Arc::from(self.labels),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_deduplicated() {
        let labels = Labels::from_pairs([("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        assert_eq!(labels.to_string(), r#"{a="1", b="3"}"#);
        assert_eq!(labels.get("b"), Some("3"));
        assert_eq!(labels.get("c"), None);
    }

    #[test]
    fn compare_like_prometheus() {
        let a = Labels::from_pairs([("a", "1")]);
        let ab = Labels::from_pairs([("a", "1"), ("b", "1")]);
        let a2 = Labels::from_pairs([("a", "2")]);
        let b = Labels::from_pairs([("b", "0")]);
        assert!(a < ab);
        assert!(ab < a2);
        assert!(a2 < b);
    }
}
