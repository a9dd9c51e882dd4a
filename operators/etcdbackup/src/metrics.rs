//! Backup metrics per EtcdBackup (labelled by namespace and name, as
//! kube-state-metrics labels objects): when the newest verified backup was taken
//! (its age is `time() - …` in PromQL, which stays right between reconciles), its
//! size and how long it took, and failed runs.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = [(&'static str, String); 2];

/// Cheap to clone; clones share the series.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    last_success: Family<Labels, Gauge>,
    size: Family<Labels, Gauge>,
    duration: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    failures: Family<Labels, Counter>,
    stale: Family<Labels, Gauge>,
}

fn labels(namespace: &str, name: &str) -> Labels {
    [
        ("namespace", namespace.to_owned()),
        ("name", name.to_owned()),
    ]
}

impl Metrics {
    /// Registers the metrics.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "etcdbackup_last_success_timestamp_seconds",
            "When the newest verified backup was taken (age: time() minus this)",
            self.last_success.clone(),
        );
        registry.register(
            "etcdbackup_last_success_size_bytes",
            "Size of the newest verified backup as stored",
            self.size.clone(),
        );
        registry.register(
            "etcdbackup_last_success_duration_seconds",
            "How long the newest verified backup took, verification included",
            self.duration.clone(),
        );
        registry.register(
            "etcdbackup_failures",
            "Backup runs that failed or did not verify",
            self.failures.clone(),
        );
        registry.register(
            "etcdbackup_stale",
            "1 while the newest verified backup is older than staleAfter",
            self.stale.clone(),
        );
    }

    /// Records the newest verified backup.
    pub fn success(&self, namespace: &str, name: &str, at: i64, size: i64, millis: Option<i64>) {
        let l = labels(namespace, name);
        self.last_success.get_or_create(&l).set(at);
        self.size.get_or_create(&l).set(size);
        if let Some(ms) = millis {
            #[allow(clippy::cast_precision_loss)]
            self.duration.get_or_create(&l).set(ms as f64 / 1000.0);
        }
    }

    /// Counts one failed run.
    pub fn failed(&self, namespace: &str, name: &str) {
        self.failures.get_or_create(&labels(namespace, name)).inc();
    }

    /// Failed runs counted so far.
    #[must_use]
    pub fn failures(&self, namespace: &str, name: &str) -> u64 {
        self.failures.get_or_create(&labels(namespace, name)).get()
    }

    /// Records whether the backups are stale.
    pub fn set_stale(&self, namespace: &str, name: &str, stale: bool) {
        self.stale
            .get_or_create(&labels(namespace, name))
            .set(i64::from(stale));
    }
}
