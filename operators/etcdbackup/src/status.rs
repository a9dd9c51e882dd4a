//! The status (pure): from the previous status and the runs' reports, what the
//! newest verified backup is, whether it is too old, how the etcd members are,
//! which failed run was announced last, and what the next run is. A report only
//! ever moves things forward, so Jobs that the CronJob's history limit deletes take
//! nothing with them.

use std::time::Duration;

use homelab_api::conditions::{
    self, ConditionStatus, new_condition, remove_condition, set_condition,
};
use homelab_api::conditions::{reasons, types};
use homelab_api::etcdbackup::{
    BackupRecord, Datastore, EtcdBackupStatus, EtcdClusterStatus, FailedRun,
};
use homelab_api::{ConditionedStatus, EtcdBackup};
use homelab_kit::Outcome;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::preset;
use crate::report::RunReport;

/// One finished run, as read from its Pod.
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedRun {
    /// The Pod's name.
    pub pod: String,
    /// When it finished, to the second (as a status keeps it).
    pub finished: Timestamp,
    /// What it reported (a failure without a report is synthesised).
    pub report: RunReport,
}

impl FinishedRun {
    /// Whether it ended after `failed` (the pod's name breaks a tie of the same
    /// second).
    #[must_use]
    pub fn is_after(&self, failed: &FailedRun) -> bool {
        (self.finished, self.pod.as_str()) > (failed.finished_at.0, failed.pod.as_str())
    }

    /// What went wrong, when it failed.
    #[must_use]
    pub fn error(&self) -> &str {
        self.report.error.as_deref().unwrap_or("no reason given")
    }
}

/// The finished runs among `pods` (only pods
/// [`crate::provenance::trusted_pods`] lets through), from their containers'
/// termination messages; a container that ended without a report is a failed run.
#[must_use]
pub fn runs_from_pods(pods: &[Pod]) -> Vec<FinishedRun> {
    pods.iter()
        .filter_map(|pod| {
            let status = pod.status.as_ref()?;
            let terminated = status
                .container_statuses
                .iter()
                .flatten()
                .find_map(|c| c.state.as_ref().and_then(|s| s.terminated.clone()))?;
            let parsed = terminated.message.as_deref().and_then(RunReport::parse);
            let finished = terminated.finished_at.map(|t| t.0).or_else(|| {
                parsed
                    .as_ref()
                    .and_then(|r| r.finished.as_ref().map(|t| t.0))
            })?;
            let report = parsed.unwrap_or_else(|| RunReport {
                ok: false,
                error: Some(format!(
                    "the backup container ended without a report (exit code {}, {})",
                    terminated.exit_code,
                    terminated.reason.as_deref().unwrap_or("no reason given")
                )),
                ..RunReport::default()
            });
            Some(FinishedRun {
                pod: pod.name_any(),
                finished: Timestamp::from_second(finished.as_second()).unwrap_or(finished),
                report,
            })
        })
        .collect()
}

/// The failed runs among `runs` that ended after `announced` (the status's
/// `lastFailedRun`), oldest first: those not announced yet.
#[must_use]
pub fn new_failures<'a>(
    announced: Option<&FailedRun>,
    runs: &'a [FinishedRun],
) -> Vec<&'a FinishedRun> {
    let mut new: Vec<&FinishedRun> = runs
        .iter()
        .filter(|r| !r.report.ok && announced.is_none_or(|a| r.is_after(a)))
        .collect();
    new.sort_by(|a, b| (a.finished, &a.pod).cmp(&(b.finished, &b.pod)));
    new
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
pub fn compute(backup: &EtcdBackup, runs: &[FinishedRun], facts: &Facts) -> Computed {
    let previous = backup.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    let generation = backup.metadata.generation;
    status.observed_generation = generation;
    if let Some(failed) = new_failures(previous.last_failed_run.as_ref(), runs).last() {
        status.last_failed_run = Some(FailedRun {
            pod: failed.pod.clone(),
            finished_at: Time(failed.finished),
            message: failed.error().to_owned(),
        });
    }
    let mut runs: Vec<&FinishedRun> = runs.iter().collect();
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
            let c = |t| {
                new_condition(
                    t,
                    ConditionStatus::False,
                    reason,
                    &message,
                    generation,
                    facts.now,
                )
            };
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
            ConditionStatus::from(stale),
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
                    ConditionStatus::from(at_risk),
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
pub(crate) mod tests {
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

    pub(crate) fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// A verified backup taken at `at`.
    pub(crate) fn record(at: &str) -> BackupRecord {
        BackupRecord {
            time: Time(t(at)),
            location: format!("/var/backups/etcd/cluster-{at}.db.zst"),
            size_bytes: 1000,
            sha256: "00".repeat(32),
            revision: Some(42),
            duration_millis: Some(100),
        }
    }

    fn ok(at: &str, members: i32, healthy: i32) -> FinishedRun {
        FinishedRun {
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

    fn failed(at: &str) -> FinishedRun {
        FinishedRun {
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

    #[test]
    fn a_pod_that_ended_without_a_report_is_a_failed_run() {
        let pod = |terminated: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "run-x"},
                "status": {"containerStatuses": [{"name": "snapshot", "image": "", "imageID": "",
                    "ready": false, "restartCount": 0, "state": {"terminated": terminated}}]},
            }))
            .unwrap()
        };
        let runs = runs_from_pods(&[
            pod(serde_json::json!({"exitCode": 137, "reason": "OOMKilled",
                                   "finishedAt": "2026-01-01T01:00:00Z"})),
            Pod::default(),
        ]);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].finished, t("2026-01-01T01:00:00Z"));
        assert_eq!(
            runs[0].error(),
            "the backup container ended without a report (exit code 137, OOMKilled)"
        );
        // Without a finishing time from the kubelet, the report's, to the second.
        let report = RunReport {
            ok: true,
            finished: Some(Time(t("2026-01-01T01:00:00.75Z"))),
            ..RunReport::default()
        };
        let runs = runs_from_pods(&[pod(
            serde_json::json!({"exitCode": 0, "message": report.to_message()}),
        )]);
        assert_eq!(runs[0].finished, t("2026-01-01T01:00:00Z"));
        assert!(runs[0].report.ok);
    }

    #[test]
    fn the_newest_failed_run_is_recorded_and_older_ones_are_no_news() {
        let mut b = backup();
        let runs = [
            failed("2026-01-01T02:00:00Z"),
            ok("2026-01-01T02:30:00Z", 1, 1),
            failed("2026-01-01T03:00:00Z"),
        ];
        assert_eq!(new_failures(None, &runs).len(), 2);
        let c = compute(&b, &runs, &facts("2026-01-01T03:00:10Z"));
        let last = c.status.last_failed_run.clone().unwrap();
        assert_eq!(
            (last.pod.as_str(), last.finished_at.0),
            ("pod-2026-01-01T03:00:00Z", t("2026-01-01T03:00:00Z"))
        );
        assert_eq!(last.message, "no endpoint gave a snapshot");
        assert!(new_failures(Some(&last), &runs).is_empty());
        // Once recorded, the older pods going away changes nothing.
        b.status = Some(c.status.clone());
        let again = compute(&b, &runs[2..], &facts("2026-01-01T03:00:20Z"));
        assert_eq!(again.status.last_failed_run, Some(last));
    }
}
