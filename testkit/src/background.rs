//! The suites' in-process servers each run on a thread of their own with a current-thread runtime,
//! so they serve whatever the test's runtime is doing, and stop when told.

use anyhow::{Context, Result};
use std::future::Future;
use tokio::sync::oneshot;

/// A server running on its own thread; dropping it stops the server and joins the thread.
pub struct Background {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Runs the future `serve` makes on a new thread named `name` until it ends or the
    /// [`Background`] is dropped. `serve` is called on that thread, inside its runtime, so it can
    /// register listeners with it.
    pub fn spawn<S, F>(name: &str, serve: S) -> Result<Background>
    where
        S: FnOnce() -> F + Send + 'static,
        F: Future<Output = ()>,
    {
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    tokio::select! {
                        _ = stopped => {}
                        _ = serve() => {}
                    }
                });
            })
            .with_context(|| format!("spawning the {name} thread"))?;
        Ok(Background {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
