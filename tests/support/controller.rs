//! Running a controller inside a test: settings for the test's namespace only,
//! no leader election, an ephemeral metrics port; stopped when the guard drops.

use std::future::Future;
use std::pin::Pin;

use homelab_kit::Settings;

/// Settings of controller `name` watching only `namespace`.
///
/// # Panics
/// Never: the address is a constant.
#[must_use]
pub fn settings(name: &str, namespace: &str) -> Settings {
    let mut s = Settings::new(name);
    s.namespace = Some(namespace.to_owned());
    s.http_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    s.leader_election = false;
    s
}

/// The future a controller's `run_until` waits on.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A controller task: stopped cleanly when dropped, or killed with [`Running::kill`].
pub struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Ends the task at once, as a SIGKILL would: no cleanup runs.
    pub fn kill(mut self) {
        self.stop = None;
        self.task.abort();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Spawns `run_until(shutdown)` (a controller's `run_until`), printing an error
/// it ends with.
pub fn spawn<F, Fut, E>(run_until: F) -> Running
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Debug,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ran = run_until(Box::pin(async move {
        let _ = stopped.await;
    }));
    let task = tokio::spawn(async move {
        if let Err(e) = ran.await {
            eprintln!("a controller under test stopped: {e:?}");
        }
    });
    Running {
        stop: Some(stop),
        task,
    }
}
