//! A real memcached (Debian's) on 127.0.0.1, stopped when dropped.

use std::process::{Child, Command, Stdio};

use crate::require_tool;

/// A running memcached.
#[derive(Debug)]
pub struct Memcached(Child);

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Memcached {
    /// Starts memcached on `127.0.0.1:port` (64 MiB, TCP only) and waits until it accepts.
    pub fn start(port: u16) -> Memcached {
        let binary = require_tool("memcached");
        let mut cmd = Command::new(binary);
        cmd.args([
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-m",
            "64",
        ]);
        if is_root() {
            cmd.args(["-u", "root"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "memcached did not start"
            );
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Memcached(child)
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
}
