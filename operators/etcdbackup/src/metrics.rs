//! Backup metrics per EtcdBackup (labelled by namespace and name, as
//! kube-state-metrics labels objects).
//!
//! [`RunGauges`] reads the status from the controller's cache at each scrape, so
//! every replica says the same and a deleted backup's series go with it: when the
//! newest verified backup was taken (its age is `time() - …` in PromQL, which
//! stays right between reconciles), its size and how long it took, whether it is
//! stale, whether the newest run failed, and the etcd members that run saw.
//! [`Metrics`] counts failed runs, which no status keeps.

use homelab_api::conditions::{reasons, types};
use homelab_api::etcdbackup::{BackupRecord, EtcdClusterStatus};
use homelab_api::{ConditionedStatus, EtcdBackup};
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

type Labels = [(&'static str, String); 2];

/// Cheap to clone; clones share the series.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// `homelab_etcdbackup_failures_total`: failed runs, each counted once.
    failures: Family<Labels, Counter>,
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
            "etcdbackup_failures",
            "Backup runs that failed or did not verify",
            self.failures.clone(),
        );
    }

    /// Makes the backup's failure counter exist at 0, so that its first failure is
    /// an increase (a counter first seen at 1 is none to `increase()`).
    pub fn declare(&self, namespace: &str, name: &str) {
        let _ = self.failures.get_or_create(&labels(namespace, name));
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
}

/// Per EtcdBackup, from its status:
/// - `homelab_etcdbackup_last_success_timestamp_seconds`, `…_size_bytes` and
///   `…_duration_seconds`: the newest verified backup (absent before the first);
/// - `homelab_etcdbackup_stale`: 1 while its `Stale` condition is True, else 0;
/// - `homelab_etcdbackup_last_run_failed`: 1 while the newest run failed or did
///   not verify (until a later run succeeds), else 0;
/// - `homelab_etcdbackup_etcd_members` and `homelab_etcdbackup_etcd_members_healthy`:
///   the etcd members the newest run that reached etcd saw, and how many of them
///   answered (absent for SQLite and before the first run).
#[derive(Debug)]
pub struct RunGauges {
    /// The controller's cache of backups.
    store: Store<EtcdBackup>,
}

impl RunGauges {
    /// Gauges over the backups in `store`.
    #[must_use]
    pub fn new(store: Store<EtcdBackup>) -> Self {
        Self { store }
    }
}

/// Whether the newest run failed: the status says so in Ready's reason.
fn last_run_failed(backup: &EtcdBackup) -> bool {
    backup
        .status
        .as_ref()
        .and_then(|s| s.condition(types::READY))
        .is_some_and(|c| {
            c.status == "False"
                && (c.reason == reasons::BACKUP_FAILED || c.reason == reasons::VERIFICATION_FAILED)
        })
}

/// One gauge family read from the status: its name, help, and the value of a
/// backup (none: no series).
type Reading = (&'static str, &'static str, fn(&EtcdBackup) -> Option<f64>);

fn newest(backup: &EtcdBackup) -> Option<&BackupRecord> {
    backup.status.as_ref()?.last_successful_backup.as_ref()
}

fn etcd(backup: &EtcdBackup) -> Option<&EtcdClusterStatus> {
    backup.status.as_ref()?.etcd.as_ref()
}

fn flag(on: bool) -> Option<f64> {
    Some(if on { 1.0 } else { 0.0 })
}

// Sizes and counts as f64: exact below 2^53, far beyond any backup.
#[allow(clippy::cast_precision_loss)]
const READINGS: &[Reading] = &[
    (
        "etcdbackup_last_success_timestamp_seconds",
        "When the newest verified backup was taken (age: time() minus this)",
        |b| newest(b).map(|r| r.time.0.as_second() as f64),
    ),
    (
        "etcdbackup_last_success_size_bytes",
        "Size of the newest verified backup as stored",
        |b| newest(b).map(|r| r.size_bytes as f64),
    ),
    (
        "etcdbackup_last_success_duration_seconds",
        "How long the newest verified backup took, verification included",
        |b| newest(b)?.duration_millis.map(|ms| ms as f64 / 1000.0),
    ),
    (
        "etcdbackup_stale",
        "1 while the newest verified backup is older than staleAfter",
        |b| {
            flag(
                b.status
                    .as_ref()
                    .is_some_and(|s| s.is_condition_true(types::STALE)),
            )
        },
    ),
    (
        "etcdbackup_last_run_failed",
        "1 while the newest backup run failed or did not verify, else 0",
        |b| flag(last_run_failed(b)),
    ),
    (
        "etcdbackup_etcd_members",
        "etcd members the newest run saw",
        |b| etcd(b).map(|e| f64::from(e.member_count)),
    ),
    (
        "etcdbackup_etcd_members_healthy",
        "etcd members that answered the newest run",
        |b| etcd(b).map(|e| f64::from(e.healthy_members)),
    ),
];

impl Collector for RunGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let backups: Vec<_> = self
            .store
            .state()
            .into_iter()
            .map(|b| (b.namespace().unwrap_or_default(), b.name_any(), b))
            .collect();
        for (family, help, read) in READINGS {
            let mut metric = encoder.encode_descriptor(family, help, None, MetricType::Gauge)?;
            for (namespace, name, backup) in &backups {
                let Some(value) = read(backup) else {
                    continue;
                };
                let labels = [("namespace", namespace.as_str()), ("name", name.as_str())];
                ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use homelab_api::conditions::{ConditionStatus, new_condition};
    use homelab_api::etcdbackup::{EtcdBackupSpec, EtcdBackupStatus, EtcdClusterStatus};
    use kube::runtime::{reflector, watcher};
    use prometheus_client::registry::Registry;

    fn backup(name: &str, ready: (ConditionStatus, &str), etcd: Option<(i32, i32)>) -> EtcdBackup {
        let spec: EtcdBackupSpec = serde_json::from_value(serde_json::json!({
            "schedule": "@hourly",
            "source": { "distribution": "Kubeadm" },
            "destination": { "hostPath": { "path": "/var/backups/etcd" } },
        }))
        .unwrap();
        let mut b = EtcdBackup::new(name, spec);
        b.metadata.namespace = Some("kube-system".to_owned());
        let (status, reason) = ready;
        b.status = Some(EtcdBackupStatus {
            conditions: vec![new_condition(
                types::READY,
                status,
                reason,
                "",
                None,
                jiff::Timestamp::UNIX_EPOCH,
            )],
            etcd: etcd.map(|(member_count, healthy_members)| EtcdClusterStatus {
                member_count,
                healthy_members,
                ..Default::default()
            }),
            ..Default::default()
        });
        b
    }

    #[test]
    fn the_newest_verified_backup_and_staleness_are_read_from_the_status() {
        let mut fresh = backup(
            "hourly",
            (ConditionStatus::True, reasons::BACKUP_SUCCEEDED),
            None,
        );
        let status = fresh.status.as_mut().unwrap();
        status.last_successful_backup = Some(BackupRecord {
            time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-12-04T10:00:00Z".parse().unwrap(),
            ),
            location: "/var/backups/etcd/hourly.db.zst".to_owned(),
            size_bytes: 123_456,
            sha256: "00".repeat(32),
            revision: Some(42),
            duration_millis: Some(2_500),
        });
        status.conditions.push(new_condition(
            types::STALE,
            ConditionStatus::True,
            reasons::NO_RECENT_BACKUP,
            "",
            None,
            jiff::Timestamp::UNIX_EPOCH,
        ));
        let (store, mut writer) = reflector::store::<EtcdBackup>();
        writer.apply_watcher_event(&watcher::Event::Apply(fresh));
        writer.apply_watcher_event(&watcher::Event::Apply(backup(
            "new",
            (ConditionStatus::Unknown, reasons::PROGRESSING),
            None,
        )));
        let text = scrape(store);
        let lines = [
            r#"homelab_etcdbackup_last_success_timestamp_seconds{namespace="kube-system",name="hourly"} 1796378400"#,
            r#"homelab_etcdbackup_last_success_size_bytes{namespace="kube-system",name="hourly"} 123456"#,
            r#"homelab_etcdbackup_last_success_duration_seconds{namespace="kube-system",name="hourly"} 2.5"#,
            r#"homelab_etcdbackup_stale{namespace="kube-system",name="hourly"} 1"#,
            r#"homelab_etcdbackup_stale{namespace="kube-system",name="new"} 0"#,
        ];
        says(
            &text,
            &lines,
            r#"last_success_timestamp_seconds{namespace="kube-system",name="new"}"#,
        );
    }

    /// Asserts that `text` holds every one of `lines` and not `absent`.
    fn says(text: &str, lines: &[&str], absent: &str) {
        for line in lines {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        assert!(!text.contains(absent), "{absent} in\n{text}");
    }

    /// What a scrape of the gauges over `store` says.
    fn scrape(store: Store<EtcdBackup>) -> String {
        let mut registry = Registry::with_prefix("homelab");
        registry.register_collector(Box::new(RunGauges::new(store)));
        homelab_kit::metrics::render(&registry).unwrap()
    }

    #[test]
    fn the_newest_run_is_read_from_the_status() {
        let (store, mut writer) = reflector::store::<EtcdBackup>();
        for b in [
            backup(
                "hourly",
                (ConditionStatus::False, reasons::BACKUP_FAILED),
                Some((3, 2)),
            ),
            backup(
                "nightly",
                (ConditionStatus::True, reasons::BACKUP_SUCCEEDED),
                Some((3, 3)),
            ),
            backup(
                "k3s-sqlite",
                (ConditionStatus::False, reasons::VERIFICATION_FAILED),
                None,
            ),
            backup(
                "new",
                (ConditionStatus::Unknown, reasons::PROGRESSING),
                None,
            ),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(b));
        }
        let text = scrape(store);
        let lines = [
            r#"homelab_etcdbackup_last_run_failed{namespace="kube-system",name="hourly"} 1"#,
            r#"homelab_etcdbackup_last_run_failed{namespace="kube-system",name="nightly"} 0"#,
            r#"homelab_etcdbackup_last_run_failed{namespace="kube-system",name="k3s-sqlite"} 1"#,
            r#"homelab_etcdbackup_last_run_failed{namespace="kube-system",name="new"} 0"#,
            r#"homelab_etcdbackup_etcd_members{namespace="kube-system",name="hourly"} 3"#,
            r#"homelab_etcdbackup_etcd_members_healthy{namespace="kube-system",name="hourly"} 2"#,
            r#"homelab_etcdbackup_etcd_members_healthy{namespace="kube-system",name="nightly"} 3"#,
        ];
        says(
            &text,
            &lines,
            r#"members{namespace="kube-system",name="k3s-sqlite"}"#,
        );
    }

    #[test]
    fn families_are_declared_without_backups() {
        let (store, _writer) = reflector::store::<EtcdBackup>();
        let text = scrape(store);
        for (family, ..) in READINGS {
            assert!(
                text.contains(&format!("# TYPE homelab_{family} gauge")),
                "{text}"
            );
        }
    }
}
