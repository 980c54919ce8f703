//! A real S3 protocol server in the test process: s3s over a temporary directory, bound to
//! 127.0.0.1 on a free port, on its own thread and runtime; stopped when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

pub const ACCESS_KEY: &str = "strata-test";
pub const SECRET_KEY: &str = "strata-test-secret";

#[derive(Debug)]
pub struct S3Server {
    pub address: SocketAddr,
    pub bucket: String,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl S3Server {
    /// Starts a server holding one empty bucket.
    pub fn start(bucket: &str) -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(bucket)).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, thread) = serve(listener, dir.path());
        S3Server {
            address,
            bucket: bucket.to_owned(),
            dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops serving (an outage); the objects stay.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Serves again on the same address after [`S3Server::stop`].
    pub fn restart(&mut self) {
        self.stop();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let listener = loop {
            match std::net::TcpListener::bind(self.address) {
                Ok(l) => break l,
                Err(e) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "rebinding {}: {e}",
                        self.address
                    );
                    #[allow(clippy::disallowed_methods)]
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        };
        let (stop, thread) = serve(listener, self.dir.path());
        self.stop = Some(stop);
        self.thread = Some(thread);
    }

    /// A Thanos bucket config for this server.
    pub fn bucket_yaml(&self) -> String {
        format!(
            "type: S3\nconfig:\n  bucket: {}\n  endpoint: {}\n  region: us-east-1\n  access_key: {ACCESS_KEY}\n  secret_key: {SECRET_KEY}\n  insecure: true\n",
            self.bucket, self.address
        )
    }

    /// The directory holding the bucket's objects.
    pub fn bucket_dir(&self) -> PathBuf {
        self.dir.path().join(&self.bucket)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves S3 over `root` on `listener` in a thread with its own runtime.
fn serve(
    listener: std::net::TcpListener,
    root: &Path,
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let fs = s3s_fs::FileSystem::new(root).unwrap();
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    listener.set_nonblocking(true).unwrap();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(_) => continue,
                    },
                    _ = &mut stop_rx => break,
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        // Dropping the runtime ends every open connection: a real outage.
        runtime.shutdown_background();
    });
    (stop_tx, thread)
}
