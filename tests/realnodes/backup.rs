//! The EtcdBackup runner pod, exactly as the controller (itself a pod of the
//! chart) builds it, runs on the real control-plane node: host network, kubeadm's
//! etcd client certificates from the node's own /etc/kubernetes, the project's
//! image. It snapshots the cluster's own etcd into S3 (versitygw), then into a host
//! directory on the node dressed as each distribution's server (distributions.rs);
//! the status shows the verified backup, and etcdutl restores it.

use std::time::Duration;

use homelab_api::EtcdBackup;
use homelab_etcdbackup::build::cronjob_name;
use homelab_test_support::tools::kubectl;
use homelab_test_support::{TestNamespace, create, wait_for};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::home::{RealHome, WAIT};
use crate::peers::{S3_ACCESS_KEY, S3_SECRET_KEY, S3Server, TempDir, cluster_etcd, tools};

fn ready(eb: &EtcdBackup) -> bool {
    eb.status.as_ref().is_some_and(|s| {
        s.last_successful_backup.is_some()
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

pub(crate) async fn apply(ns: &TestNamespace, name: &str, spec: serde_json::Value) {
    homelab_test_support::apply(&ns.api::<EtcdBackup>(), name, spec)
        .await
        .unwrap();
}

/// Runs the CronJob now, as `kubectl create job --from` does, and waits for the
/// status to show a verified backup from that run.
pub(crate) async fn run_now(ns: &TestNamespace, name: &str) -> EtcdBackup {
    let backup = ns.api::<EtcdBackup>().get(name).await.unwrap();
    let cronjob = cronjob_name(&backup);
    wait_for(&ns.api::<CronJob>(), &cronjob, WAIT, |_| true)
        .await
        .unwrap();
    kubectl(&[
        "create",
        "job",
        "-n",
        ns.name(),
        &format!("{name}-now"),
        &format!("--from=cronjob/{cronjob}"),
    ])
    .unwrap();
    wait_for(
        &ns.api::<EtcdBackup>(),
        name,
        Duration::from_secs(240),
        ready,
    )
    .await
    .unwrap_or_else(|e| {
        let pods = kubectl(&["get", "pods", "-o", "wide", "-n", ns.name()]).unwrap_or_default();
        let logs =
            kubectl(&["logs", "-n", ns.name(), &format!("job/{name}-now")]).unwrap_or_default();
        panic!("{e}\n{pods}\n{logs}")
    })
}

#[tokio::test]
async fn the_runner_pod_backs_up_the_clusters_etcd_from_the_control_plane_node() {
    let _one = crate::exclusive().await;
    let home = RealHome::install(
        "rn-backup",
        &[
            "mediaServer.enabled=false",
            "usbDevicePin.enabled=false",
            "sensorGateway.enabled=false",
            "nodeAgent.enabled=false",
            // The administrator's allow-list for the local backup below.
            "etcdBackup.allowedHostPaths={/var/lib/homelab-e2e/backups}",
        ],
    )
    .await;
    // The runner needs the host's network and files: a namespace the administrator
    // set aside for it (the operators' own enforces "restricted").
    let runs = &home.ns;
    let privileged =
        json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}});
    Api::<Namespace>::all(home.client.clone())
        .patch(
            runs.name(),
            &PatchParams::default(),
            &Patch::Merge(&privileged),
        )
        .await
        .unwrap();

    let tools = tools();
    let dir = TempDir::new("rn-s3");
    let s3 = S3Server::start(&tools, dir.path(), &["backups"]);
    create(
        &runs.api::<Secret>(),
        json!({
            "metadata": {"name": "s3"},
            "stringData": {"id": S3_ACCESS_KEY, "secret": S3_SECRET_KEY},
        }),
    )
    .await
    .unwrap();
    let marker = format!("/homelab-tests/{}/marker", runs.name());
    let etcd = cluster_etcd();
    etcd.etcdctl(&tools, &["put", &marker, "before the backup"]);
    let written: serde_json::Value =
        serde_json::from_str(&etcd.etcdctl(&tools, &["get", &marker, "-w", "json"])).unwrap();
    let written_at = written["kvs"][0]["mod_revision"].as_i64().unwrap();

    apply(
        runs,
        "offsite",
        json!({
            // A time zone: the image has no /usr/share/zoneinfo of its own.
            "schedule": "30 3 * * *",
            "timeZone": "Europe/Amsterdam",
            "source": {"distribution": "Kubeadm"},
            "destination": {"s3": {
                "bucket": "backups", "endpoint": s3.endpoint, "prefix": "etcd/",
                "forcePathStyle": true,
                "accessKeyIdSecretRef": {"name": "s3", "key": "id"},
                "secretAccessKeySecretRef": {"name": "s3", "key": "secret"},
            }},
            "verification": {"trialRestore": true},
        }),
    )
    .await;
    let offsite = run_now(runs, "offsite").await;
    let record = last_backup(&offsite);
    println!(
        "S3 backup by the runner pod: {} ({} bytes, revision {:?}, {:?} ms)",
        record.location, record.size_bytes, record.revision, record.duration_millis
    );
    assert!(record.location.contains("backups"), "{record:?}");
    assert!(
        record.revision.unwrap_or(0) >= written_at,
        "the backup predates the marker: {record:?}"
    );
    // The image's own etcdutl did the trial restore.
    let log = kubectl(&["logs", "-n", runs.name(), "job/offsite-now"]).unwrap();
    assert!(
        log.contains("etcdutl restored the snapshot"),
        "no trial restore with etcdutl: {log}"
    );
    let objects: Vec<_> = walk(&dir.path().join("buckets/backups"));
    assert!(
        objects.iter().any(|o| o.ends_with(".zst")),
        "no object in the bucket: {objects:?}"
    );

    // A host directory on the control-plane node, dressed in turn as the server
    // of each distribution the API names.
    crate::distributions::back_up_on_each(runs).await;
    drop(home);
}

pub(crate) fn last_backup(eb: &EtcdBackup) -> homelab_api::etcdbackup::BackupRecord {
    eb.status
        .as_ref()
        .and_then(|s| s.last_successful_backup.clone())
        .unwrap()
}

pub(crate) fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.to_string_lossy().into_owned());
        }
    }
    out
}
