//! A real single-node Garage (a distributed S3 store) on 127.0.0.1, stopped when dropped.
//!
//! The binary comes from `STRATA_GARAGE`, else `garage` on the PATH, else the one
//! `scripts/test` installs under `/var/tmp/strata-tools/garage/bin`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Garage with one bucket and a key allowed to use it.
#[derive(Debug)]
pub struct Garage {
    child: Child,
    _dir: tempfile::TempDir,
    config: PathBuf,
    binary: PathBuf,
    /// `127.0.0.1:<port>` of the S3 API.
    pub s3_address: String,
    /// The bucket.
    pub bucket: String,
    access_key: String,
    secret_key: String,
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The garage binary to use.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("STRATA_GARAGE") {
        return PathBuf::from(path);
    }
    let installed = PathBuf::from("/var/tmp/strata-tools/garage/bin/garage");
    if which("garage").is_none() && installed.exists() {
        return installed;
    }
    which("garage").unwrap_or_else(|| {
        panic!("garage not found: set STRATA_GARAGE or run scripts/test, which installs it")
    })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Garage {
    /// Starts Garage, lays out its single node, and creates `bucket` with a key for it.
    pub fn start(bucket: &str) -> Garage {
        let binary = binary();
        let dir = tempfile::tempdir().unwrap();
        let (rpc, s3, admin) = (crate::free_port(), crate::free_port(), crate::free_port());
        let secret: String = (0..32)
            .map(|i| format!("{:02x}", (i * 37 + 11) as u8))
            .collect();
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{meta}\"\ndata_dir = \"{data}\"\ndb_engine = \"sqlite\"\nreplication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\n[s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\nroot_domain = \".s3.garage.localhost\"\n\n[admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                meta = dir.path().join("meta").display(),
                data = dir.path().join("data").display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("garage.log")).unwrap();
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut garage = Garage {
            child,
            config,
            binary,
            s3_address: format!("127.0.0.1:{s3}"),
            bucket: bucket.to_owned(),
            access_key: String::new(),
            secret_key: String::new(),
            _dir: dir,
        };
        wait_port(rpc, "garage RPC");
        wait_port(s3, "garage S3 API");
        let node = garage.cli_retry(&["node", "id", "-q"]);
        let node_id = node.trim().split('@').next().unwrap_or_default().to_owned();
        garage.cli_retry(&["layout", "assign", "-z", "dc1", "-c", "1G", &node_id]);
        garage.cli_retry(&["layout", "apply", "--version", "1"]);
        let key = garage.cli_retry(&["key", "create", "strata-test"]);
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("no {name} in garage key create output:\n{key}"))
        };
        garage.access_key = field("Key ID:");
        garage.secret_key = field("Secret key:");
        garage.cli_retry(&["bucket", "create", bucket]);
        garage.cli_retry(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            bucket,
            "--key",
            "strata-test",
        ]);
        garage
    }

    /// Runs a garage CLI command, retrying while the cluster settles; returns stdout.
    fn cli_retry(&self, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new(&self.binary)
                .arg("-c")
                .arg(&self.config)
                .args(args)
                .env("RUST_LOG", "warn")
                .output()
                .unwrap();
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "garage {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// A Thanos bucket config for the bucket.
    pub fn bucket_yaml(&self) -> String {
        format!(
            "type: S3\nconfig:\n  bucket: {}\n  endpoint: {}\n  region: garage\n  access_key: {}\n  secret_key: {}\n  insecure: true\n  bucket_lookup_type: path\n",
            self.bucket, self.s3_address, self.access_key, self.secret_key
        )
    }

    /// Where the server's log goes.
    pub fn log_path(&self) -> PathBuf {
        self.config
            .parent()
            .map_or_else(PathBuf::new, |d: &Path| d.join("garage.log"))
    }
}
