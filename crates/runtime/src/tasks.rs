//! Owned background tasks: a component's loops (block sync, endpoint checks, shipper,
//! reloader, its HTTP server) live in one [`Tasks`] set, and the component waits on its
//! main server *and* on [`Tasks::failure`], as Thanos' run group does: a loop that panics or
//! returns an error stops the component with that error instead of leaving it up with a
//! piece silently gone.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;

use tokio::task::{Id, JoinSet};

/// How long [`Tasks::join`] waits, after shutdown, for tasks to finish.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// A background task that ended on its own: it panicked, failed or returned early.
#[derive(Debug, thiserror::Error)]
#[error("background task {name} {cause}")]
pub struct TaskFailure {
    /// The task's name.
    pub name: &'static str,
    /// What happened.
    pub cause: String,
}

/// The set of a component's background tasks.
#[derive(Default)]
pub struct Tasks {
    set: JoinSet<Result<(), String>>,
    names: HashMap<Id, &'static str>,
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks")
            .field("names", &self.names.values().collect::<Vec<_>>())
            .finish()
    }
}

impl Tasks {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task` in the set. Returning `Ok` is a normal end (after shutdown); an error is
    /// reported by [`Tasks::failure`].
    pub fn spawn<F, E>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        let handle = self
            .set
            .spawn(async move { task.await.map_err(|e| e.to_string()) });
        self.names.insert(handle.id(), name);
    }

    /// Runs a loop that never fails on its own (it logs its errors); it may still panic.
    pub fn spawn_loop<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn(name, async move {
            task.await;
            Ok::<(), std::convert::Infallible>(())
        });
    }

    /// Resolves with the first task that fails (panics or returns an error); tasks that end
    /// normally are collected. Pending forever when no task fails.
    pub async fn failure(&mut self) -> TaskFailure {
        loop {
            match self.set.join_next_with_id().await {
                None => std::future::pending::<()>().await,
                Some(Ok((id, Ok(())))) => {
                    self.names.remove(&id);
                }
                Some(Ok((id, Err(e)))) => {
                    return TaskFailure {
                        name: self.names.remove(&id).unwrap_or("?"),
                        cause: format!("failed: {e}"),
                    };
                }
                Some(Err(e)) => {
                    let name = self.names.remove(&e.id()).unwrap_or("?");
                    let cause = if e.is_panic() {
                        "panicked".to_owned()
                    } else {
                        "was cancelled".to_owned()
                    };
                    return TaskFailure { name, cause };
                }
            }
        }
    }

    /// Waits for every task to end (they watch the component's shutdown signal), logging any
    /// that fails; tasks still running after `grace` are aborted.
    pub async fn join(mut self, grace: std::time::Duration) {
        let drain = async {
            while let Some(done) = self.set.join_next_with_id().await {
                let failed = match done {
                    Ok((_, Ok(()))) => None,
                    Ok((id, Err(e))) => Some((id, format!("failed: {e}"))),
                    Err(e) => Some((e.id(), e.to_string())),
                };
                if let Some((id, cause)) = failed {
                    let name = self.names.get(&id).copied().unwrap_or("?");
                    tracing::warn!(task = name, cause = %cause, "background task ended badly");
                }
            }
        };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!("background tasks still running after shutdown; aborting them");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_reported_by_name() {
        let mut tasks = Tasks::new();
        tasks.spawn_loop("quiet", async {});
        tasks.spawn_loop("forever", std::future::pending());
        tasks.spawn_loop("syncer", async { panic!("boom") });
        let failure = tasks.failure().await;
        assert_eq!(failure.name, "syncer");
        assert_eq!(failure.to_string(), "background task syncer panicked");
    }

    #[tokio::test]
    async fn a_failing_task_is_reported_with_its_error() {
        let mut tasks = Tasks::new();
        tasks.spawn("http", async { Err::<(), _>("address in use") });
        let failure = tasks.failure().await;
        assert_eq!(
            failure.to_string(),
            "background task http failed: address in use"
        );
    }

    #[tokio::test]
    async fn tasks_that_end_normally_are_no_failure() {
        let mut tasks = Tasks::new();
        tasks.spawn_loop("a", async {});
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), tasks.failure()).await;
        assert!(waited.is_err());
    }
}
