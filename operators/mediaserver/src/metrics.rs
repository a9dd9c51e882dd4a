//! The controller's own metrics, beside the kit's reconcile metrics:
//! writes to the API server by kind (a steady state makes none), and specs
//! refused by reason. Labels are fixed strings, never names.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Kinds the controller writes, as labels.
pub const WRITTEN_KINDS: &[&str] = &[
    "Deployment",
    "Service",
    "PersistentVolumeClaim",
    "MediaServerStatus",
];

type Labels = [(&'static str, &'static str); 1];

/// Cheap to clone; clones count into the same series.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// `homelab_mediaserver_writes_total{kind}`.
    writes: Family<Labels, Counter>,
    /// `homelab_mediaserver_refused_total{reason}`.
    refused: Family<Labels, Counter>,
}

impl Metrics {
    /// Registers the metrics (in the controller's sub-registry).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "mediaserver_writes",
            "Writes to the API server (server-side applies and status writes), by kind",
            self.writes.clone(),
        );
        registry.register(
            "mediaserver_refused",
            "Reconciles that refused a spec (nothing applied), by condition reason",
            self.refused.clone(),
        );
    }

    /// Counts one write of `kind`.
    pub fn wrote(&self, kind: &str) {
        if let Some(kind) = WRITTEN_KINDS.iter().find(|k| **k == kind) {
            self.writes.get_or_create(&[("kind", kind)]).inc();
        }
    }

    /// Counts one refused spec.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&[("reason", reason)]).inc();
    }

    /// Writes so far, all kinds together.
    #[must_use]
    pub fn writes(&self) -> u64 {
        WRITTEN_KINDS
            .iter()
            .map(|k| self.writes.get_or_create(&[("kind", k)]).get())
            .sum()
    }

    /// Writes so far of one kind.
    #[must_use]
    pub fn writes_of(&self, kind: &'static str) -> u64 {
        self.writes.get_or_create(&[("kind", kind)]).get()
    }
}
