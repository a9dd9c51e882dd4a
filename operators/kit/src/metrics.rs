//! Prometheus metrics: one registry per binary (prefix `homelab_`), one
//! sub-registry per controller (label `controller="<name>"`), rendered as
//! OpenMetrics text.
//!
//! Labels are bounded by construction: an error is counted under the
//! `&'static str` its type gives ([`crate::ReconcileError::metric_label`]),
//! never under an object name or an error message.

use std::hash::Hash;
use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label set of the error counter: `error="<kind>"`.
type ErrorLabels = [(&'static str, &'static str); 1];

/// Label set of the watch counters: `watch="<what is watched>"`, a name the
/// code gives each watch ("MediaServer", "owned Deployment").
type WatchLabels = [(&'static str, String); 1];

/// The binary's metrics registry.
#[derive(Debug)]
pub struct Metrics {
    /// Everything the binary exports, under the `homelab_` prefix.
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry with the `homelab` prefix.
    #[must_use]
    pub fn new() -> Self {
        Self {
            registry: Registry::with_prefix("homelab"),
        }
    }

    /// Registers the reconcile metrics of one controller and returns them.
    /// Call once per controller name.
    pub fn controller(&mut self, name: &str) -> ControllerMetrics {
        ControllerMetrics::register(self.sub_registry(name))
    }

    /// The sub-registry of a controller, for metrics of its own (failovers,
    /// backup age); they get the `controller` label.
    pub fn sub_registry(&mut self, name: &str) -> &mut Registry {
        self.registry
            .sub_registry_with_label(("controller".into(), name.to_owned().into()))
    }

    /// The whole registry as OpenMetrics text.
    ///
    /// # Errors
    /// Only if a metric's own encoder fails.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        render(&self.registry)
    }
}

/// A registry as OpenMetrics text.
///
/// # Errors
/// Only if a metric's own encoder fails.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    encode(&mut out, registry)?;
    Ok(out)
}

/// Registers `family` under `name` and `help`, with the series of `labels`
/// already at 0: an empty family is not exported at all, so a dashboard or an
/// alert on it would see nothing before the first event, and a counter first
/// seen at 1 is no `increase()`.
pub fn register_family<S, M, C>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    family: &Family<S, M, C>,
    labels: impl IntoIterator<Item = S>,
) where
    S: Clone + Hash + Eq,
    C: MetricConstructor<M> + Clone,
    Family<S, M, C>: Metric,
{
    for label in labels {
        let _ = family.get_or_create(&label);
    }
    registry.register(name, help, family.clone());
}

/// The reconcile metrics of one controller. Cheap to clone; clones count
/// into the same series.
#[derive(Clone, Debug)]
pub struct ControllerMetrics {
    /// `homelab_reconciles_total`: reconciles run (by the leader).
    reconciles: Counter,
    /// `homelab_reconcile_errors_total{error}`: failed reconciles by kind.
    errors: Family<ErrorLabels, Counter>,
    /// `homelab_reconcile_duration_seconds`: how long reconciles take.
    duration: Histogram,
    /// `homelab_leader`: 1 while this replica holds the lease.
    leader: Gauge,
    /// `homelab_reconciles_running`: reconciles in progress. kube-runtime's
    /// queue is not observable from outside; this is what shows a backlog.
    running: Gauge,
    /// The watches' counters.
    watches: WatchMetrics,
}

impl ControllerMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            reconciles: Counter::default(),
            errors: Family::default(),
            // 5 ms … ~41 s
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            leader: Gauge::default(),
            running: Gauge::default(),
            watches: WatchMetrics::default(),
        };
        registry.register("reconciles", "Reconciles run", metrics.reconciles.clone());
        register_family(
            registry,
            "reconcile_errors",
            "Reconciles that failed, by kind of error",
            &metrics.errors,
            crate::error::KUBE_ERROR_LABELS
                .iter()
                .map(|&l| [("error", l)]),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciles take",
            metrics.duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the controller's lease (always 1 without leader election)",
            metrics.leader.clone(),
        );
        registry.register(
            "reconciles_running",
            "Reconciles in progress (at most the controller's concurrency; stuck there means a backlog)",
            metrics.running.clone(),
        );
        metrics.watches.register(registry);
        metrics
    }

    /// The counters the controller's watches report into.
    #[must_use]
    pub fn watches(&self) -> WatchMetrics {
        self.watches.clone()
    }

    /// Counts a reconcile and times it until the returned guard is dropped.
    #[must_use = "the reconcile is timed until the guard is dropped"]
    pub fn reconcile_started(&self) -> ReconcileTimer {
        self.reconciles.inc();
        self.running.inc();
        ReconcileTimer {
            started: Instant::now(),
            histogram: self.duration.clone(),
            running: self.running.clone(),
        }
    }

    /// Counts a failed reconcile under a fixed label.
    pub fn reconcile_failed(&self, error: &'static str) {
        self.errors.get_or_create(&[("error", error)]).inc();
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }
}

/// Observes the reconcile's duration when dropped.
#[derive(Debug)]
pub struct ReconcileTimer {
    /// When the reconcile started.
    started: Instant,
    /// Where the duration goes.
    histogram: Histogram,
    /// Decremented when the reconcile ends.
    running: Gauge,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
        self.running.dec();
    }
}

/// What the watches of one binary report: failures (each one is retried with
/// backoff, i.e. a watch restart) and re-lists after the first list (the API
/// server said the watch was too old, or the connection was lost for long).
/// Cheap to clone; clones count into the same series.
#[derive(Clone, Debug, Default)]
pub struct WatchMetrics {
    /// `homelab_watch_errors_total{watch}`.
    errors: Family<WatchLabels, Counter>,
    /// `homelab_watch_relists_total{watch}`.
    relists: Family<WatchLabels, Counter>,
}

impl WatchMetrics {
    /// Registers the counters (once per registry).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "watch_errors",
            "Watch requests that failed and were retried (watch restarts), by watch",
            self.errors.clone(),
        );
        registry.register(
            "watch_relists",
            "Full re-lists of a watch after its first list, by watch",
            self.relists.clone(),
        );
    }

    /// Counts a failed watch request.
    pub fn failed(&self, watch: &str) {
        self.errors
            .get_or_create(&[("watch", watch.to_owned())])
            .inc();
    }

    /// Counts a re-list.
    pub fn relisted(&self, watch: &str) {
        self.relists
            .get_or_create(&[("watch", watch.to_owned())])
            .inc();
    }

    /// Makes the series of `watch` exist at 0, so a dashboard sees them
    /// before the first failure.
    pub fn declare(&self, watch: &str) {
        let labels = [("watch", watch.to_owned())];
        let _ = self.errors.get_or_create(&labels);
        let _ = self.relists.get_or_create(&labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openmetrics_with_controller_label() {
        let mut metrics = Metrics::new();
        let m = metrics.controller("mediaserver");
        {
            let _t = m.reconcile_started();
        }
        m.reconcile_failed("kube_conflict");
        m.reconcile_failed("kube_conflict");
        m.set_leader(true);
        m.watches().declare("MediaServer");
        m.watches().failed("MediaServer");
        let text = metrics.render().unwrap();
        assert!(text.contains("# TYPE homelab_reconciles counter"), "{text}");
        assert!(
            text.contains(r#"homelab_reconciles_total{controller="mediaserver"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"homelab_reconcile_errors_total{controller="mediaserver",error="kube_conflict"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"homelab_reconcile_duration_seconds_count{controller="mediaserver"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"homelab_leader{controller="mediaserver"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"homelab_reconciles_running{controller="mediaserver"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"homelab_watch_errors_total{controller="mediaserver",watch="MediaServer"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"homelab_watch_relists_total{controller="mediaserver",watch="MediaServer"} 0"#
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn custom_metrics_share_the_controller_label() {
        let mut metrics = Metrics::new();
        let failovers = Counter::<u64>::default();
        metrics.sub_registry("sensorgateway").register(
            "failovers",
            "Failovers done",
            failovers.clone(),
        );
        failovers.inc();
        let text = metrics.render().unwrap();
        assert!(
            text.contains(r#"homelab_failovers_total{controller="sensorgateway"} 1"#),
            "{text}"
        );
    }
}
