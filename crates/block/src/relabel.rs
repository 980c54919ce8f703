//! Prometheus relabelling, for `--selector.relabel-config`: which blocks this gateway
//! serves, decided over a block's external labels plus `__block_id` (its ULID).
//!
//! Supported actions: `replace` (default), `keep`, `drop`, `hashmod`, `labelmap`,
//! `labeldrop`, `labelkeep`. `hashmod` is Prometheus': the MD5 of the joined source values,
//! its last 8 bytes as a big-endian integer, modulo `modulus`.

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;
use strata_types::{Labels, LabelsBuilder};

/// A relabel config that does not parse or compile.
#[derive(Debug, thiserror::Error)]
pub enum RelabelError {
    /// YAML error.
    #[error("relabel config: {0}")]
    Yaml(String),
    /// A rule is invalid.
    #[error("relabel rule {index}: {reason}")]
    Rule {
        /// 0-based rule position.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    source_labels: Vec<String>,
    #[serde(default)]
    separator: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    modulus: u64,
    #[serde(default)]
    target_label: String,
    #[serde(default)]
    replacement: Option<String>,
    #[serde(default)]
    action: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Replace,
    Keep,
    Drop,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    source_labels: Vec<String>,
    separator: String,
    regex: Regex,
    modulus: u64,
    target_label: String,
    replacement: String,
    action: Action,
}

/// A list of rules, applied in order.
#[derive(Debug, Clone, Default)]
pub struct Relabel {
    rules: Vec<Rule>,
}

impl Relabel {
    /// Parses a YAML list of rules (Prometheus `relabel_configs` syntax).
    pub fn from_yaml(yaml: &str) -> Result<Relabel, RelabelError> {
        if yaml.trim().is_empty() {
            return Ok(Relabel::default());
        }
        let raw: Vec<RawRule> =
            serde_norway::from_str(yaml).map_err(|e| RelabelError::Yaml(e.to_string()))?;
        let mut rules = Vec::with_capacity(raw.len());
        for (index, r) in raw.into_iter().enumerate() {
            let bad = |reason: String| RelabelError::Rule { index, reason };
            let action = match r
                .action
                .as_deref()
                .unwrap_or("replace")
                .to_ascii_lowercase()
                .as_str()
            {
                "replace" => Action::Replace,
                "keep" => Action::Keep,
                "drop" => Action::Drop,
                "hashmod" => Action::HashMod,
                "labelmap" => Action::LabelMap,
                "labeldrop" => Action::LabelDrop,
                "labelkeep" => Action::LabelKeep,
                other => return Err(bad(format!("unsupported action {other:?}"))),
            };
            let pattern = r.regex.unwrap_or_else(|| "(.*)".to_owned());
            let regex = Regex::new(&format!("^(?s:{pattern})$"))
                .map_err(|e| bad(format!("regex {pattern:?}: {e}")))?;
            if action == Action::HashMod && r.modulus == 0 {
                return Err(bad("hashmod needs a modulus > 0".into()));
            }
            if matches!(action, Action::Replace | Action::HashMod) && r.target_label.is_empty() {
                return Err(bad("target_label is required".into()));
            }
            rules.push(Rule {
                source_labels: r.source_labels,
                separator: r.separator.unwrap_or_else(|| ";".to_owned()),
                regex,
                modulus: r.modulus,
                target_label: r.target_label,
                replacement: r.replacement.unwrap_or_else(|| "$1".to_owned()),
                action,
            });
        }
        Ok(Relabel { rules })
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Applies the rules; `None` if a rule dropped the label set (or it became empty).
    pub fn apply(&self, labels: &Labels) -> Option<Labels> {
        let mut current = labels.clone();
        for rule in &self.rules {
            current = rule.apply(&current)?;
        }
        if current.is_empty() {
            return None;
        }
        Some(current)
    }
}

impl Rule {
    fn apply(&self, labels: &Labels) -> Option<Labels> {
        let value = self
            .source_labels
            .iter()
            .map(|name| labels.get(name).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(&self.separator);
        match self.action {
            Action::Keep => self.regex.is_match(&value).then(|| labels.clone()),
            Action::Drop => (!self.regex.is_match(&value)).then(|| labels.clone()),
            Action::HashMod => {
                let digest = Md5::digest(value.as_bytes());
                let mut tail = [0u8; 8];
                tail.copy_from_slice(digest.get(8..16).unwrap_or(&[0; 8]));
                let shard = u64::from_be_bytes(tail) % self.modulus;
                let mut b = labels.to_builder();
                b.set(self.target_label.clone(), shard.to_string());
                Some(b.build())
            }
            Action::Replace => {
                let Some(captures) = self.regex.captures(&value) else {
                    return Some(labels.clone());
                };
                let mut target = String::new();
                captures.expand(&self.target_label, &mut target);
                let mut replacement = String::new();
                captures.expand(&self.replacement, &mut replacement);
                let mut b = labels.to_builder();
                if target.is_empty() {
                    return Some(labels.clone());
                }
                if replacement.is_empty() {
                    b.delete(&target);
                } else {
                    b.set(target, replacement);
                }
                Some(b.build())
            }
            Action::LabelMap => {
                let mut b = labels.to_builder();
                for l in labels.iter() {
                    if let Some(captures) = self.regex.captures(&l.name) {
                        let mut name = String::new();
                        captures.expand(&self.replacement, &mut name);
                        b.set(name, l.value.clone());
                    }
                }
                Some(b.build())
            }
            Action::LabelDrop | Action::LabelKeep => {
                let keep_matching = self.action == Action::LabelKeep;
                let mut b = LabelsBuilder::new();
                for l in labels.iter() {
                    if self.regex.is_match(&l.name) == keep_matching {
                        b.set(l.name.clone(), l.value.clone());
                    }
                }
                Some(b.build())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashmod_shards_split_the_blocks() {
        let yaml = |shard: u64| {
            format!(
                "- action: hashmod\n  source_labels: [__block_id]\n  target_label: shard\n  modulus: 3\n- action: keep\n  source_labels: [shard]\n  regex: {shard}\n"
            )
        };
        let shards: Vec<Relabel> = (0..3)
            .map(|s| Relabel::from_yaml(&yaml(s)).unwrap())
            .collect();
        let mut counts = [0usize; 3];
        for i in 0..300 {
            let labels = Labels::from_pairs([
                ("__block_id", format!("01H{i:023}")),
                ("cluster", "eu1".to_owned()),
            ]);
            let kept: Vec<usize> = (0..3)
                .filter(|&s| shards[s].apply(&labels).is_some())
                .collect();
            assert_eq!(kept.len(), 1, "each block in exactly one shard");
            counts[kept[0]] += 1;
        }
        assert!(counts.iter().all(|&c| c > 60), "{counts:?}");
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // md5("foo") = acbd18db4cc2f85cedef654fccc4a4d8; last 8 bytes 0xedef654fccc4a4d8.
        let r = Relabel::from_yaml(
            "- action: hashmod\n  source_labels: [a]\n  target_label: h\n  modulus: 1000\n",
        )
        .unwrap();
        let out = r.apply(&Labels::from_pairs([("a", "foo")])).unwrap();
        assert_eq!(
            out.get("h"),
            Some((0xedef_654f_ccc4_a4d8u64 % 1000).to_string().as_str())
        );
    }

    #[test]
    fn keep_drop_replace() {
        let r = Relabel::from_yaml(
            "- source_labels: [cluster]\n  regex: 'eu(.*)'\n  target_label: region\n  replacement: 'europe-$1'\n- action: drop\n  source_labels: [env]\n  regex: dev\n",
        )
        .unwrap();
        let out = r.apply(&Labels::from_pairs([("cluster", "eu1")])).unwrap();
        assert_eq!(out.get("region"), Some("europe-1"));
        assert!(
            r.apply(&Labels::from_pairs([("cluster", "eu1"), ("env", "dev")]))
                .is_none()
        );
        assert!(Relabel::from_yaml("- action: bogus\n").is_err());
        assert!(Relabel::from_yaml("- action: hashmod\n  target_label: x\n").is_err());
    }
}
