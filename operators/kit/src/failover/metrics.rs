//! Failover metrics, registered in the consumer's sub-registry. Labels are reason
//! constants (a fixed set), never node or object names.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::metrics::register_family;

type Labels = [(&'static str, &'static str); 1];

/// Buckets for the seconds from node loss to Ready elsewhere.
const BUCKETS: [f64; 9] = [10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 600.0];

/// Cheap to clone; clones count into the same series.
#[derive(Clone, Debug)]
pub struct FailoverMetrics {
    /// `failovers_total{reason}`: moves started.
    started: Family<Labels, Counter>,
    /// `failovers_blocked_total{reason}`: lost nodes the operator could not act on.
    blocked: Family<Labels, Counter>,
    /// `failover_duration_seconds`: node lost → Ready elsewhere.
    duration: Histogram,
}

impl Default for FailoverMetrics {
    fn default() -> Self {
        Self {
            started: Family::default(),
            blocked: Family::default(),
            duration: Histogram::new(BUCKETS),
        }
    }
}

impl FailoverMetrics {
    /// Registers the metrics, with the usual reasons at 0.
    pub fn register(&self, registry: &mut Registry) {
        use homelab_api::conditions::reasons;
        register_family(
            registry,
            "failovers",
            "Failovers started (a pod force-removed from a lost node), by reason",
            &self.started,
            [[("reason", reasons::NODE_UNREACHABLE)]],
        );
        register_family(
            registry,
            "failovers_blocked",
            "Lost nodes whose workload could not be moved, by reason",
            &self.blocked,
            [
                reasons::FAILOVER_NOT_AUTOMATIC,
                reasons::NODE_LOCAL_STORAGE,
                reasons::FENCING_REQUIRED,
                reasons::NO_ELIGIBLE_NODE,
                reasons::CLUSTER_DISRUPTED,
            ]
            .map(|reason| [("reason", reason)]),
        );
        registry.register(
            "failover_duration_seconds",
            "Seconds from a node's last heartbeat to the workload Ready on another node",
            self.duration.clone(),
        );
    }

    /// Counts a failover started for `reason`.
    pub fn started(&self, reason: &'static str) {
        self.started.get_or_create(&[("reason", reason)]).inc();
    }

    /// Counts a lost node that could not be acted on, for `reason`.
    pub fn blocked(&self, reason: &'static str) {
        self.blocked.get_or_create(&[("reason", reason)]).inc();
    }

    /// Records a completed failover's duration.
    pub fn completed(&self, millis: i64) {
        #[allow(clippy::cast_precision_loss)]
        self.duration.observe(millis as f64 / 1000.0);
    }

    /// Failovers started so far, all reasons (for tests).
    #[must_use]
    pub fn started_total(&self, reason: &'static str) -> u64 {
        self.started.get_or_create(&[("reason", reason)]).get()
    }
}
