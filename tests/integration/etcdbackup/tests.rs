use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use homelab_api::EtcdBackup;
use homelab_api::conditions::{reasons, types};
use homelab_api::etcdbackup::BackupRecord;
use homelab_etcdbackup::etcd::{self, KvClient, pb};
use homelab_etcdbackup::policy::{
    HOST_PATH_NOT_ALLOWED, HOST_PATHS_VALUE, NAMESPACE_NOT_ALLOWED, NAMESPACES_VALUE,
};
use homelab_etcdbackup::store::{S3Settings, Store, Target};
use homelab_test_support::{
    TestNamespace, poll_until, wait_for, wait_for_event_reasons, wait_until,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, PostParams};
use serde_json::json;

use super::peers::{self, Etcd, S3Server, TempDir, Tools};
use super::*;

fn is(eb: &EtcdBackup, type_: &str, status: &str, reason: &str) -> bool {
    condition(eb, type_) == Some((status.to_owned(), reason.to_owned()))
}

/// The runner's environment as in the pod, plus a PATH on which `etcdutl` is found
/// (the image would carry it for trial restores).
fn with_path(env: Vec<(String, String)>, tools: &Tools) -> Vec<(String, String)> {
    let mut env = env;
    let path = format!(
        "{}:{}",
        tools.etcd.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    env.push(("PATH".into(), path));
    env
}

fn cluster_source(etcd: &peers::ClusterEtcd) -> serde_json::Value {
    json!({
        "distribution": "Custom",
        "endpoints": [etcd.endpoint],
        "tls": {"hostPath": {
            "caFile": etcd.ca, "certFile": etcd.cert, "keyFile": etcd.key,
        }},
    })
}

/// Waits for the wall clock's next second: backups are named by the second.
async fn next_second() {
    let now = jiff::Timestamp::now().as_second();
    poll_until(
        "the wall clock's next second",
        Duration::from_secs(2),
        Duration::from_millis(50),
        || async move {
            let second = jiff::Timestamp::now().as_second();
            if second == now { Err(second) } else { Ok(()) }
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_snapshot_of_the_clusters_etcd_restores_with_etcdutl() {
    let (_client, ns, _running) = setup("etcdbak-restore").await;
    let tools = peers::tools();
    let etcd = peers::cluster_etcd();
    let dir = TempDir::new("etcdbak-restore");
    let prefix = format!("/homelab-tests/{}/", ns.name());
    for i in 0..5 {
        etcd.etcdctl(
            &tools,
            &["put", &format!("{prefix}key-{i}"), &format!("value-{i}")],
        );
    }
    let dest = dir.path().join("backups");
    apply(
        &ns,
        "cluster",
        json!({
            "schedule": "0 * * * *",
            "source": cluster_source(&etcd),
            "destination": {"hostPath": {"path": dest}},
            "retention": {"keepLast": 3},
            "verification": {"trialRestore": true},
        }),
    )
    .await;
    let cj = cronjob(&ns, "cluster", |_| true).await;
    let pod = cj
        .spec
        .job_template
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .clone()
        .unwrap();
    // On a control-plane node, beside its etcd, with no API token.
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let on_control_plane = pod
        .affinity
        .and_then(|a| a.node_affinity)
        .and_then(|n| n.required_during_scheduling_ignored_during_execution)
        .is_some_and(|s| {
            s.node_selector_terms.iter().all(|t| {
                t.match_expressions.iter().flatten().any(|e| {
                    e.key == "node-role.kubernetes.io/control-plane" && e.operator == "Exists"
                })
            })
        });
    assert!(on_control_plane, "not held to control-plane nodes");
    assert!(
        pod.tolerations
            .unwrap()
            .iter()
            .any(|t| t.key.as_deref() == Some("node-role.kubernetes.io/control-plane"))
    );

    let report_file = dir.path().join("report");
    let args = local_args(&cj, dir.path(), &report_file);
    let env = with_path(local_env(&ns, &cj).await, &tools);
    let (ok, report) = run_runner(&args, &env, &report_file);
    assert!(ok, "{report:?}");
    let backup = report.backup.clone().unwrap();
    println!(
        "backup {} ({} bytes, revision {:?})",
        backup.location, backup.size_bytes, backup.revision
    );
    // Without etcdutl (the project's image has none) the trial restore reads every
    // bucket instead, and the backup still counts.
    next_second().await;
    let mut bare = local_env(&ns, &cj).await;
    bare.push(("PATH".into(), "/usr/bin:/bin".into()));
    let (ok, without) = run_runner(&args, &bare, &report_file);
    assert!(ok, "{without:?}");
    assert_eq!(without.recent.len(), 2);

    deliver(&ns, "cluster", "cluster-run-1", true, &report).await;
    let eb = wait_for(&ns.api::<EtcdBackup>(), "cluster", WAIT, |eb| {
        is(eb, types::READY, "True", reasons::BACKUP_SUCCEEDED)
    })
    .await
    .unwrap();
    let status = eb.status.unwrap();
    assert_eq!(status.last_successful_backup.as_ref(), Some(&backup));
    assert!(status.next_scheduled_time.is_some());
    assert!(status.restore_command.unwrap().contains(&backup.location));
    let members = status.etcd.unwrap();
    assert_eq!((members.member_count, members.healthy_members), (1, 1));
    assert!(members.leader.is_some());
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == types::QUORUM_AT_RISK && c.status == "False")
    );

    // Restore the file with the real etcdutl into a fresh data dir, start an etcd
    // on it, and read the keys back.
    let raw = dir.path().join("restore.db");
    peers::unzstd(std::path::Path::new(&backup.location), &raw);
    let data = dir.path().join("restored");
    let peer = peers::free_port();
    let out = Command::new(tools.etcd.join("etcdutl"))
        .args(["snapshot", "restore"])
        .arg(&raw)
        .arg(format!("--data-dir={}", data.display()))
        .args([
            "--name=restored",
            &format!("--initial-cluster=restored=http://127.0.0.1:{peer}"),
        ])
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcdutl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = Etcd::start(&tools, &data, "restored", peer);
    let values = restored.etcdctl(&tools, &["get", "--prefix", &prefix, "--print-value-only"]);
    let values: Vec<&str> = values.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        values,
        (0..5).map(|i| format!("value-{i}")).collect::<Vec<_>>()
    );
    etcd.etcdctl(&tools, &["del", "--prefix", &prefix]);
}

fn s3_settings(s3: &S3Server) -> S3Settings {
    S3Settings {
        bucket: "backups".into(),
        endpoint: Some(s3.endpoint.clone()),
        region: "us-east-1".into(),
        prefix: "etcd/".into(),
        path_style: true,
        ca_file: None,
        access_key_id: peers::S3_ACCESS_KEY.into(),
        secret_access_key: peers::S3_SECRET_KEY.into(),
    }
}

async fn s3_keys(store: &Store) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list("offsite-")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    keys
}

/// Loads about `mib` MiB of poorly compressible values into `etcd`.
async fn load(endpoint: &str, mib: usize) {
    let mut kv = KvClient::new(etcd::channel(endpoint, None).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..mib {
        let value: Vec<u8> = (0..(1 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        kv.put(pb::PutRequest {
            key: format!("/load/{i:06}").into_bytes(),
            value,
            lease: 0,
        })
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn s3_upload_list_prune_and_an_upload_killed_halfway() {
    let (_client, ns, _running) = setup("etcdbak-s3").await;
    let tools = peers::tools();
    let etcd = peers::cluster_etcd();
    let dir = TempDir::new("etcdbak-s3");
    let s3 = S3Server::start(&tools, dir.path(), &["backups"]);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "s3"},
        "data": {
            "id": ByteString(peers::S3_ACCESS_KEY.into()),
            "secret": ByteString(peers::S3_SECRET_KEY.into()),
        },
    }))
    .unwrap();
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    apply(
        &ns,
        "offsite",
        json!({
            "schedule": "@daily",
            "source": cluster_source(&etcd),
            "destination": {"s3": {
                "bucket": "backups", "endpoint": s3.endpoint, "prefix": "etcd/",
                "forcePathStyle": true,
                "accessKeyIdSecretRef": {"name": "s3", "key": "id"},
                "secretAccessKeySecretRef": {"name": "s3", "key": "secret"},
            }},
            "retention": {"keepLast": 2},
        }),
    )
    .await;
    let cj = cronjob(&ns, "offsite", |_| true).await;
    let report_file = dir.path().join("report");
    let args = local_args(&cj, dir.path(), &report_file);
    let env = local_env(&ns, &cj).await;
    assert!(
        env.iter()
            .any(|(k, v)| k == "AWS_ACCESS_KEY_ID" && v == peers::S3_ACCESS_KEY)
    );

    let mut reports = Vec::new();
    for _ in 0..3 {
        next_second().await;
        let (ok, report) = run_runner(&args, &env, &report_file);
        assert!(ok, "{report:?}");
        assert!(
            report
                .backup
                .as_ref()
                .unwrap()
                .location
                .starts_with("s3://backups/etcd/offsite-")
        );
        reports.push(report);
    }
    assert_eq!(
        reports[2].pruned, 1,
        "keepLast 2: the third run prunes the first"
    );
    let store = Store::open(&Target::S3(s3_settings(&s3))).unwrap();
    let (good, leftovers) = store.verified("offsite-").await.unwrap();
    let mut kept: Vec<String> = good.iter().map(|s| s.record.location.clone()).collect();
    kept.sort();
    let newest_two: Vec<String> = reports[1..]
        .iter()
        .map(|r| r.backup.clone().unwrap().location)
        .collect();
    assert_eq!(kept, newest_two);
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let before = s3_keys(&store).await;
    assert_eq!(
        before.len(),
        4,
        "two backups and their manifests: {before:?}"
    );

    deliver(&ns, "offsite", "offsite-run-3", true, &reports[2]).await;
    let eb = wait_for(&ns.api::<EtcdBackup>(), "offsite", WAIT, |eb| {
        is(eb, types::READY, "True", reasons::BACKUP_SUCCEEDED)
    })
    .await
    .unwrap();
    assert_eq!(eb.status.unwrap().recent_backups.len(), 2);

    // An upload killed halfway: a throwaway etcd big enough for several parts, the
    // runner killed once it reports progress.
    let big_dir = dir.path().join("big");
    std::fs::create_dir_all(&big_dir).unwrap();
    let big = Etcd::start(&tools, &big_dir.join("data"), "big", peers::free_port());
    load(&big.endpoint, 48).await;
    let mut killed_args = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--endpoints" => {
                it.next();
                killed_args.extend(["--endpoints".to_owned(), big.endpoint.clone()]);
            }
            "--cacert" | "--cert" | "--key" => {
                it.next();
            }
            _ => killed_args.push(a.clone()),
        }
    }
    killed_args.extend(["--compression".to_owned(), "none".to_owned()]);
    next_second().await;
    let mut child = Command::new(peers::runner_binary())
        .args(&killed_args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut saw_progress = false;
    for line in stdout.lines() {
        let line = line.unwrap();
        if line.contains("progress") {
            saw_progress = true;
            break;
        }
        assert!(
            !line.contains("backup verified"),
            "the upload finished before it could be killed"
        );
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(saw_progress, "the runner never reported progress");
    assert_eq!(
        s3_keys(&store).await,
        before,
        "a killed upload must leave nothing under a backup's name"
    );
    let (good, _) = store.verified("offsite-").await.unwrap();
    assert_eq!(good.len(), 2);
}

#[tokio::test]
async fn retention_keeps_the_newest_verified_backup_when_later_runs_fail_and_stale_turns_true() {
    let (_client, ns, running) = setup("etcdbak-stale").await;
    let etcd = peers::cluster_etcd();
    let dir = TempDir::new("etcdbak-stale");
    let dest = dir.path().join("backups");
    let spec = |source: serde_json::Value| {
        json!({
            "schedule": "*/5 * * * *",
            "source": source,
            "destination": {"hostPath": {"path": dest}},
            "retention": {"keepLast": 1},
            "staleAfter": "20s",
        })
    };
    apply(&ns, "ladder", spec(cluster_source(&etcd))).await;
    let cj = cronjob(&ns, "ladder", |_| true).await;
    let report_file = dir.path().join("report");
    let env = local_env(&ns, &cj).await;
    let (ok, good) = run_runner(
        &local_args(&cj, dir.path(), &report_file),
        &env,
        &report_file,
    );
    assert!(ok, "{good:?}");
    deliver(&ns, "ladder", "ladder-run-1", true, &good).await;
    wait_for(&ns.api::<EtcdBackup>(), "ladder", WAIT, |eb| {
        is(eb, types::READY, "True", reasons::BACKUP_SUCCEEDED)
            && is(eb, types::STALE, "False", reasons::BACKUP_SUCCEEDED)
    })
    .await
    .unwrap();

    // etcd goes away (an endpoint nothing listens on): every later run fails.
    let mut source = cluster_source(&etcd);
    let dead = format!("https://127.0.0.1:{}", peers::free_port());
    source["endpoints"] = json!([dead]);
    apply(&ns, "ladder", spec(source)).await;
    let dead_arg = dead.clone();
    let cj = cronjob(&ns, "ladder", move |args| args.contains(&dead_arg)).await;
    for run in 2..=3 {
        next_second().await;
        let (ok, failed) = run_runner(
            &local_args(&cj, dir.path(), &report_file),
            &env,
            &report_file,
        );
        assert!(!ok && !failed.ok, "{failed:?}");
        assert!(
            failed
                .error
                .as_deref()
                .unwrap()
                .contains("no endpoint gave a snapshot"),
            "{failed:?}"
        );
        deliver(&ns, "ladder", &format!("ladder-run-{run}"), false, &failed).await;
    }
    // The one verified backup is still there, with its manifest, keepLast 1 or not.
    let location = good.backup.clone().unwrap().location;
    assert!(std::path::Path::new(&location).is_file());
    assert!(std::path::Path::new(&format!("{location}.json")).is_file());
    let files = std::fs::read_dir(&dest).unwrap().count();
    assert_eq!(files, 2, "nothing but the verified backup and its manifest");

    let eb = wait_for(&ns.api::<EtcdBackup>(), "ladder", WAIT, |eb| {
        is(eb, types::READY, "False", reasons::BACKUP_FAILED)
    })
    .await
    .unwrap();
    assert_eq!(eb.status.unwrap().last_successful_backup, good.backup);
    // Backups stopped: Stale turns true once the verified one is older than 20s.
    let eb = wait_for(&ns.api::<EtcdBackup>(), "ladder", WAIT, |eb| {
        is(eb, types::STALE, "True", reasons::NO_RECENT_BACKUP)
    })
    .await
    .unwrap();
    assert_eq!(eb.status.unwrap().last_successful_backup, good.backup);
    // Stale depends on time alone: the third run's failure may still be counting.
    let metrics = running.metrics.clone();
    let namespace = ns.name().to_owned();
    wait_until("2 failures counted for ladder", WAIT, || {
        metrics.failures(&namespace, "ladder") >= 2
    })
    .await
    .unwrap();
    assert_eq!(running.metrics.failures(ns.name(), "ladder"), 2);
}

#[tokio::test]
async fn a_sqlite_datastore_backed_up_while_written_opens_cleanly() {
    let (_client, ns, _running) = setup("etcdbak-sqlite").await;
    let dir = TempDir::new("etcdbak-sqlite");
    let db_dir = dir.path().join("db");
    std::fs::create_dir_all(&db_dir).unwrap();
    let db = db_dir.join("state.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(
            "CREATE TABLE kine (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, value BLOB)",
        )
        .unwrap();
    }
    let _ = peers::runner_binary();
    // A writer like k3s's: small transactions, one after another, all along.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written, db) = (stop.clone(), written.clone(), db.clone());
        std::thread::spawn(move || {
            let mut conn = rusqlite::Connection::open(&db).unwrap();
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let tx = conn.transaction().unwrap();
                for _ in 0..10 {
                    tx.execute(
                        "INSERT INTO kine (name, value) VALUES (?1, ?2)",
                        rusqlite::params![format!("/registry/key-{i}"), vec![7u8; 512]],
                    )
                    .unwrap();
                    i += 1;
                }
                tx.commit().unwrap();
                written.store(i, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    apply(
        &ns,
        "k3s-sqlite",
        json!({
            "schedule": "@hourly",
            "source": {"distribution": "K3s", "datastore": "SQLite", "sqlitePath": db},
            "destination": {"hostPath": {"path": dir.path().join("backups")}},
        }),
    )
    .await;
    let cj = cronjob(&ns, "k3s-sqlite", |_| true).await;
    let report_file = dir.path().join("report");
    let args = local_args(&cj, dir.path(), &report_file);
    assert!(args.contains(&db.display().to_string()), "{args:?}");
    let env = local_env(&ns, &cj).await;
    poll_until(
        "the writer to commit 2,000 rows",
        WAIT,
        Duration::from_millis(20),
        || async {
            match written.load(Ordering::Relaxed) {
                rows if rows >= 2000 => Ok(()),
                rows => Err(format!("{rows} rows committed")),
            }
        },
    )
    .await
    .unwrap();
    let before = written.load(Ordering::Relaxed);
    let (ok, report) = run_runner(&args, &env, &report_file);
    let after = written.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(ok, "{report:?}");
    let total = written.load(Ordering::Relaxed);
    assert!(
        after > before,
        "the writer kept committing while the backup ran ({before} rows before it, {after} after)"
    );

    let backup = report.backup.clone().unwrap();
    let copy = dir.path().join("copy.db");
    peers::unzstd(std::path::Path::new(&backup.location), &copy);
    let conn =
        rusqlite::Connection::open_with_flags(&copy, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let rows: u64 = conn
        .query_row("SELECT count(*) FROM kine", [], |r| r.get(0))
        .unwrap();
    assert!(
        rows >= 2000 && rows <= total,
        "{rows} rows copied of {total} written"
    );
    assert_eq!(rows % 10, 0, "whole transactions only");
    println!("SQLite: {rows} rows copied while {total} were written in all");

    deliver(&ns, "k3s-sqlite", "k3s-sqlite-run-1", true, &report).await;
    let eb = wait_for(&ns.api::<EtcdBackup>(), "k3s-sqlite", WAIT, |eb| {
        is(eb, types::READY, "True", reasons::BACKUP_SUCCEEDED)
    })
    .await
    .unwrap();
    let status = eb.status.unwrap();
    assert!(status.etcd.is_none());
    assert!(
        !status
            .conditions
            .iter()
            .any(|c| c.type_ == types::QUORUM_AT_RISK)
    );
    assert!(
        status
            .restore_command
            .unwrap()
            .contains("systemctl stop k3s")
    );
}

#[tokio::test]
async fn a_missing_secret_stalls_with_an_event() {
    let (_client, ns, _running) = setup("etcdbak-bad").await;
    apply(
        &ns,
        "talos",
        json!({
            "schedule": "@daily",
            "source": {"distribution": "Talos", "tls": {"secretName": "etcd-client"}},
            "destination": {"hostPath": {"path": std::env::temp_dir().join("etcdbak-bad")}},
        }),
    )
    .await;
    let eb = wait_for(&ns.api::<EtcdBackup>(), "talos", WAIT, |eb| {
        is(eb, types::STALLED, "True", reasons::REFERENCE_NOT_FOUND)
    })
    .await
    .unwrap();
    let ready = eb
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == types::READY)
        .unwrap();
    assert!(
        ready.message.contains("Secret etcd-client key ca.crt"),
        "{}",
        ready.message
    );
    assert!(
        ns.api::<k8s_openapi::api::batch::v1::CronJob>()
            .get_opt("talos-etcd-backup")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_time_zone_taken_out_of_the_spec_leaves_the_cronjob() {
    let (_client, ns, _running) = setup("etcdbak-tz").await;
    let dest = std::env::temp_dir().join("etcdbak-tz");
    let mut spec = kubeadm_to(&dest);
    spec["timeZone"] = json!("Europe/Amsterdam");
    apply(&ns, "nightly", spec).await;
    let zone = |cj: &CronJob| cj.spec.time_zone.clone();
    wait_for(
        &ns.api::<CronJob>(),
        "nightly-etcd-backup",
        WAIT,
        move |cj| zone(cj).as_deref() == Some("Europe/Amsterdam"),
    )
    .await
    .unwrap();
    // The same backup without a time zone: the schedule runs in the
    // controller-manager's zone again, as the user now asks.
    apply(&ns, "nightly", kubeadm_to(&dest)).await;
    let cj = wait_for(
        &ns.api::<CronJob>(),
        "nightly-etcd-backup",
        WAIT,
        move |cj| zone(cj).is_none(),
    )
    .await
    .unwrap();
    assert_eq!(cj.spec.schedule, "@daily");
}

fn message(eb: &EtcdBackup, type_: &str) -> String {
    eb.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Kubeadm's own certificates (allowed without a list), backups under a directory
/// of the test's own.
fn kubeadm_to(dest: &std::path::Path) -> serde_json::Value {
    json!({
        "schedule": "@daily",
        "source": {"distribution": "Kubeadm"},
        "destination": {"hostPath": {"path": dest}},
    })
}

#[tokio::test]
async fn an_etcdbackup_outside_the_allowed_namespaces_gets_no_cronjob_and_no_pod() {
    let client = homelab_test_support::client().await.unwrap();
    homelab_test_support::install_crds(&client).await.unwrap();
    let allowed = TestNamespace::new(&client, "etcdbak-allowed")
        .await
        .unwrap();
    let elsewhere = TestNamespace::new(&client, "etcdbak-elsewhere")
        .await
        .unwrap();
    // The controller sees the other namespace but honours only the first.
    let _running = start(&client, elsewhere.name(), policy(&[allowed.name()]));
    apply(
        &elsewhere,
        "sneaky",
        kubeadm_to(&std::env::temp_dir().join("etcdbak-elsewhere")),
    )
    .await;
    let eb = wait_for(&elsewhere.api::<EtcdBackup>(), "sneaky", WAIT, |eb| {
        is(eb, types::STALLED, "True", NAMESPACE_NOT_ALLOWED)
            && is(eb, types::READY, "False", NAMESPACE_NOT_ALLOWED)
    })
    .await
    .unwrap();
    let said = message(&eb, types::STALLED);
    assert!(
        said.contains(elsewhere.name()) && said.contains(NAMESPACES_VALUE),
        "{said}"
    );
    assert!(
        !said.contains(allowed.name()),
        "names the allowed namespaces: {said}"
    );
    wait_for_event_reasons(&elsewhere, "sneaky", &[NAMESPACE_NOT_ALLOWED], WAIT)
        .await
        .unwrap();
    // Stalled is written before anything is applied: nothing was, nothing runs.
    let nothing: Vec<String> = Vec::new();
    assert_eq!(elsewhere.names::<CronJob>().await.unwrap(), nothing);
    assert_eq!(elsewhere.names::<Job>().await.unwrap(), nothing);
    assert_eq!(
        elsewhere
            .names::<k8s_openapi::api::core::v1::Pod>()
            .await
            .unwrap(),
        nothing
    );
}

#[tokio::test]
async fn a_host_path_outside_the_allowed_prefixes_is_refused_until_the_spec_changes() {
    let (_client, ns, _running) = setup("etcdbak-hostpath").await;
    let dir = TempDir::new("etcdbak-hostpath");
    apply(
        &ns,
        "to-etc",
        kubeadm_to(std::path::Path::new("/etc/etcd-backups")),
    )
    .await;
    let eb = wait_for(&ns.api::<EtcdBackup>(), "to-etc", WAIT, |eb| {
        is(eb, types::STALLED, "True", HOST_PATH_NOT_ALLOWED)
    })
    .await
    .unwrap();
    let said = message(&eb, types::STALLED);
    assert!(
        said.contains("spec.destination.hostPath.path /etc/etcd-backups")
            && said.contains(HOST_PATHS_VALUE),
        "{said}"
    );
    wait_for_event_reasons(&ns, "to-etc", &[HOST_PATH_NOT_ALLOWED], WAIT)
        .await
        .unwrap();
    assert!(
        ns.api::<CronJob>()
            .get_opt("to-etc-etcd-backup")
            .await
            .unwrap()
            .is_none()
    );
    // Pointed at an allowed directory, it is honoured.
    apply(&ns, "to-etc", kubeadm_to(&dir.path().join("backups"))).await;
    cronjob(&ns, "to-etc", |_| true).await;
    wait_for(&ns.api::<EtcdBackup>(), "to-etc", WAIT, |eb| {
        condition(eb, types::STALLED).is_none()
    })
    .await
    .unwrap();
}

fn record(location: &str, at: jiff::Timestamp) -> BackupRecord {
    BackupRecord {
        time: Time(at),
        location: location.to_owned(),
        size_bytes: 1000,
        sha256: "00".repeat(32),
        revision: Some(7),
        duration_millis: Some(10),
    }
}

fn succeeded(backup: BackupRecord) -> RunReport {
    RunReport {
        ok: true,
        recent: vec![backup.clone()],
        backup: Some(backup),
        ..RunReport::default()
    }
}

#[tokio::test]
async fn a_report_counts_only_from_a_pod_of_a_job_of_the_cronjob() {
    let (_client, ns, _running) = setup("etcdbak-forged").await;
    let dir = TempDir::new("etcdbak-forged");
    apply(&ns, "guarded", kubeadm_to(&dir.path().join("backups"))).await;
    cronjob(&ns, "guarded", |_| true).await;
    // Forged reports of backups newer than the real one: were they believed, the
    // status would name them.
    // Whole seconds: a status keeps no more.
    let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap();
    let forged = succeeded(record("/forged/bare.db.zst", now));
    forge_pod(&ns, "guarded", "forged-bare", &forged).await;
    // The controller says so in a Warning Event about the backup.
    let untrusted = |e: &Event| {
        e.reason.as_deref() == Some(homelab_etcdbackup::controller::UNTRUSTED_REPORT)
            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("guarded")
    };
    let events = wait_for_list(&ns.api::<Event>(), &ListParams::default(), WAIT, |all| {
        all.iter().any(|e| {
            untrusted(e)
                && e.note
                    .as_deref()
                    .is_some_and(|n| n.starts_with("ignored pod forged-bare: "))
        })
    })
    .await
    .unwrap();
    println!(
        "{:?}",
        events
            .iter()
            .filter(|e| untrusted(e))
            .filter_map(|e| e.note.as_deref())
            .collect::<Vec<_>>()
    );

    // A Job made by hand with the label: its pod has an owner chain, just not one
    // that leads to the CronJob. Its Event joins the first one's series (Events
    // about one object with one reason fold into a series).
    create_job(&ns, "guarded", "forged-job", None).await;
    let forged_job_pod = job_pod(&ns, "forged-job").await;
    let from_job = succeeded(record("/forged/job.db.zst", now));
    terminate(&ns, &forged_job_pod, true, &from_job).await;
    wait_for_list(&ns.api::<Event>(), &ListParams::default(), WAIT, |all| {
        all.iter()
            .any(|e| untrusted(e) && e.series.as_ref().is_some_and(|s| s.count >= 2))
    })
    .await
    .unwrap();

    // The real run, older than the forgeries, is the one the status shows.
    let real = record(
        &dir.path()
            .join("backups/guarded-real.db.zst")
            .display()
            .to_string(),
        now.checked_sub(jiff::SignedDuration::from_hours(1))
            .unwrap(),
    );
    deliver(
        &ns,
        "guarded",
        "guarded-run-1",
        true,
        &succeeded(real.clone()),
    )
    .await;
    let eb = wait_for(&ns.api::<EtcdBackup>(), "guarded", WAIT, |eb| {
        is(eb, types::READY, "True", reasons::BACKUP_SUCCEEDED)
    })
    .await
    .unwrap();
    let status = eb.status.unwrap();
    assert_eq!(status.last_successful_backup, Some(real.clone()));
    assert_eq!(status.recent_backups, [real]);
    assert!(!status.restore_command.unwrap().contains("/forged/"));
}

#[tokio::test]
async fn a_missing_claim_is_reported_before_the_first_run_and_recovers_when_it_appears() {
    let (_client, ns, _running) = setup("etcdbak-pvc").await;
    apply(
        &ns,
        "to-claim",
        json!({
            "schedule": "@daily",
            "source": {"distribution": "Kubeadm"},
            "destination": {"pvc": {"claimName": "etcd-backups"}},
        }),
    )
    .await;
    let eb = wait_for(&ns.api::<EtcdBackup>(), "to-claim", WAIT, |eb| {
        is(
            eb,
            types::STALLED,
            "True",
            homelab_etcdbackup::controller::DESTINATION_MISSING,
        )
    })
    .await
    .unwrap();
    let said = message(&eb, types::READY);
    assert!(
        said.contains("PersistentVolumeClaim etcd-backups"),
        "{said}"
    );
    wait_for_event_reasons(
        &ns,
        "to-claim",
        &[homelab_etcdbackup::controller::DESTINATION_MISSING],
        WAIT,
    )
    .await
    .unwrap();
    assert!(
        ns.api::<CronJob>()
            .get_opt("to-claim-etcd-backup")
            .await
            .unwrap()
            .is_none()
    );

    // The claim appears: the next look finds it (no spec change wakes it).
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "etcd-backups"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }))
    .unwrap();
    ns.api::<PersistentVolumeClaim>()
        .create(&PostParams::default(), &claim)
        .await
        .unwrap();
    cronjob(&ns, "to-claim", |_| true).await;
    wait_for(&ns.api::<EtcdBackup>(), "to-claim", WAIT, |eb| {
        condition(eb, types::STALLED).is_none()
            && is(eb, types::RECONCILING, "True", reasons::PROGRESSING)
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_restarted_controller_does_not_announce_a_failed_run_again() {
    let (client, ns, running) = setup("etcdbak-restart").await;
    let dir = TempDir::new("etcdbak-restart");
    let spec = kubeadm_to(&dir.path().join("backups"));
    apply(&ns, "again", spec.clone()).await;
    cronjob(&ns, "again", |_| true).await;
    let failure = RunReport {
        ok: false,
        error: Some("no endpoint gave a snapshot".into()),
        ..RunReport::default()
    };
    let pod = deliver(&ns, "again", "again-run-1", false, &failure).await;
    let eb = wait_for(&ns.api::<EtcdBackup>(), "again", WAIT, |eb| {
        eb.status
            .as_ref()
            .is_some_and(|s| s.last_failed_run.is_some())
    })
    .await
    .unwrap();
    let last = eb.status.unwrap().last_failed_run.unwrap();
    assert_eq!(
        (last.pod.as_str(), last.message.as_str()),
        (pod.as_str(), "no endpoint gave a snapshot")
    );
    wait_for_event_reasons(&ns, "again", &[reasons::BACKUP_FAILED], WAIT)
        .await
        .unwrap();

    drop(running);
    let _running = start(&client, ns.name(), policy(&[ns.name()]));
    // Two spec changes the new controller writes: the reconcile that wrote the
    // first said all it had to say before the second one's began.
    for (generation, schedule) in [(2, "@hourly"), (3, "@daily")] {
        let mut changed = spec.clone();
        changed["schedule"] = json!(schedule);
        apply(&ns, "again", changed).await;
        wait_for(&ns.api::<EtcdBackup>(), "again", WAIT, move |eb| {
            eb.status.as_ref().and_then(|s| s.observed_generation) == Some(generation)
        })
        .await
        .unwrap();
    }
    let said: i32 = ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reasons::BACKUP_FAILED)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("again")
        })
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum();
    assert_eq!(
        said, 1,
        "the failed run was announced again after the restart"
    );
}
