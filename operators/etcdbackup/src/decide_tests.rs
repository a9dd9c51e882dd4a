#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use super::*;
use crate::caches::Cluster;
use crate::policy::{NAMESPACE_NOT_ALLOWED, Policy};
use crate::report::RunReport;
use crate::status::tests::{record, t};
use homelab_api::ConditionedStatus;
use homelab_api::etcdbackup::{EtcdBackupSpec, FailedRun};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde_json::json;

const NOW: &str = "2026-01-01T01:00:30Z";

fn backup(spec: serde_json::Value) -> EtcdBackup {
    let spec: EtcdBackupSpec = serde_json::from_value(spec).unwrap();
    let mut b = EtcdBackup::new("cluster", spec);
    b.metadata.namespace = Some("homelab".into());
    b.metadata.uid = Some("eb-uid".into());
    b.metadata.generation = Some(1);
    b.metadata.creation_timestamp = Some(Time(t("2026-01-01T00:00:00Z")));
    b
}

fn hourly() -> EtcdBackup {
    backup(json!({
        "schedule": "@hourly",
        "source": {"distribution": "Kubeadm"},
        "destination": {"hostPath": {"path": "/var/backups"}},
    }))
}

fn owned(kind: &str, name: &str, uid: &str) -> Option<Vec<OwnerReference>> {
    Some(vec![OwnerReference {
        api_version: if kind == "EtcdBackup" {
            "homelab.home.arpa/v1alpha1".into()
        } else {
            "batch/v1".into()
        },
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }])
}

/// The backup's CronJob with Jobs `runs`, each with one pod that ended with the
/// report of the same index, at the given second; and `forged` labelled pods
/// without an owner.
fn cluster(runs: &[(&str, &str, RunReport)], forged: &[&str]) -> Cluster {
    let cronjob = CronJob {
        metadata: ObjectMeta {
            name: Some("cluster-etcd-backup".into()),
            namespace: Some("homelab".into()),
            uid: Some("cj-uid".into()),
            owner_references: owned("EtcdBackup", "cluster", "eb-uid"),
            ..ObjectMeta::default()
        },
        ..CronJob::default()
    };
    let jobs = runs
        .iter()
        .map(|(job, _, _)| ObjectMeta {
            name: Some((*job).into()),
            uid: Some(format!("{job}-uid")),
            owner_references: owned("CronJob", "cluster-etcd-backup", "cj-uid"),
            ..ObjectMeta::default()
        })
        .collect();
    let pod = |name: &str, owners, ended: Option<(&str, &RunReport)>| -> Pod {
        let state = ended.map(|(at, report)| {
            json!({"terminated": {"exitCode": i32::from(!report.ok),
                                  "message": report.to_message(), "finishedAt": at}})
        });
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "homelab",
                         "labels": {BACKUP_LABEL: "cluster"}, "ownerReferences": owners},
            "status": {"containerStatuses": [{"name": "snapshot", "image": "", "imageID": "",
                                              "ready": false, "restartCount": 0, "state": state}]},
        }))
        .unwrap()
    };
    let mut pods: Vec<Pod> = runs
        .iter()
        .map(|(job, at, report)| {
            pod(
                &format!("{job}-x"),
                owned("Job", job, &format!("{job}-uid")),
                Some((at, report)),
            )
        })
        .collect();
    pods.extend(forged.iter().map(|name| pod(name, None, None)));
    Cluster {
        cronjob: Some(cronjob),
        jobs,
        pods,
    }
}

fn observed(cluster: Cluster) -> Observed {
    Observed {
        admitted: Ok(()),
        secrets: BTreeMap::new(),
        claim_exists: true,
        cluster,
    }
}

fn succeeded(at: &str) -> RunReport {
    RunReport {
        ok: true,
        backup: Some(record(at)),
        recent: vec![record(at)],
        ..RunReport::default()
    }
}

fn failed(error: &str) -> RunReport {
    RunReport {
        ok: false,
        error: Some(error.into()),
        ..RunReport::default()
    }
}

fn run_of(decision: Decision) -> Run {
    match decision {
        Decision::Run(run) => run,
        Decision::Refuse(refusal) => panic!("refused: {:?}", refusal.problem),
    }
}

fn refusal_of(decision: Decision) -> Refusal {
    match decision {
        Decision::Refuse(refusal) => refusal,
        Decision::Run(run) => panic!("ran: {:?}", run.notes),
    }
}

fn reasons_of(notes: &[Note]) -> Vec<&str> {
    notes.iter().map(|n| n.reason).collect()
}

/// The backup as the next reconcile reads it: with the status just decided.
fn written(mut eb: EtcdBackup, run: &Run) -> EtcdBackup {
    eb.status = Some(run.status.clone());
    eb
}

#[test]
fn a_backup_outside_the_allowed_namespaces_is_refused_first() {
    let eb = hourly();
    let mut seen = observed(cluster(&[], &[]));
    seen.admitted = Policy::only("elsewhere").admit(&eb);
    // Even with a Secret missing: where it is honoured is what to fix first.
    seen.claim_exists = false;
    let refusal = refusal_of(decide(&eb, &seen, t(NOW)));
    assert_eq!(refusal.problem.reason, NAMESPACE_NOT_ALLOWED);
    assert!(refusal.warn);
    assert_eq!(refusal.retry, Duration::from_secs(300));
    assert!(refusal.status.is_condition_true(types::STALLED));
    let ready = refusal.status.condition(types::READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", NAMESPACE_NOT_ALLOWED)
    );
    // Once the status says it, it is no news.
    let mut eb = eb;
    eb.status = Some(refusal.status);
    assert!(!refusal_of(decide(&eb, &seen, t(NOW))).warn);
}

#[test]
fn an_invalid_spec_is_refused_until_its_spec_changes() {
    let mut eb = hourly();
    eb.spec.schedule = "0 0 30 2 *".into();
    let refusal = refusal_of(decide(&eb, &observed(cluster(&[], &[])), t(NOW)));
    assert_eq!(refusal.problem.reason, reasons::INVALID_SPEC);
    assert_eq!(refusal.retry, Duration::from_secs(300));
}

#[test]
fn a_missing_secret_key_is_looked_at_again_soon() {
    let eb = backup(json!({
        "schedule": "@daily",
        "source": {"distribution": "Talos", "tls": {"secretName": "etcd-client"}},
        "destination": {"hostPath": {"path": "/var/backups"}},
    }));
    let mut seen = observed(cluster(&[], &[]));
    seen.secrets.insert(
        "etcd-client".into(),
        Some(BTreeSet::from(["ca.crt".to_owned(), "tls.crt".to_owned()])),
    );
    let refusal = refusal_of(decide(&eb, &seen, t(NOW)));
    assert_eq!(refusal.problem.reason, reasons::REFERENCE_NOT_FOUND);
    assert!(
        refusal
            .problem
            .message
            .ends_with("Secret etcd-client key tls.key"),
        "{}",
        refusal.problem.message
    );
    assert_eq!(refusal.retry, Duration::from_secs(30));
}

#[test]
fn a_missing_claim_is_looked_at_again_soon() {
    let eb = backup(json!({
        "schedule": "@hourly",
        "source": {"distribution": "Kubeadm"},
        "destination": {"pvc": {"claimName": "etcd-backups"}},
    }));
    let mut seen = observed(cluster(&[], &[]));
    seen.claim_exists = false;
    let refusal = refusal_of(decide(&eb, &seen, t(NOW)));
    assert_eq!(refusal.problem.reason, DESTINATION_MISSING);
    assert_eq!(refusal.retry, Duration::from_secs(30));
    seen.claim_exists = true;
    run_of(decide(&eb, &seen, t(NOW)));
}

#[test]
fn before_any_run_it_waits_for_the_next_one() {
    let run = run_of(decide(&hourly(), &observed(cluster(&[], &[])), t(NOW)));
    assert!(run.notes.is_empty());
    assert_eq!(run.new_failures, 0);
    assert!(run.status.is_condition_true(types::RECONCILING));
    assert_eq!(
        run.status.next_scheduled_time,
        Some(Time(t("2026-01-01T02:00:00Z")))
    );
    // The next run at 02:00 is due before Stale turns (at 02:00 too, plus a
    // second) and before the resync.
    assert_eq!(run.wake_in, Some(Duration::from_secs(59 * 60 + 30 + 1)));
    assert_eq!(
        run.next_look(Duration::from_secs(600)),
        Duration::from_secs(600)
    );
    assert_eq!(
        run.next_look(Duration::from_secs(7200)),
        Duration::from_secs(3571)
    );
}

#[test]
fn a_verified_backup_is_announced_once() {
    let eb = hourly();
    let runs = [(
        "cluster-run-1",
        "2026-01-01T01:00:10Z",
        succeeded("2026-01-01T01:00:05Z"),
    )];
    let seen = observed(cluster(&runs, &[]));
    let run = run_of(decide(&eb, &seen, t(NOW)));
    assert_eq!(reasons_of(&run.notes), [reasons::BACKUP_SUCCEEDED]);
    assert!(run.status.is_condition_true(types::READY));
    let again = run_of(decide(&written(eb, &run), &seen, t(NOW)));
    assert!(again.notes.is_empty());
    assert_eq!(again.status, run.status);
}

#[test]
fn a_failed_run_is_announced_and_counted_once_even_by_a_restarted_controller() {
    let eb = hourly();
    let first = [(
        "cluster-run-1",
        "2026-01-01T01:00:10Z",
        failed("no endpoint gave a snapshot"),
    )];
    let run = run_of(decide(&eb, &observed(cluster(&first, &[])), t(NOW)));
    assert_eq!(reasons_of(&run.notes), [reasons::BACKUP_FAILED]);
    assert_eq!(
        run.notes[0].message,
        "backup run cluster-run-1-x failed: no endpoint gave a snapshot"
    );
    assert_eq!(run.new_failures, 1);
    assert_eq!(
        run.status.last_failed_run,
        Some(FailedRun {
            pod: "cluster-run-1-x".into(),
            finished_at: Time(t("2026-01-01T01:00:10Z")),
            message: "no endpoint gave a snapshot".into(),
        })
    );
    // What a controller knows after a restart is the status: the same run is no
    // news to it.
    let eb = written(eb, &run);
    let again = run_of(decide(&eb, &observed(cluster(&first, &[])), t(NOW)));
    assert!(again.notes.is_empty());
    assert_eq!(again.new_failures, 0);
    // Two more, seen at once: both are news, the newest is recorded.
    let mut three = first.to_vec();
    three.push(("cluster-run-2", "2026-01-01T01:05:10Z", failed("second")));
    three.push(("cluster-run-3", "2026-01-01T01:10:10Z", failed("third")));
    let later = run_of(decide(
        &eb,
        &observed(cluster(&three, &[])),
        t("2026-01-01T01:10:30Z"),
    ));
    assert_eq!(later.new_failures, 2);
    assert_eq!(
        later
            .notes
            .iter()
            .filter(|n| n.reason == reasons::BACKUP_FAILED)
            .count(),
        2
    );
    assert_eq!(
        later
            .status
            .last_failed_run
            .as_ref()
            .map(|f| f.pod.as_str()),
        Some("cluster-run-3-x")
    );
}

#[test]
fn stale_turning_true_is_announced_once() {
    let mut eb = hourly();
    eb.spec.stale_after = Some(serde_json::from_value(json!("20s")).unwrap());
    let runs = [(
        "cluster-run-1",
        "2026-01-01T01:00:00Z",
        succeeded("2026-01-01T01:00:00Z"),
    )];
    let seen = observed(cluster(&runs, &[]));
    let fresh = run_of(decide(&eb, &seen, t("2026-01-01T01:00:05Z")));
    assert!(!status::is_stale(&fresh.status));
    // Stale turns at 01:00:20: look again a second after.
    assert_eq!(fresh.wake_in, Some(Duration::from_secs(16)));
    let eb = written(eb, &fresh);
    let stale = run_of(decide(&eb, &seen, t(NOW)));
    assert_eq!(reasons_of(&stale.notes), [reasons::NO_RECENT_BACKUP]);
    let eb = written(eb, &stale);
    assert!(run_of(decide(&eb, &seen, t(NOW))).notes.is_empty());
}

#[test]
fn a_pod_that_is_no_run_is_ignored_and_announced_once() {
    let eb = hourly();
    let forged_report = succeeded("2026-01-01T01:00:20Z");
    let mut forged = cluster(&[], &["forged-bare"]);
    // It ended claiming a backup: believed, the status would name it.
    forged.pods[0] = {
        let mut c = cluster(&[("x", "2026-01-01T01:00:20Z", forged_report)], &[]);
        let mut pod = c.pods.remove(0);
        pod.metadata.name = Some("forged-bare".into());
        pod.metadata.owner_references = None;
        pod
    };
    let run = run_of(decide(&eb, &observed(forged.clone()), t(NOW)));
    assert_eq!(reasons_of(&run.notes), [UNTRUSTED_REPORT]);
    assert!(
        run.notes[0].message.starts_with(
            "ignored pod forged-bare: it carries the label homelab.home.arpa/etcdbackup=cluster but is no run of CronJob cluster-etcd-backup: "
        ),
        "{}",
        run.notes[0].message
    );
    assert!(run.status.last_successful_backup.is_none());
    assert_eq!(
        run.status.ignored_pods,
        [IgnoredPod {
            pod: "forged-bare".into(),
            reason: Distrust::NoController.to_string(),
        }]
    );
    let eb = written(eb, &run);
    let again = run_of(decide(&eb, &observed(forged), t(NOW)));
    assert!(again.notes.is_empty());
    // Gone, it leaves the list.
    let gone = run_of(decide(&eb, &observed(cluster(&[], &[])), t(NOW)));
    assert!(gone.status.ignored_pods.is_empty());
}

#[test]
fn a_pod_whose_job_is_merely_gone_is_no_news() {
    let eb = hourly();
    let runs = [(
        "cluster-run-1",
        "2026-01-01T01:00:10Z",
        succeeded("2026-01-01T01:00:05Z"),
    )];
    let mut seen = cluster(&runs, &[]);
    seen.jobs.clear();
    let run = run_of(decide(&eb, &observed(seen), t(NOW)));
    assert!(run.notes.is_empty());
    assert!(run.status.ignored_pods.is_empty());
    assert!(run.status.last_successful_backup.is_none());
}

#[test]
fn the_ignored_pods_listed_are_few_and_those_listed_stay() {
    let eb = hourly();
    let names: Vec<String> = (0..MAX_IGNORED_PODS + 5)
        .map(|i| format!("forged-{i:02}"))
        .collect();
    let later: Vec<&str> = names.iter().map(String::as_str).collect();
    let run = run_of(decide(&eb, &observed(cluster(&[], &later[5..])), t(NOW)));
    assert_eq!(run.status.ignored_pods.len(), MAX_IGNORED_PODS);
    assert_eq!(run.notes.len(), MAX_IGNORED_PODS);
    // Pods that sort first arrive: those listed keep their place, and the newcomers
    // wait for room.
    let eb = written(eb, &run);
    let all = run_of(decide(&eb, &observed(cluster(&[], &later)), t(NOW)));
    assert!(all.notes.is_empty());
    assert_eq!(all.status.ignored_pods, run.status.ignored_pods);
}
