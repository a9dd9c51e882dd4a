//! The backup on the control-plane node of each distribution the EtcdBackup API
//! names, as e2e/lib/distributions.sh dresses cp-1: the runner pod schedules
//! whatever value the role label carries and whether or not the node is tainted,
//! finds the datastore where that distribution keeps it (or, on Talos, its
//! certificate in a Secret), and leaves a backup that restores; Stale stays False.

use std::path::Path;

use homelab_api::EtcdBackup;
use homelab_test_support::Cluster;
use homelab_test_support::tools::kubectl;
use homelab_test_support::{TestNamespace, create};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::ListParams;
use serde_json::{Value, json};

use crate::backup::{apply, last_backup, run_now, walk};
use crate::home::{CONTROL_PLANE, node_dir};
use crate::peers::{TempDir, cluster_etcd, tools, unzstd};

/// Where the backups go on the node (the administrator's allow-list covers it).
const ON_NODE: &str = "/var/lib/homelab-e2e/backups";
/// The Talos EtcdBackup's client certificate (talosctl hands one out).
const TALOS_SECRET: &str = "talos-etcd";

enum Datastore {
    Etcd,
    Sqlite,
}

/// The dressing (e2e/cluster distribution NAME) and the source that backs it up.
fn topologies() -> [(&'static str, Value, Datastore); 4] {
    [
        ("k3s", json!({"distribution": "K3s"}), Datastore::Etcd),
        (
            "k3s-sqlite",
            json!({"distribution": "K3s", "datastore": "SQLite"}),
            Datastore::Sqlite,
        ),
        (
            "talos",
            json!({"distribution": "Talos", "tls": {"secretName": TALOS_SECRET}}),
            Datastore::Etcd,
        ),
        (
            "kubeadm",
            json!({"distribution": "Kubeadm"}),
            Datastore::Etcd,
        ),
    ]
}

/// Leaves the node a kubeadm server again, however the scenario ends.
struct Undress;

impl Drop for Undress {
    fn drop(&mut self) {
        if let Err(e) = Cluster::default().dress_control_plane("kubeadm") {
            eprintln!("could not dress {CONTROL_PLANE} as kubeadm again: {e}");
        }
    }
}

pub async fn back_up_on_each(runs: &TestNamespace) {
    let _undress = Undress;
    talos_client_certificate(runs).await;
    let scratch = TempDir::new("rn-distributions");
    for (distribution, source, datastore) in topologies() {
        Cluster::default()
            .dress_control_plane(distribution)
            .unwrap();
        let name = format!("on-{distribution}");
        apply(
            runs,
            &name,
            json!({
                "schedule": "@daily",
                "source": source,
                "destination": {"hostPath": {"path": format!("{ON_NODE}/{distribution}"), "node": CONTROL_PLANE}},
            }),
        )
        .await;
        let backup = run_now(runs, &name).await;
        let node = runner_node(runs, &name).await;
        assert_eq!(
            node, CONTROL_PLANE,
            "{distribution}: the runner ran elsewhere"
        );
        assert_condition(&backup, "Stale", "False", distribution);
        let record = last_backup(&backup);
        let dir = node_dir(CONTROL_PLANE)
            .join("e2e/backups")
            .join(distribution);
        let file = walk(&dir)
            .into_iter()
            .find(|f| f.ends_with(".zst"))
            .unwrap_or_else(|| panic!("{distribution}: no backup file in {}", dir.display()));
        let restored = match datastore {
            Datastore::Etcd => restores_with_etcdutl(Path::new(&file), scratch.path()),
            Datastore::Sqlite => opens_as_kine(Path::new(&file), scratch.path()),
        };
        println!(
            "{distribution}: runner on {node}, {} ({} bytes), Stale=False, {restored}",
            record.location, record.size_bytes
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The client certificate a person gets from talosctl, in a Secret.
async fn talos_client_certificate(runs: &TestNamespace) {
    let etcd = cluster_etcd();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    create(&runs.api::<Secret>(), json!({
        "metadata": {"name": TALOS_SECRET},
        "stringData": {"ca.crt": read(&etcd.ca), "tls.crt": read(&etcd.cert), "tls.key": read(&etcd.key)},
    }))
    .await
    .unwrap();
}

/// The node the run's pod was scheduled to.
async fn runner_node(runs: &TestNamespace, name: &str) -> String {
    let pods = runs
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("job-name={name}-now")))
        .await
        .unwrap();
    pods.items
        .iter()
        .find_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .unwrap_or_else(|| {
            let all =
                kubectl(&["get", "pods", "-o", "wide", "-n", runs.name()]).unwrap_or_default();
            panic!("no pod of job {name}-now was scheduled:\n{all}")
        })
}

fn assert_condition(backup: &EtcdBackup, type_: &str, status: &str, distribution: &str) {
    let conditions = backup
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == status),
        "{distribution}: {type_} is not {status}: {conditions:?}"
    );
}

fn restores_with_etcdutl(file: &Path, scratch: &Path) -> String {
    let db = scratch.join("snapshot.db");
    let restored = scratch.join("restored");
    let _ = std::fs::remove_dir_all(&restored);
    unzstd(file, &db);
    let out = std::process::Command::new(tools().etcd.join("etcdutl"))
        .args(["snapshot", "restore"])
        .arg(&db)
        .arg("--data-dir")
        .arg(&restored)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcdutl snapshot restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(restored.join("member/snap/db").exists());
    "etcdutl restored it".to_owned()
}

/// The backup is the node's kine database: the rows e2e/lib/distributions.sh wrote.
fn opens_as_kine(file: &Path, scratch: &Path) -> String {
    let db = scratch.join("state.db");
    unzstd(file, &db);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: i64 = conn
        .query_row(
            "SELECT count(*) FROM kine WHERE name LIKE '/registry/%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 3, "the backup is not the node's kine database");
    format!("SQLite opens with its {rows} kine rows")
}
