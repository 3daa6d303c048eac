//! The shutdown story every task follows.
//!
//! A [`Shutdown`] is handed to each task at spawn. When it fires, a task stops
//! taking new work, flushes what it holds (within the grace period the owner
//! gives it) and returns. Owners spawn through a [`TaskTracker`] so that
//! `wait_all` can prove no task outlived the process' shutdown.

use std::time::Duration;

pub use tokio_util::sync::CancellationToken;
pub use tokio_util::task::TaskTracker;

/// Cloneable shutdown signal. Children fire when the parent fires, which lets
/// a component stop its own sub-tasks without stopping the process.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Fire the signal. Idempotent.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the signal fired; cancel-safe, so use it in `select!`.
    pub async fn wait(&self) {
        self.token.cancelled().await
    }

    /// A signal that fires with this one but can also fire on its own.
    pub fn child(&self) -> Shutdown {
        Shutdown {
            token: self.token.child_token(),
        }
    }

    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}

/// Waits for SIGINT or SIGTERM (what Kubernetes sends before SIGKILL).
pub async fn os_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Closes the tracker and waits for every tracked task, at most `grace`.
/// Returns false when the grace period ran out first (the caller logs it:
/// whatever those tasks held is still in the durable queue, not lost).
pub async fn wait_all(tracker: &TaskTracker, grace: Duration) -> bool {
    tracker.close();
    tokio::time::timeout(grace, tracker.wait()).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn child_fires_with_parent_and_tracker_waits() {
        let root = Shutdown::new();
        let child = root.child();
        let tracker = TaskTracker::new();
        let c = child.clone();
        tracker.spawn(async move { c.wait().await });
        root.trigger();
        assert!(child.is_triggered());
        assert!(wait_all(&tracker, Duration::from_secs(1)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn grace_period_runs_out_for_a_stuck_task() {
        let tracker = TaskTracker::new();
        tracker.spawn(async { tokio::time::sleep(Duration::from_secs(3600)).await });
        assert!(!wait_all(&tracker, Duration::from_secs(5)).await);
    }
}
