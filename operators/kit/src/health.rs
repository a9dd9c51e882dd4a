//! Liveness and readiness of a controller, from what its watch streams report.
//!
//! Every watch the runner starts gets a [`WatchProbe`]. kube's watcher
//! already reconnects a silent connection (idle timeout) and retries a
//! failing request with backoff (at most 30 s apart), reporting each failure
//! but not every recovery: a re-watch that succeeds in a quiet cluster yields
//! nothing. So a quiet watch is a healthy one, and a watch is dead when its
//! failures have kept coming — no gap longer than [`RECOVERED_AFTER`], no
//! event in between — for longer than the window.
//!
//! - `/healthz` fails when a watch has been failing for longer than the
//!   window, or the controller's streams ended.
//! - `/readyz` passes once every watch has listed its objects at least once.
//!   Leadership plays no part: standby replicas watch too.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use kube::runtime::watcher;

use crate::metrics::WatchMetrics;

/// A failing watch that reports no new failure for this long has recovered
/// (kube's watcher retries at most 30 s apart while it fails).
pub const RECOVERED_AFTER: Duration = Duration::from_secs(90);

/// Shared health state of one binary. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Health {
    /// How long a watch may fail without a success before it counts as dead.
    window: Duration,
    /// The watches and whether the controller stopped.
    state: Arc<Mutex<State>>,
    /// Where watch failures and re-lists are counted, if anywhere.
    metrics: Option<WatchMetrics>,
}

#[derive(Debug, Default)]
struct State {
    watches: Vec<Watch>,
    stopped: Option<String>,
}

#[derive(Debug)]
struct Watch {
    name: String,
    synced: bool,
    /// First and latest failure of the current run of failures.
    failing: Option<(Instant, Instant)>,
}

impl Watch {
    /// How long the watch has been failing without recovering, at `now`.
    fn failing_for(&self, now: Instant) -> Option<Duration> {
        let (first, last) = self.failing?;
        (now.saturating_duration_since(last) < RECOVERED_AFTER)
            .then(|| now.saturating_duration_since(first))
    }
}

impl Health {
    /// Health with the given window for failing watches.
    #[must_use]
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            state: Arc::default(),
            metrics: None,
        }
    }

    /// Counts every watch's failures and re-lists in `metrics` too.
    #[must_use]
    pub fn with_metrics(mut self, metrics: WatchMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Registers a watch (e.g. `"MediaServer"`, `"owned Deployment"`).
    pub fn watch(&self, name: impl Into<String>) -> WatchProbe {
        let name = name.into();
        if let Some(metrics) = &self.metrics {
            metrics.declare(&name);
        }
        let mut state = self.lock();
        state.watches.push(Watch {
            name: name.clone(),
            synced: false,
            failing: None,
        });
        WatchProbe {
            health: self.clone(),
            index: state.watches.len() - 1,
            name,
        }
    }

    /// Marks the controller as stopped: liveness and readiness fail from now.
    pub fn stopped(&self, why: impl Into<String>) {
        self.lock().stopped = Some(why.into());
    }

    /// `Ok` while alive; otherwise why not.
    ///
    /// # Errors
    /// A message for the probe's response body.
    pub fn liveness(&self) -> Result<(), String> {
        self.liveness_at(Instant::now())
    }

    /// `Ok` once every watch has synced; otherwise why not.
    ///
    /// # Errors
    /// A message for the probe's response body.
    pub fn readiness(&self) -> Result<(), String> {
        let state = self.lock();
        if let Some(why) = &state.stopped {
            return Err(format!("controller stopped: {why}"));
        }
        if state.watches.is_empty() {
            return Err("no watch started yet".to_owned());
        }
        let waiting: Vec<&str> = state
            .watches
            .iter()
            .filter(|w| !w.synced)
            .map(|w| w.name.as_str())
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "waiting for the first list of: {}",
                waiting.join(", ")
            ))
        }
    }

    fn liveness_at(&self, now: Instant) -> Result<(), String> {
        let state = self.lock();
        if let Some(why) = &state.stopped {
            return Err(format!("controller stopped: {why}"));
        }
        let dead: Vec<String> = state
            .watches
            .iter()
            .filter_map(|w| {
                let failing = w.failing_for(now)?;
                (failing > self.window)
                    .then(|| format!("{} failing for {}s", w.name, failing.as_secs()))
            })
            .collect();
        if dead.is_empty() {
            Ok(())
        } else {
            Err(dead.join(", "))
        }
    }

    fn update(&self, index: usize, f: impl FnOnce(&mut Watch)) {
        if let Some(w) = self.lock().watches.get_mut(index) {
            f(w);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What one watch reports into [`Health`].
#[derive(Clone, Debug)]
pub struct WatchProbe {
    /// Where reports go.
    health: Health,
    /// Which watch this is.
    index: usize,
    /// The watch's name, for logs.
    name: String,
}

impl WatchProbe {
    /// The watch delivered something: it works.
    pub fn progress(&self) {
        self.health.update(self.index, |w| w.failing = None);
    }

    /// The watch finished a (re)list.
    pub fn synced(&self) {
        self.health.update(self.index, |w| {
            w.synced = true;
            w.failing = None;
        });
    }

    /// The watch starts a list; after the first one, that is a re-list.
    fn listing(&self) {
        let mut relist = false;
        self.health.update(self.index, |w| relist = w.synced);
        if relist && let Some(metrics) = &self.health.metrics {
            metrics.relisted(&self.name);
        }
    }

    /// The watch failed; it keeps failing until it reports progress.
    pub fn failed(&self) {
        self.failed_at(Instant::now());
    }

    fn failed_at(&self, now: Instant) {
        if let Some(metrics) = &self.health.metrics {
            metrics.failed(&self.name);
        }
        self.health.update(self.index, |w| {
            let first = match w.failing {
                Some((first, last)) if now.saturating_duration_since(last) < RECOVERED_AFTER => {
                    first
                }
                _ => now,
            };
            w.failing = Some((first, now));
        });
    }

    /// Passes a watcher's events through, reporting each one.
    pub fn observe<K, S>(
        self,
        events: S,
    ) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send
    where
        S: Stream<Item = watcher::Result<watcher::Event<K>>> + Send,
    {
        events.inspect(move |event| match event {
            Ok(watcher::Event::Init) => self.listing(),
            Ok(watcher::Event::InitDone) => self.synced(),
            Ok(_) => self.progress(),
            Err(err) => {
                tracing::warn!(watch = %self.name, error = %crate::error::report(err), "watch failed");
                self.failed();
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    #[test]
    fn ready_after_every_watch_synced() {
        let h = Health::new(WINDOW);
        assert!(h.readiness().is_err(), "nothing started");
        let main = h.watch("MediaServer");
        let owned = h.watch("Deployment");
        main.synced();
        let err = h.readiness().unwrap_err();
        assert!(
            err.contains("Deployment") && !err.contains("MediaServer"),
            "{err}"
        );
        owned.synced();
        assert!(h.readiness().is_ok());
        // A later failure does not make it unready: the cache is still there.
        owned.failed();
        assert!(h.readiness().is_ok());
    }

    #[test]
    fn quiet_watches_stay_alive() {
        let h = Health::new(WINDOW);
        h.watch("MediaServer").synced();
        assert!(
            h.liveness_at(Instant::now() + Duration::from_secs(3600))
                .is_ok()
        );
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn failing_longer_than_the_window_is_dead() {
        let h = Health::new(WINDOW);
        let w = h.watch("MediaServer");
        let t0 = Instant::now();
        w.failed_at(t0);
        w.failed_at(t0 + secs(30)); // keeps the first failure time
        w.failed_at(t0 + secs(55));
        assert!(h.liveness_at(t0 + secs(59)).is_ok());
        let err = h.liveness_at(t0 + secs(61)).unwrap_err();
        assert!(err.contains("MediaServer failing for 61s"), "{err}");
    }

    #[test]
    fn failures_that_stop_coming_have_healed() {
        // A re-watch that succeeds in a quiet cluster yields no event.
        let h = Health::new(WINDOW);
        let w = h.watch("MediaServer");
        let t0 = Instant::now();
        w.failed_at(t0);
        assert!(h.liveness_at(t0 + RECOVERED_AFTER + secs(1)).is_ok());
        // A failure long after starts a new run instead of extending the old one.
        w.failed_at(t0 + secs(600));
        assert!(h.liveness_at(t0 + secs(601)).is_ok());
    }

    #[test]
    fn progress_heals() {
        let h = Health::new(WINDOW);
        let w = h.watch("Deployment");
        let t0 = Instant::now();
        w.failed_at(t0);
        w.progress();
        assert!(h.liveness_at(t0 + Duration::from_secs(600)).is_ok());
    }

    #[test]
    fn stopped_controller_is_dead_and_unready() {
        let h = Health::new(WINDOW);
        h.watch("MediaServer").synced();
        h.stopped("streams ended");
        assert!(h.liveness().unwrap_err().contains("streams ended"));
        assert!(h.readiness().is_err());
    }

    #[tokio::test]
    async fn observe_reports_watcher_events() {
        let h = Health::new(Duration::ZERO);
        let probe = h.watch("ConfigMap");
        assert!(h.liveness().is_ok());
        let events = futures::stream::iter(vec![
            Ok(watcher::Event::<()>::Init),
            Ok(watcher::Event::InitDone),
            Err(watcher::Error::NoResourceVersion),
        ]);
        let seen: Vec<_> = probe.observe(events).collect().await;
        assert_eq!(seen.len(), 3);
        assert!(h.readiness().is_ok());
        std::thread::sleep(Duration::from_millis(2));
        assert!(h.liveness().is_err());
    }

    #[tokio::test]
    async fn failures_and_relists_are_counted() {
        let mut metrics = crate::metrics::Metrics::new();
        let m = metrics.controller("test");
        let h = Health::new(WINDOW).with_metrics(m.watches());
        let events = futures::stream::iter(vec![
            Ok(watcher::Event::<()>::Init),
            Ok(watcher::Event::InitDone),
            Err(watcher::Error::NoResourceVersion),
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitDone),
        ]);
        let _: Vec<_> = h.watch("Thing").observe(events).collect().await;
        let text = metrics.render().unwrap();
        assert!(
            text.contains(r#"homelab_watch_errors_total{controller="test",watch="Thing"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"homelab_watch_relists_total{controller="test",watch="Thing"} 1"#),
            "{text}"
        );
    }
}
