//! Node-loss failover with the MediaServer controller running in-process, against
//! Kubernetes' own behaviour in the same run: a node loses power under a MediaServer
//! on a disk attached to one node at a time, one whose config claim is an NFS
//! share (two nodes could write it: it waits for a fence), a MediaServer with a
//! node-local library, and a plain Recreate Deployment with Kubernetes' default
//! tolerations, all on the same node.
//!
//! Kubernetes alone needs the node-monitor grace (50 s by default) plus the default
//! 300 s toleration; waiting for that is a benchmark, not a test, so the plain
//! Deployment's figure is only measured with `HOMELAB_BENCH=1`.

use homelab_kit::Operator as _;
use std::time::{Duration, Instant};

use homelab_api::conditions::{reasons, types};
use homelab_api::{ConditionedStatus, MediaServer};
use homelab_kit::failover::fence::SILENT_TAINT;
use homelab_kit::failover::observe::FENCED_BY_ANNOTATION;
use homelab_mediaserver::build::names::SERVER_LABEL;
use homelab_mediaserver::{CONTROLLER_NAME, Controller};
use homelab_test_support::pods::{ready_on as ready_on_node, taint_keys};
use homelab_test_support::storage::{block_claim, nfs_claim};
use homelab_test_support::{
    Cluster, TestNamespace, apply, controller, create, holds_for, poll_until, wait_for,
    wait_for_list,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, Pod};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const LOST: &str = "pi4-2";
const OTHER: &str = "pi4-3";
const SETTLE: Duration = Duration::from_secs(120);

/// Brings the node back when the test ends, pass or fail, and takes off what a
/// controller stopped mid-way may have left on it.
pub(crate) struct RecoverOnDrop(pub(crate) &'static str);

impl Drop for RecoverOnDrop {
    fn drop(&mut self) {
        let cluster = Cluster::default();
        if let Err(e) = cluster.node_recover(self.0) {
            eprintln!("could not recover node {}: {e}", self.0);
        }
        let untaint = format!("{SILENT_TAINT}-");
        let unfence = format!("{}-", homelab_api::failover::OUT_OF_SERVICE_TAINT);
        let unannotate = format!("{FENCED_BY_ANNOTATION}-");
        for args in [
            ["kubectl", "taint", "node", self.0, untaint.as_str()],
            ["kubectl", "taint", "node", self.0, unfence.as_str()],
            ["kubectl", "annotate", "node", self.0, unannotate.as_str()],
        ] {
            // Absent is the usual case: the controller released the node itself.
            let _ = cluster.run(&args);
        }
    }
}

/// Deletes the test's PersistentVolumes (cluster-scoped) when dropped.
struct Volumes(Client, Vec<String>);

impl Drop for Volumes {
    fn drop(&mut self) {
        let (api, names) = (
            Api::<PersistentVolume>::all(self.0.clone()),
            std::mem::take(&mut self.1),
        );
        tokio::spawn(async move {
            for name in names {
                let _ = api.delete(&name, &DeleteParams::default()).await;
            }
        });
    }
}

fn start_controller(ns: &TestNamespace) -> controller::Running {
    let mut settings = controller::settings(CONTROLLER_NAME, ns.name());
    // The node-local library below: an administrator allows that directory.
    settings.allowed_host_paths =
        homelab_kit::settings::AllowedHostPaths::parse("/mnt/usb-music").unwrap();
    let running = Controller::new(ns.client().clone(), settings);
    controller::spawn(|shutdown| running.run_until(shutdown))
}

async fn apply_server(ns: &TestNamespace, name: &str, spec: Value) {
    apply(&ns.api::<MediaServer>(), name, spec).await.unwrap();
}

/// A plain Deployment, as a user without the operator would write it: Recreate,
/// Kubernetes' default tolerations, preferring the node that will fail.
async fn plain_deployment(ns: &TestNamespace) {
    create(
        &ns.api::<Deployment>(),
        json!({
            "metadata": {"name": "plain"},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {"app": "plain"}},
                "template": {
                    "metadata": {"labels": {"app": "plain"}},
                    "spec": {
                        "affinity": {"nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [LOST, OTHER]}]}
                            ]},
                            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference":
                                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [LOST]}]}
                            }]
                        }},
                        "containers": [{"name": "server", "image": "ghcr.io/navidrome/navidrome:0.53.3"}]
                    }
                }
            }
        }),
    )
    .await
    .unwrap();
}

fn ready_on(ms: &MediaServer) -> Option<&str> {
    let status = ms.status.as_ref()?;
    let fresh = status.observed_generation == ms.metadata.generation;
    (fresh && status.is_condition_true(types::READY))
        .then_some(status.node.as_deref())
        .flatten()
}

fn lease_age(lease: &Lease) -> Duration {
    let renewed = lease
        .spec
        .as_ref()
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    renewed.map_or(Duration::ZERO, |r| {
        k8s_openapi::jiff::Timestamp::now()
            .duration_since(r)
            .unsigned_abs()
    })
}

async fn server_pod_uid(ns: &TestNamespace, server: &str) -> Option<String> {
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("{SERVER_LABEL}={server}")))
        .await
        .unwrap();
    pods.items.iter().find_map(|p| {
        ready_on_node(p)
            .is_some()
            .then(|| p.uid().unwrap_or_default())
    })
}

/// How long the server's Ready pod off the lost node took from its creation to
/// Ready, by its own timestamps (whole seconds).
async fn replacement_start(ns: &TestNamespace, server: &str) -> Duration {
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("{SERVER_LABEL}={server}")))
        .await
        .unwrap();
    pods.items
        .iter()
        .filter(|p| ready_on_node(p).is_some_and(|n| n != LOST))
        .find_map(|p| {
            let created = p.metadata.creation_timestamp.as_ref()?.0;
            let ready = p
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "Ready")?
                .last_transition_time
                .as_ref()?
                .0;
            Some(ready.duration_since(created).unsigned_abs())
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_lost_node_moves_what_can_move_quickly_and_keeps_what_cannot() {
    let _exclusive = crate::exclusive().await;
    // RUST_LOG=homelab=debug shows the controller's decisions.
    let _ = homelab_kit::telemetry::init();
    let ns = TestNamespace::with_crds("failover").await.unwrap();
    let client = ns.client().clone();
    let _controller = start_controller(&ns);
    let volumes = vec![
        block_claim(&ns, "music-config").await.unwrap(),
        nfs_claim(&ns, "local-config").await.unwrap(),
        nfs_claim(&ns, "shared-config").await.unwrap(),
    ];
    let _volumes = Volumes(client.clone(), volumes);

    // Network storage: may move anywhere, prefers the node that will fail. (Not
    // allowedNodes: with two nodes the controller builds a matchFields term the API
    // server refuses; see the report.)
    apply_server(
        &ns,
        "music",
        json!({
            "preset": "Navidrome",
            "config": {"existingClaim": "music-config"},
            "media": [{"name": "music", "mountPath": "/music",
                       "nfs": {"server": "nas.home.arpa", "path": "/volume1/music"}}],
            "failover": {"preferredNodes": [LOST]},
        }),
    )
    .await;
    // The config on an NFS share behind a ReadWriteOnce claim: moves only once
    // the lost node is fenced.
    apply_server(
        &ns,
        "shared",
        json!({
            "preset": "Navidrome",
            "config": {"existingClaim": "shared-config"},
            "failover": {"preferredNodes": [LOST]},
        }),
    )
    .await;
    // A library on a USB disk of the node that will fail: cannot move.
    apply_server(
        &ns,
        "local",
        json!({
            "preset": "Navidrome",
            "config": {"existingClaim": "local-config"},
            "media": [{"name": "music", "mountPath": "/music",
                       "hostPath": {"node": LOST, "path": "/mnt/usb-music"}}],
        }),
    )
    .await;
    plain_deployment(&ns).await;

    let servers = ns.api::<MediaServer>();
    for name in ["music", "shared", "local"] {
        let ms = wait_for(&servers, name, SETTLE, |ms| ready_on(ms).is_some())
            .await
            .unwrap();
        assert_eq!(ready_on(&ms), Some(LOST), "{name} should start on {LOST}");
    }
    let plain_selector = ListParams::default().labels("app=plain");
    let plain = wait_for_list(&ns.api::<Pod>(), &plain_selector, SETTLE, |pods| {
        pods.iter().any(|p| ready_on_node(p).is_some())
    })
    .await
    .unwrap();
    assert_eq!(
        plain.iter().find_map(ready_on_node),
        Some(LOST),
        "the plain Deployment should start on {LOST}"
    );

    let cluster = Cluster::default();
    let _recover = RecoverOnDrop(LOST);
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");

    // 1. A node back within the grace: nothing moves.
    let before = server_pod_uid(&ns, "music").await;
    let blip = Instant::now();
    cluster.node_fail(LOST).unwrap();
    // Silent long enough for the operator to notice (one and a half renewals).
    poll_until(
        &format!("the lease of {LOST} to go 17 s unrenewed"),
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            match lease_age(&leases.get(LOST).await.unwrap()) {
                age if age >= Duration::from_secs(17) => Ok(()),
                age => Err(format!("renewed {age:?} ago")),
            }
        },
    )
    .await
    .unwrap();
    cluster.node_recover(LOST).unwrap();
    eprintln!(
        "flap: {LOST} silent for {:.1}s, then back",
        blip.elapsed().as_secs_f64()
    );
    // Past the 30 s grace counted from the blip, and a little more: no move.
    let past_the_grace = (blip + Duration::from_secs(45)).saturating_duration_since(Instant::now());
    holds_for("the server to stay put", past_the_grace, Duration::from_millis(500), || async {
        let now = server_pod_uid(&ns, "music").await;
        let ms = servers.get("music").await.unwrap();
        let recorded = ms.status.as_ref().and_then(|s| s.last_failover.as_ref());
        if now != before || recorded.is_some() {
            return Err(format!(
                "a node back within the grace moved the server: pod {before:?} → {now:?}, record {recorded:?}"
            ));
        }
        Ok(())
    })
    .await
    .unwrap();

    // The limit of the failover below: two missed lease renewals of the node
    // (kwok renews every quarter of its lease duration, as the kubelet does),
    // plus the replacement pod's own start.
    let lease_duration = leases
        .get(LOST)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.lease_duration_seconds)
        .unwrap_or(40);
    let renew_interval = Duration::from_secs(u64::try_from(lease_duration).unwrap_or(40)) / 4;

    // 2. The node really goes: the clock starts.
    let failed_at = Instant::now();
    cluster.node_fail(LOST).unwrap();

    let moved = wait_for(&servers, "music", Duration::from_secs(240), |ms| {
        ready_on(ms).is_some_and(|n| n != LOST)
    })
    .await
    .unwrap();
    let with_operator = failed_at.elapsed();
    let status = moved.status.as_ref().unwrap();
    assert_ne!(ready_on(&moved), Some(LOST));
    let record = wait_for(&servers, "music", Duration::from_secs(30), |ms| {
        ms.status
            .as_ref()
            .and_then(|s| s.last_failover.as_ref())
            .is_some_and(|r| r.duration_millis.is_some())
    })
    .await
    .unwrap()
    .status
    .unwrap()
    .last_failover
    .unwrap();
    assert_eq!(record.from_node.as_deref(), Some(LOST));
    assert_eq!(record.to_node.as_deref(), ready_on(&moved));
    assert_eq!(record.reason, reasons::NODE_UNREACHABLE);
    assert!(!record.fenced);
    let pod_start = replacement_start(&ns, "music").await;
    let limit = renew_interval * 2 + pod_start;
    eprintln!(
        "failover limit: 2 × {:.1}s lease renewal (lease {lease_duration}s) + {:.0}s pod start (creation → Ready) = {:.1}s",
        renew_interval.as_secs_f64(),
        pod_start.as_secs_f64(),
        limit.as_secs_f64()
    );
    eprintln!(
        "failover: MediaServer Ready on {} {:.1}s after node-fail (status.lastFailover.durationMillis {} from the last heartbeat)",
        status.node.as_deref().unwrap_or("?"),
        with_operator.as_secs_f64(),
        record.duration_millis.unwrap_or_default()
    );

    // The lost node is kept free of new pods while silent.
    let taints = taint_keys(&Api::<Node>::all(client.clone()).get(LOST).await.unwrap());
    assert!(
        taints.iter().any(|t| t == SILENT_TAINT),
        "{LOST} should carry {SILENT_TAINT}: {taints:?}"
    );

    // 3. Node-local library: not moved, and FailoverReady says why. The node
    // being away is not a fault of the spec: no Stalled.
    let says_why = |ms: &MediaServer| {
        let status = ms.status.as_ref()?;
        if status
            .condition(types::STALLED)
            .is_some_and(|c| c.status == "True")
        {
            return None;
        }
        status
            .condition(types::FAILOVER_READY)
            .filter(|c| c.status == "False" && c.reason == reasons::NODE_LOCAL_STORAGE)
            .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
    };
    let local = wait_for(&servers, "local", Duration::from_secs(60), move |ms| {
        says_why(ms).is_some()
    })
    .await
    .unwrap();
    let why = says_why(&local).unwrap_or_default();
    let local_pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("{SERVER_LABEL}=local")))
        .await
        .unwrap();
    assert!(
        local_pods
            .items
            .iter()
            .any(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(LOST)),
        "the node-local server's pod must not be force-removed from {LOST}"
    );
    eprintln!("node-local: {why}");

    // 3b. Shared storage: not moved while the node is not fenced, and
    // FailoverReady says what would let it.
    let blocked = wait_for(&servers, "shared", Duration::from_secs(60), |ms| {
        ms.status
            .as_ref()
            .and_then(|s| s.condition(types::FAILOVER_READY))
            .is_some_and(|c| c.status == "False" && c.reason == reasons::FENCING_REQUIRED)
    })
    .await
    .unwrap();
    let c = blocked
        .status
        .as_ref()
        .and_then(|s| s.condition(types::FAILOVER_READY))
        .cloned()
        .unwrap();
    assert!(c.message.contains("out-of-service"), "{}", c.message);
    let shared_before = server_pod_uid(&ns, "shared").await;
    holds_for(
        "the NFS-backed server to stay put",
        Duration::from_secs(10),
        Duration::from_millis(500),
        || async {
            let ms = servers.get("shared").await.unwrap();
            if ms
                .status
                .as_ref()
                .and_then(|s| s.last_failover.as_ref())
                .is_some()
            {
                return Err("the NFS-backed server moved before its node was fenced".to_owned());
            }
            Ok(())
        },
    )
    .await
    .unwrap();
    eprintln!(
        "shared storage, not fenced: {}={} {}: {}",
        c.type_, c.status, c.reason, c.message
    );

    // 4. Kubernetes alone, same run.
    if homelab_test_support::bench::enabled() {
        wait_for_list(
            &ns.api::<Pod>(),
            &plain_selector,
            Duration::from_secs(900),
            |pods| pods.iter().filter_map(ready_on_node).any(|n| n != LOST),
        )
        .await
        .unwrap();
        let without = failed_at.elapsed();
        eprintln!(
            "failover: plain Deployment (Kubernetes defaults) Ready elsewhere {:.1}s after node-fail; operator {:.1}s; ratio {:.1}x",
            without.as_secs_f64(),
            with_operator.as_secs_f64(),
            without.as_secs_f64() / with_operator.as_secs_f64()
        );
        use homelab_test_support::bench::record;
        record("failover_s.operator", with_operator.as_secs_f64()).unwrap();
        record("failover_limit_s", limit.as_secs_f64()).unwrap();
        record("failover_lease_renew_s", renew_interval.as_secs_f64()).unwrap();
        record("failover_pod_start_s", pod_start.as_secs_f64()).unwrap();
        record("failover_s.kubernetes_default", without.as_secs_f64()).unwrap();
        record(
            "failover_speedup",
            without.as_secs_f64() / with_operator.as_secs_f64(),
        )
        .unwrap();
    } else {
        let pods = ns.api::<Pod>().list(&plain_selector).await.unwrap();
        let elsewhere = pods
            .items
            .iter()
            .filter_map(ready_on_node)
            .any(|n| n != LOST);
        eprintln!(
            "failover: plain Deployment (Kubernetes defaults) Ready elsewhere after {:.1}s: {elsewhere} (HOMELAB_BENCH=1 waits for it)",
            failed_at.elapsed().as_secs_f64()
        );
        assert!(!elsewhere, "Kubernetes alone should still be waiting");
    }

    // 4b. An administrator fences the node: the NFS-backed server moves.
    let fence = format!(
        "{}=nodeshutdown:NoExecute",
        homelab_api::failover::OUT_OF_SERVICE_TAINT
    );
    cluster
        .run(&["kubectl", "taint", "node", LOST, fence.as_str()])
        .unwrap();
    let fenced_at = Instant::now();
    // The taint lets Kubernetes' pod garbage collector remove the pod too, so
    // either may act first: what counts is that it moves now and not before.
    let moved = wait_for(&servers, "shared", Duration::from_secs(120), |ms| {
        ready_on(ms).is_some_and(|n| n != LOST)
    })
    .await
    .unwrap();
    assert_ne!(server_pod_uid(&ns, "shared").await, shared_before);
    let record = moved.status.as_ref().and_then(|s| s.last_failover.clone());
    if let Some(r) = &record {
        assert_eq!(r.from_node.as_deref(), Some(LOST));
        assert!(
            r.fenced,
            "a move after the fence is recorded as fenced: {r:?}"
        );
    }
    eprintln!(
        "shared storage, fenced by hand: Ready on {} {:.1}s after the taint (moved by {})",
        ready_on(&moved).unwrap_or("?"),
        fenced_at.elapsed().as_secs_f64(),
        if record.is_some() {
            "the operator"
        } else {
            "the pod garbage collector"
        }
    );
    let unfence = format!("{}-", homelab_api::failover::OUT_OF_SERVICE_TAINT);
    cluster
        .run(&["kubectl", "taint", "node", LOST, unfence.as_str()])
        .unwrap();

    // 5. The node comes back: the taint this controller added comes off.
    cluster.node_recover(LOST).unwrap();
    wait_for(
        &Api::<Node>::all(client.clone()),
        LOST,
        Duration::from_secs(90),
        |n: &Node| !taint_keys(n).iter().any(|t| t == SILENT_TAINT),
    )
    .await
    .unwrap();
    eprintln!("release: {LOST} heartbeats again and lost {SILENT_TAINT}");
}
