//! Helpers for end-to-end tests: finding the real tools, generating data, running
//! promtool and Prometheus on 127.0.0.1 and stopping them by PID.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

pub mod blocks_queryable;
pub mod browser;
pub mod certs;
pub mod data;
pub mod garage;
pub mod memcached;
pub mod prometheus;
pub mod s3;
pub mod store_api;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `scripts/test` keeps tools it installs outside Debian's package manager.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("STRATA_TOOLS")
        .map_or_else(|| PathBuf::from("/var/tmp/strata-tools"), PathBuf::from)
}

/// Prometheus 3.5.3 LTS, the oracle for PromQL, the HTTP API and remote read and the peer of
/// the sidecar: `$STRATA_PROMETHEUS`, else the copy `scripts/sid-package prometheus 3.5.3`
/// unpacks (which `scripts/test` runs). Panics with that hint when missing: the tests never
/// fall back to another version silently.
pub fn prometheus_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("STRATA_PROMETHEUS") {
        return PathBuf::from(path);
    }
    let unpacked = tools_dir().join("prometheus-3.5.3/usr/bin/prometheus");
    assert!(
        unpacked.is_file(),
        "Prometheus 3.5.3 not found at {}: run `scripts/sid-package prometheus 3.5.3` (scripts/test does)",
        unpacked.display()
    );
    unpacked
}

/// The path of an executable on PATH; panics with an install hint when missing, so a
/// machine without the tools fails loudly instead of skipping.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("{name} not found on PATH: run scripts/test (it installs Debian's prometheus package)");
}

/// Runs a command, panicking with its output when it fails; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `promtool tsdb create-blocks-from openmetrics` on `input`, writing blocks to `out`.
pub fn promtool_create_blocks(input: &Path, out: &Path) {
    let promtool = require_tool("promtool");
    run(Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .arg(input)
        .arg(out));
}

/// Block directories (ULID-named) under `dir`, sorted.
pub fn block_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The `strata` binary of this workspace, built on first use (same profile as the tests).
pub fn strata_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| {
            let test_exe = std::env::current_exe().unwrap();
            // target/<profile>/deps/<test> → target/<profile>/strata; a bench binary lives
            // in target/<profile> itself.
            let parent = test_exe.parent().unwrap();
            let profile_dir = if parent.file_name().is_some_and(|n| n == "deps") {
                parent.parent().unwrap().to_owned()
            } else {
                parent.to_owned()
            };
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = Command::new(cargo);
            build.args(["build", "--quiet", "-p", "strata"]);
            // Into the target directory this executable came from, whatever the
            // environment says.
            if let Some(target_dir) = profile_dir.parent() {
                build.arg("--target-dir").arg(target_dir);
            }
            if release {
                build.arg("--release");
            }
            run(&mut build);
            profile_dir.join("strata")
        })
        .clone()
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Copies a block under a new ULID (its own source), as a second replica's block.
pub fn copy_as_new_block(block: &Path, to: &Path) -> PathBuf {
    let id = ulid::Ulid::generate().to_string();
    let dir = to.join(&id);
    copy_dir(block, &dir);
    let meta_path = dir.join("meta.json");
    let mut meta = strata_tsdb::BlockMeta::parse(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta.ulid = id.clone();
    meta.compaction.sources = vec![id];
    std::fs::write(&meta_path, meta.to_json().unwrap()).unwrap();
    dir
}
