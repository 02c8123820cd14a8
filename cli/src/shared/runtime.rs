//! The async runtime commands block on, and Ctrl-C / SIGTERM as cancellation.

use anyhow::{Context, Result};
use rbuild_executor::CancelToken;
use tokio::runtime::{Builder, Runtime};

/// A multi-threaded runtime with `workers` threads (tokio's default, one per core, when None).
pub fn start(workers: Option<usize>) -> Result<Runtime> {
    let mut builder = Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Ctrl-C or SIGTERM cancels `cancel` (a container is killed, then rbuild exits with its
/// status). The listeners live on `runtime`'s threads.
pub fn cancel_on_signals(runtime: &Runtime, cancel: &CancelToken) {
    use tokio::signal::unix::{SignalKind, signal};
    // Registered before returning, so a signal that comes at once is not lost.
    let _in_runtime = runtime.enter();
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let c = cancel.clone();
    runtime.spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        c.cancel();
    });
}
