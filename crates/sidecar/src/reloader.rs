//! The config reloader (`--reloader.*`): watches Prometheus' configuration file and rule
//! directories and asks Prometheus to reload (`POST /-/reload`, which needs Prometheus'
//! `--web.enable-lifecycle`) when they change, as Thanos' sidecar does.
//!
//! With `--reloader.config-envsubst-file` the configuration is written there first, with
//! every `$(NAME)` replaced by the environment variable `NAME` (a missing one is an error,
//! and nothing is written); Prometheus then reads that file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to watch.
#[derive(Debug, Clone, Default)]
pub struct ReloaderConfig {
    /// `--reloader.config-file`.
    pub config_file: Option<PathBuf>,
    /// `--reloader.config-envsubst-file`.
    pub envsubst_file: Option<PathBuf>,
    /// `--reloader.rule-dir`.
    pub rule_dirs: Vec<PathBuf>,
    /// `--reloader.watch-interval`.
    pub watch_interval: Duration,
}

impl ReloaderConfig {
    /// Whether there is anything to watch.
    pub fn enabled(&self) -> bool {
        self.config_file.is_some() || !self.rule_dirs.is_empty()
    }
}

/// Why applying the watched files failed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// A watched file or the output could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration names an environment variable that is not set.
    #[error("{path}: environment variable {name} is not set")]
    MissingVariable {
        /// The configuration file.
        path: PathBuf,
        /// The variable.
        name: String,
    },
}

/// What the watched files hold now: file path → contents.
pub type Snapshot = BTreeMap<PathBuf, Vec<u8>>;

/// Reads the configuration file and every file of the rule directories (not recursively;
/// a missing rule directory counts as empty, as Prometheus globs).
pub fn snapshot(config: &ReloaderConfig) -> Result<Snapshot, ReloadError> {
    let mut out = Snapshot::new();
    if let Some(file) = &config.config_file {
        out.insert(file.clone(), read(file)?);
    }
    for dir in &config.rule_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                out.insert(path.clone(), read(&path)?);
            }
        }
    }
    Ok(out)
}

/// Writes the configuration, variables substituted, to the envsubst file (when set), by
/// way of a temporary file renamed over it.
pub fn apply(config: &ReloaderConfig, snapshot: &Snapshot) -> Result<(), ReloadError> {
    let (Some(input), Some(output)) = (&config.config_file, &config.envsubst_file) else {
        return Ok(());
    };
    let text = snapshot.get(input).cloned().unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let expanded = expand_env(&text, |name| std::env::var(name).ok()).map_err(|name| {
        ReloadError::MissingVariable {
            path: input.clone(),
            name,
        }
    })?;
    let tmp = output.with_extension("tmp");
    std::fs::write(&tmp, expanded).map_err(|source| ReloadError::Io {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, output).map_err(|source| ReloadError::Io {
        path: output.clone(),
        source,
    })
}

pub use strata_types::expand_env;

fn read(path: &Path) -> Result<Vec<u8>, ReloadError> {
    std::fs::read(path).map_err(|source| ReloadError::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_change_with_the_config_and_rules() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules");
        std::fs::create_dir(&rules).unwrap();
        let config = ReloaderConfig {
            config_file: Some(dir.path().join("in.yml")),
            envsubst_file: Some(dir.path().join("out.yml")),
            rule_dirs: vec![rules.clone(), dir.path().join("missing")],
            watch_interval: Duration::from_secs(1),
        };
        std::fs::write(dir.path().join("in.yml"), "a: $(HOME)\n").unwrap();
        let first = snapshot(&config).unwrap();
        apply(&config, &first).unwrap();
        let written = std::fs::read_to_string(dir.path().join("out.yml")).unwrap();
        assert_eq!(written, format!("a: {}\n", std::env::var("HOME").unwrap()));
        std::fs::write(rules.join("r.yml"), "groups: []\n").unwrap();
        let second = snapshot(&config).unwrap();
        assert_ne!(first, second);
        assert_eq!(second, snapshot(&config).unwrap());
    }
}
