//! The status (pure): from the previous status and the runs' reports, what the
//! newest verified backup is, whether it is too old, how the etcd members are, and
//! what the next run is. A report only ever moves things forward, so Jobs that the
//! CronJob's history limit deletes take nothing with them.

use std::time::Duration;

use homelab_api::conditions::{reasons, types};
use homelab_api::etcdbackup::{BackupRecord, Datastore, EtcdBackupStatus, EtcdClusterStatus};
use homelab_api::{ConditionedStatus, EtcdBackup};
use homelab_kit::Outcome;
use homelab_kit::conditions::{self, Status, new_condition, remove_condition, set_condition};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::preset;
use crate::report::RunReport;

/// One finished run, as read from its Pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// The Pod's name.
    pub pod: String,
    /// When it finished.
    pub finished: Timestamp,
    /// What it reported (a failure without a report is synthesised).
    pub report: RunReport,
}

/// What the controller knows beyond the spec and the runs.
#[derive(Clone, Debug)]
pub struct Facts {
    /// Now, to the second.
    pub now: Timestamp,
    /// The next scheduled run (None when suspended or never).
    pub next_run: Option<Timestamp>,
    /// How old the newest verified backup may get.
    pub stale_after: Duration,
    /// When the EtcdBackup was created (the clock for Stale before any backup).
    pub created: Timestamp,
}

/// The status and when to look again (for Stale to turn on time).
#[derive(Clone, Debug)]
pub struct Computed {
    /// The status to write.
    pub status: EtcdBackupStatus,
    /// When Stale would flip if nothing else happened.
    pub stale_at: Option<Timestamp>,
}

/// Computes the status from `runs` (any order) on top of the current one.
#[must_use]
pub fn compute(backup: &EtcdBackup, runs: &[Run], facts: &Facts) -> Computed {
    let previous = backup.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    let generation = backup.metadata.generation;
    status.observed_generation = generation;
    let mut runs: Vec<&Run> = runs.iter().collect();
    runs.sort_by_key(|r| r.finished);

    for run in &runs {
        let Some(backup) = run.report.backup.as_ref().filter(|_| run.report.ok) else {
            continue;
        };
        let newer = status
            .last_successful_backup
            .as_ref()
            .is_none_or(|last| backup.time.0 > last.time.0);
        if newer {
            status.last_successful_backup = Some(backup.clone());
            status.recent_backups = if run.report.recent.is_empty() {
                vec![backup.clone()]
            } else {
                run.report.recent.clone()
            };
        }
    }
    if let Some(etcd) = runs.iter().rev().find_map(|r| r.report.etcd.clone()) {
        status.etcd = Some(etcd);
    }
    if backup.spec.source.datastore == Datastore::Sqlite {
        status.etcd = None;
    }
    status.next_scheduled_time = facts.next_run.map(Time);
    status.restore_command = status
        .last_successful_backup
        .as_ref()
        .map(|b| preset::restore_command(&backup.spec, &b.location));

    let latest = runs.last();
    let outcome = match latest {
        Some(run) if !run.report.ok => None,
        _ => Some(match &status.last_successful_backup {
            Some(b) => Outcome::ready(reasons::BACKUP_SUCCEEDED, describe(b)),
            None => Outcome::progressing(
                reasons::PROGRESSING,
                match facts.next_run {
                    Some(next) => format!("waiting for the first backup, scheduled at {next}"),
                    None => "waiting for the first backup (suspended)".to_owned(),
                },
            ),
        }),
    };
    match outcome {
        Some(outcome) => {
            conditions::set_outcome(&mut status.conditions, &outcome, generation, facts.now);
        }
        None => {
            // A failed run: not ready, but neither stalled (the next run may succeed)
            // nor reconciling.
            let run = latest.map(|r| (r.pod.as_str(), r.report.error.as_deref().unwrap_or("")));
            let (pod, error) = run.unwrap_or_default();
            let reason = if error.starts_with("verification failed") {
                reasons::VERIFICATION_FAILED
            } else {
                reasons::BACKUP_FAILED
            };
            let message = format!("backup run {pod} failed: {error}");
            let c = |t| new_condition(t, Status::False, reason, &message, generation, facts.now);
            set_condition(&mut status.conditions, c(types::READY));
            remove_condition(&mut status.conditions, types::RECONCILING);
            remove_condition(&mut status.conditions, types::STALLED);
        }
    }

    let since = status
        .last_successful_backup
        .as_ref()
        .map_or(facts.created, |b| b.time.0);
    let limit = SignedDuration::try_from(facts.stale_after).unwrap_or(SignedDuration::MAX);
    let stale_at = since.checked_add(limit).ok();
    let stale = stale_at.is_some_and(|at| facts.now >= at);
    let (reason, message) = match (stale, &status.last_successful_backup) {
        (true, Some(b)) => (
            reasons::NO_RECENT_BACKUP,
            format!(
                "the newest verified backup is from {}, older than {}",
                b.time.0,
                humantime(facts.stale_after)
            ),
        ),
        (true, None) => (
            reasons::NO_RECENT_BACKUP,
            format!(
                "no verified backup since the EtcdBackup was created at {}",
                facts.created
            ),
        ),
        (false, _) => (
            reasons::BACKUP_SUCCEEDED,
            format!(
                "a verified backup is due within {}",
                humantime(facts.stale_after)
            ),
        ),
    };
    set_condition(
        &mut status.conditions,
        new_condition(
            types::STALE,
            Status::from(stale),
            reason,
            &message,
            generation,
            facts.now,
        ),
    );
    match status.etcd.as_ref().map(quorum) {
        Some((at_risk, reason, message)) => {
            set_condition(
                &mut status.conditions,
                new_condition(
                    types::QUORUM_AT_RISK,
                    Status::from(at_risk),
                    reason,
                    &message,
                    generation,
                    facts.now,
                ),
            );
        }
        None => {
            remove_condition(&mut status.conditions, types::QUORUM_AT_RISK);
        }
    }
    Computed {
        status,
        stale_at: stale_at.filter(|at| *at > facts.now),
    }
}

/// Whether quorum is at risk, why, and a message.
fn quorum(etcd: &EtcdClusterStatus) -> (bool, &'static str, String) {
    let (n, healthy) = (etcd.member_count, etcd.healthy_members);
    if healthy < n {
        let down: Vec<&str> = etcd
            .members
            .iter()
            .filter(|m| !m.healthy)
            .map(|m| m.name.as_str())
            .collect();
        (
            true,
            reasons::MEMBER_UNREACHABLE,
            format!(
                "{healthy} of {n} etcd members answered (unreachable: {}); losing {} more loses quorum",
                down.join(", "),
                (healthy - (n / 2 + 1) + 1).max(0)
            ),
        )
    } else if n > 1 && n % 2 == 0 {
        (
            true,
            reasons::EVEN_MEMBER_COUNT,
            format!(
                "{n} etcd members tolerate no more failures than {}: add or remove one",
                n - 1
            ),
        )
    } else {
        (
            false,
            reasons::QUORUM_HEALTHY,
            format!("all {n} etcd members answered"),
        )
    }
}

fn describe(b: &BackupRecord) -> String {
    let revision = b
        .revision
        .map(|r| format!(", revision {r}"))
        .unwrap_or_default();
    format!(
        "verified backup {} taken at {} ({} bytes{revision})",
        b.location, b.time.0, b.size_bytes
    )
}

fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86400 == 0 && s > 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Whether the status says the newest backup is stale.
#[must_use]
pub fn is_stale(status: &EtcdBackupStatus) -> bool {
    status.is_condition_true(types::STALE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use homelab_api::etcdbackup::{EtcdBackupSpec, EtcdMember};

    fn backup() -> EtcdBackup {
        let spec: EtcdBackupSpec = serde_json::from_value(serde_json::json!({
            "schedule": "@hourly",
            "source": { "distribution": "Kubeadm" },
            "destination": { "hostPath": { "path": "/var/backups/etcd" } },
        }))
        .unwrap();
        let mut b = EtcdBackup::new("cluster", spec);
        b.metadata.generation = Some(1);
        b
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn record(at: &str) -> BackupRecord {
        BackupRecord {
            time: Time(t(at)),
            location: format!("/var/backups/etcd/cluster-{at}.db.zst"),
            size_bytes: 1000,
            sha256: "00".repeat(32),
            revision: Some(42),
            duration_millis: Some(100),
        }
    }

    fn ok(at: &str, members: i32, healthy: i32) -> Run {
        Run {
            pod: format!("pod-{at}"),
            finished: t(at),
            report: RunReport {
                ok: true,
                backup: Some(record(at)),
                recent: vec![record(at)],
                etcd: Some(EtcdClusterStatus {
                    member_count: members,
                    healthy_members: healthy,
                    members: (0..members)
                        .map(|i| EtcdMember {
                            name: format!("m{i}"),
                            endpoint: None,
                            healthy: i < healthy,
                            leader: i == 0,
                        })
                        .collect(),
                    ..EtcdClusterStatus::default()
                }),
                ..RunReport::default()
            },
        }
    }

    fn failed(at: &str) -> Run {
        Run {
            pod: format!("pod-{at}"),
            finished: t(at),
            report: RunReport {
                ok: false,
                error: Some("no endpoint gave a snapshot".into()),
                ..RunReport::default()
            },
        }
    }

    fn facts(now: &str) -> Facts {
        Facts {
            now: t(now),
            next_run: None,
            stale_after: Duration::from_secs(7200),
            created: t("2026-01-01T00:00:00Z"),
        }
    }

    fn cond<'a>(s: &'a EtcdBackupStatus, c: &str) -> (&'a str, &'a str) {
        let c = s.condition(c).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn a_success_is_ready_and_fresh() {
        let c = compute(
            &backup(),
            &[ok("2026-01-01T01:00:00Z", 3, 3)],
            &facts("2026-01-01T01:01:00Z"),
        );
        assert_eq!(
            cond(&c.status, types::READY),
            ("True", reasons::BACKUP_SUCCEEDED)
        );
        assert_eq!(
            cond(&c.status, types::STALE),
            ("False", reasons::BACKUP_SUCCEEDED)
        );
        assert_eq!(
            cond(&c.status, types::QUORUM_AT_RISK),
            ("False", reasons::QUORUM_HEALTHY)
        );
        assert_eq!(c.stale_at, Some(t("2026-01-01T03:00:00Z")));
        assert!(
            c.status
                .restore_command
                .unwrap()
                .contains("etcdutl snapshot restore")
        );
    }

    #[test]
    fn failures_keep_the_last_good_backup_until_it_goes_stale() {
        let mut b = backup();
        let first = compute(
            &b,
            &[ok("2026-01-01T01:00:00Z", 1, 1)],
            &facts("2026-01-01T01:00:10Z"),
        );
        b.status = Some(first.status);
        // The successful pod is gone; only failures are left.
        let runs = [
            failed("2026-01-01T02:00:00Z"),
            failed("2026-01-01T03:00:00Z"),
        ];
        let c = compute(&b, &runs, &facts("2026-01-01T03:00:10Z"));
        assert_eq!(
            cond(&c.status, types::READY),
            ("False", reasons::BACKUP_FAILED)
        );
        assert_eq!(
            cond(&c.status, types::STALE),
            ("True", reasons::NO_RECENT_BACKUP)
        );
        assert_eq!(
            c.status.last_successful_backup.unwrap().time.0,
            t("2026-01-01T01:00:00Z")
        );
    }

    #[test]
    fn quorum_warnings() {
        let c = compute(
            &backup(),
            &[ok("2026-01-01T01:00:00Z", 2, 2)],
            &facts("2026-01-01T01:00:10Z"),
        );
        assert_eq!(
            cond(&c.status, types::QUORUM_AT_RISK),
            ("True", reasons::EVEN_MEMBER_COUNT)
        );
        let c = compute(
            &backup(),
            &[ok("2026-01-01T01:00:00Z", 3, 2)],
            &facts("2026-01-01T01:00:10Z"),
        );
        assert_eq!(
            cond(&c.status, types::QUORUM_AT_RISK),
            ("True", reasons::MEMBER_UNREACHABLE)
        );
    }

    #[test]
    fn nothing_yet_is_progressing_then_stale() {
        let c = compute(&backup(), &[], &facts("2026-01-01T00:10:00Z"));
        assert_eq!(cond(&c.status, types::READY).0, "False");
        assert!(c.status.is_condition_true(types::RECONCILING));
        assert_eq!(cond(&c.status, types::STALE).0, "False");
        let c = compute(&backup(), &[], &facts("2026-01-01T02:10:00Z"));
        assert_eq!(cond(&c.status, types::STALE).0, "True");
    }

    #[test]
    fn steady_state_computes_the_same_status() {
        let mut b = backup();
        let runs = [ok("2026-01-01T01:00:00Z", 3, 3)];
        let first = compute(&b, &runs, &facts("2026-01-01T01:00:10Z"));
        b.status = Some(first.status.clone());
        let again = compute(&b, &runs, &facts("2026-01-01T01:05:10Z"));
        assert_eq!(first.status, again.status);
    }
}
