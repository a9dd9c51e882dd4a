//! The MediaServer controller on the kwok home cluster, running in-process
//! and watching only the test's namespace: placement (Quick Sync, architectures,
//! node-local media), failover analysis, rollouts and write counts, garbage
//! collection, and bad input.

use homelab_kit::Operator as _;
use std::sync::Arc;
use std::time::Duration;

use homelab_api::conditions::{reasons, types};
use homelab_api::{ConditionedStatus, MediaServer};
use homelab_kit::settings::AllowedHostPaths;
use homelab_kit::{Context, Settings};
use homelab_mediaserver::build::names::{KEEP_ANNOTATION, SERVER_LABEL};
use homelab_mediaserver::{CONTROLLER_NAME, Controller, Metrics, State};
use homelab_test_support::lock::IGPU;
use homelab_test_support::pods::pod_spec;
use homelab_test_support::status::{said, says};
use homelab_test_support::storage::{block_volume, local_path_class, nfs_claim, nfs_volume};
use homelab_test_support::{
    Objects, TestNamespace, controller, nudge, wait_deleted, wait_exists, wait_for_list,
    wait_settled,
};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

/// Long enough for the scheduler and kwok.
const READY: Duration = Duration::from_secs(120);

/// The controller, running in this test's runtime until dropped.
struct Running {
    metrics: Metrics,
    settings: Settings,
    state: State,
    _task: controller::Running,
}

async fn setup(prefix: &str) -> (Client, TestNamespace, Objects<MediaServer>, Running) {
    let ns = TestNamespace::with_crds(prefix).await.unwrap();
    let client = ns.client().clone();
    let mut settings = controller::settings(CONTROLLER_NAME, ns.name());
    // The node-local library test mounts a USB disk an administrator allows.
    settings.allowed_host_paths = AllowedHostPaths::parse("/mnt/usb-music").unwrap();
    let running = Controller::new(client.clone(), settings.clone());
    let metrics = running.metrics();
    let state = running.state();
    let running = Running {
        metrics,
        settings,
        state,
        _task: controller::spawn(|shutdown| running.run_until(shutdown)),
    };
    let servers = Objects::new(&ns, READY);
    (client, ns, servers, running)
}

/// A film library on the NAS.
fn movies_on_the_nas() -> Value {
    json!([{"name": "movies", "mountPath": "/media/movies",
            "nfs": {"server": "nas.home.arpa", "path": "/volume1/movies"}}])
}

fn pod_template(d: &Deployment) -> Value {
    serde_json::to_value(pod_spec(d)).unwrap()
}

fn required_archs(pod: &Value) -> Value {
    pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
        .clone()
}

async fn node_arch(client: &Client, node: &str) -> String {
    let node = Api::<Node>::all(client.clone()).get(node).await.unwrap();
    node.labels()["kubernetes.io/arch"].clone()
}

/// The Warning Events the controller published about `name`.
async fn warnings(ns: &TestNamespace, name: &str, reason: &str) -> Vec<Event> {
    let reason = reason.to_owned();
    let name = name.to_owned();
    wait_for_list(
        &ns.api::<Event>(),
        &ListParams::default(),
        READY,
        |events| events.iter().any(|e| is_warning(e, &name, &reason)),
    )
    .await
    .unwrap()
    .into_iter()
    .filter(|e| is_warning(e, &name, &reason))
    .collect()
}

fn is_warning(e: &Event, name: &str, reason: &str) -> bool {
    e.type_.as_deref() == Some("Warning")
        && e.reason.as_deref() == Some(reason)
        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
}

async fn running_pod(ns: &TestNamespace, server: &str, timeout: Duration) -> Pod {
    let pods = wait_for_list(
        &ns.api::<Pod>(),
        &ListParams::default().labels(&format!("{SERVER_LABEL}={server}")),
        timeout,
        |pods| {
            pods.len() == 1
                && pods[0]
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        },
    )
    .await
    .unwrap();
    pods[0].clone()
}

/// Nothing named after `server` exists: no Deployment, Service or claim.
async fn nothing_created(ns: &TestNamespace, server: &str) {
    assert!(!ns.has::<Deployment>(server).await.unwrap());
    assert!(!ns.has::<Service>(server).await.unwrap());
    let claims = ns
        .api::<PersistentVolumeClaim>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        claims
            .items
            .iter()
            .all(|c| !c.name_any().starts_with(server)),
        "claims left behind: {:?}",
        claims
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn jellyfin_with_quick_sync_lands_on_the_igpu_node() {
    // Only one i915 exists: held until this test's GPU pod is gone.
    let _igpu = IGPU.take().await;
    let (_client, ns, servers, _controller) = setup("ms-qsv").await;
    servers
        .apply(
            "jellyfin",
            json!({
                "preset": "Jellyfin",
                "config": {"nfs": {"server": "nas.home.arpa", "path": "/volume1/jellyfin-config"}},
                "media": movies_on_the_nas(),
                "transcoding": {"hardware": "IntelQuickSync", "renderGroupId": 993},
            }),
        )
        .await;

    let deployment = wait_exists(&ns.api::<Deployment>(), "jellyfin", READY)
        .await
        .unwrap();
    let pod = pod_template(&deployment);
    assert_eq!(
        pod["containers"][0]["resources"]["limits"]["gpu.intel.com/i915"],
        "1"
    );
    assert_eq!(pod["securityContext"]["supplementalGroups"], json!([993]));
    assert_eq!(required_archs(&pod), json!(["amd64"]));
    assert_eq!(pod["containers"][0]["securityContext"]["privileged"], false);
    assert_eq!(
        pod["containers"][0]["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(
        deployment
            .spec
            .as_ref()
            .unwrap()
            .strategy
            .as_ref()
            .unwrap()
            .type_
            .as_deref(),
        Some("Recreate")
    );

    let ms = servers
        .wait_condition("jellyfin", types::READY, "True")
        .await;
    let status = ms.status.clone().unwrap();
    assert_eq!(status.node.as_deref(), Some("n100-1"));
    assert_eq!(
        status.url.as_deref(),
        Some(format!("http://jellyfin.{}.svc:8096", ns.name()).as_str())
    );
    let pod = running_pod(&ns, "jellyfin", READY).await;
    assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some("n100-1"));
    let (failover, message) = said(&ms, types::FAILOVER_READY);
    assert_eq!(failover, reasons::SINGLE_ELIGIBLE_NODE, "{message}");
    assert_eq!(status.failover_possible, Some(false));
    let (reason, nfs) = said(&ms, types::CONFIG_ON_NFS);
    assert!(nfs.contains("SQLite"), "{reason}: {nfs}");
    assert!(!warnings(&ns, "jellyfin", "SQLiteOnNFS").await.is_empty());
    eprintln!(
        "quick sync: node={:?} url={:?} FailoverReady=False {failover}: {message}; ConfigOnNFS=True {reason}",
        status.node, status.url
    );

    // Give the iGPU back at once for the next test that needs it.
    servers
        .api()
        .delete("jellyfin", &DeleteParams::foreground())
        .await
        .unwrap();
    wait_deleted(servers.api(), "jellyfin", READY)
        .await
        .unwrap();
}

#[tokio::test]
async fn amd64_only_image_never_lands_on_a_pi_and_a_multi_arch_one_may() {
    let (client, ns, servers, _controller) = setup("ms-arch").await;
    let config = json!({"nfs": {"server": "nas.home.arpa", "path": "/volume1/config"}});
    // Both prefer a Pi: only the image that runs there may go there.
    servers
        .apply(
            "amd64-only",
            json!({
                "preset": "Generic", "image": "registry.invalid/media:1", "port": 8080,
                "architectures": ["amd64"],
                "config": config,
                "failover": {"preferredNodes": ["pi4-1"]},
            }),
        )
        .await;
    servers
        .apply(
            "navidrome",
            json!({
                "preset": "Navidrome",
                "config": config,
                "failover": {"preferredNodes": ["pi4-1"]},
            }),
        )
        .await;

    for (name, archs) in [
        ("amd64-only", json!(["amd64"])),
        ("navidrome", json!(["amd64", "arm64", "arm"])),
    ] {
        let d = wait_exists(&ns.api::<Deployment>(), name, READY)
            .await
            .unwrap();
        assert_eq!(required_archs(&pod_template(&d)), archs, "{name}");
    }
    let amd64 = servers
        .wait_condition("amd64-only", types::READY, "True")
        .await;
    let node = amd64.status.unwrap().node.unwrap();
    assert_eq!(
        node_arch(&client, &node).await,
        "amd64",
        "amd64-only image on {node}"
    );
    let multi = servers
        .wait_condition("navidrome", types::READY, "True")
        .await;
    let node = multi.status.unwrap().node.unwrap();
    assert_eq!(node, "pi4-1", "a multi-arch image may use the preferred Pi");
    eprintln!("arch: amd64-only on an amd64 node, navidrome on {node}");
}

#[tokio::test]
async fn navidrome_with_node_local_music_stays_on_that_node() {
    let (_client, ns, servers, _controller) = setup("ms-local").await;
    nfs_claim(&ns, "navidrome-data").await.unwrap();
    servers
        .apply(
            "navidrome",
            json!({
                "preset": "Navidrome",
                "config": {"existingClaim": "navidrome-data"},
                "media": [{"name": "music", "mountPath": "/music",
                           "hostPath": {"node": "pi4-2", "path": "/mnt/usb-music/library"}}],
            }),
        )
        .await;
    let ms = servers
        .wait_condition("navidrome", types::READY, "True")
        .await;
    assert_eq!(ms.status.as_ref().unwrap().node.as_deref(), Some("pi4-2"));
    assert_eq!(
        running_pod(&ns, "navidrome", READY)
            .await
            .spec
            .unwrap()
            .node_name
            .as_deref(),
        Some("pi4-2")
    );
    let message = says(
        &ms,
        types::FAILOVER_READY,
        "False",
        reasons::NODE_LOCAL_STORAGE,
        &["music", "pi4-2", "network storage"],
    );
    assert_eq!(
        ms.status.as_ref().unwrap().failover_reason.as_deref(),
        Some(message.as_str())
    );
    eprintln!("node-local: FailoverReady=False: {message}");
}

#[tokio::test]
async fn nfs_media_and_attached_config_can_fail_over() {
    let (_client, ns, servers, _controller) = setup("ms-net").await;
    // A disk Kubernetes attaches to one node at a time: a second copy cannot
    // write the config while the first node holds it.
    block_volume(&ns, "jellyfin-config").await.unwrap();
    servers
        .apply(
            "jellyfin",
            json!({
                "preset": "Jellyfin",
                "config": {"volumeClaim": {"size": "10Gi"}},
                "media": movies_on_the_nas(),
            }),
        )
        .await;
    let ms = servers
        .wait_condition("jellyfin", types::READY, "True")
        .await;
    let status = ms.status.clone().unwrap();
    let message = says(
        &ms,
        types::FAILOVER_READY,
        "True",
        reasons::ATTACHMENT_ENFORCED,
        &["celeron-1", "pi4-1", "jellyfin-config"],
    );
    assert!(
        !message.contains("cp-1"),
        "the control plane is tainted: {message}"
    );
    assert!(status.condition(types::CONFIG_ON_NFS).is_none());
    let claim = ns
        .api::<PersistentVolumeClaim>()
        .get("jellyfin-config")
        .await
        .unwrap();
    assert_eq!(claim.owner_references()[0].name, "jellyfin");
    eprintln!("network: FailoverReady=True: {message}");
}

#[tokio::test]
async fn an_nfs_backed_rwo_claim_needs_fencing_and_local_path_does_not_fail_over() {
    let (_client, ns, servers, _controller) = setup("ms-storage").await;
    // A ReadWriteOnce claim the user bound to an NFS share: RWO says nothing
    // across nodes, and two nodes can mount the share at once.
    nfs_claim(&ns, "shared-config").await.unwrap();
    let class = local_path_class(&ns).await.unwrap();
    servers
        .apply(
            "shared",
            json!({
                "preset": "Jellyfin",
                "config": {"existingClaim": "shared-config"},
            }),
        )
        .await;
    servers
        .apply(
            "local",
            json!({
                "preset": "Navidrome",
                "config": {"volumeClaim": {"size": "1Gi", "storageClassName": class}},
            }),
        )
        .await;

    let shared = servers
        .wait_reason(
            "shared",
            types::FAILOVER_READY,
            reasons::SHARED_STORAGE_NEEDS_FENCING,
            "nas.home.arpa:/volume1/shared-config",
        )
        .await;
    let message = says(
        &shared,
        types::FAILOVER_READY,
        "False",
        reasons::SHARED_STORAGE_NEEDS_FENCING,
        &[
            "shared-config",
            "nas.home.arpa:/volume1/shared-config",
            "node.kubernetes.io/out-of-service",
            "failover.fenceNode",
        ],
    );
    assert_eq!(
        shared.status.as_ref().unwrap().failover_possible,
        Some(false)
    );
    eprintln!("nfs-backed RWO claim: FailoverReady=False: {message}");

    let local = servers
        .wait_reason(
            "local",
            types::FAILOVER_READY,
            reasons::NODE_LOCAL_STORAGE,
            &class,
        )
        .await;
    let message = says(
        &local,
        types::FAILOVER_READY,
        "False",
        reasons::NODE_LOCAL_STORAGE,
        &[&class, "rancher.io/local-path", "storageClassName"],
    );
    eprintln!("local-path class: FailoverReady=False: {message}");
}

#[tokio::test]
async fn editing_the_spec_rolls_once_and_reapplying_it_writes_nothing() {
    let (client, ns, servers, controller) = setup("ms-writes").await;
    let mut spec = json!({
        "preset": "Navidrome",
        "image": "docker.io/deluan/navidrome:0.53.2",
        "config": {"nfs": {"server": "nas.home.arpa", "path": "/volume1/navidrome"}},
        "resources": {"limits": {"memory": "256Mi"}},
    });
    servers.apply("navidrome", spec.clone()).await;
    let ready = servers
        .wait_condition("navidrome", types::READY, "True")
        .await;
    let deployments = ns.api::<Deployment>();
    let before = deployments.get("navidrome").await.unwrap();
    let service_before = ns.api::<Service>().get("navidrome").await.unwrap();
    // The status write that made it Ready is counted once its response is back,
    // which can be after the test saw it.
    let metrics = controller.metrics.clone();
    let writes_before = wait_settled(
        "the controller's write count",
        Duration::from_secs(1),
        READY,
        move || metrics.writes(),
    )
    .await
    .unwrap();

    // The same spec again, as `kubectl apply` or Flux would send it, then a
    // nudge that makes the controller reconcile without a spec change, then
    // one reconcile called directly so at least one full pass surely ran.
    servers.apply("navidrome", spec.clone()).await;
    nudge(servers.api(), "navidrome").await.unwrap();
    let nudged = servers
        .wait_for("navidrome", |ms| {
            ms.annotations().contains_key("example.org/nudge")
        })
        .await;
    let ctx = Context::new(
        client.clone(),
        &controller.settings,
        homelab_kit::metrics::Metrics::new().controller("direct"),
        controller.state.clone(),
    );
    homelab_mediaserver::reconcile(Arc::new(nudged), Arc::new(ctx))
        .await
        .unwrap();

    let writes_after = controller.metrics.writes();
    let after = deployments.get("navidrome").await.unwrap();
    let ms_after = servers.api().get("navidrome").await.unwrap();
    eprintln!(
        "re-apply: controller writes before={writes_before} after={writes_after} (status writes {})",
        controller.metrics.writes_of("MediaServerStatus")
    );
    if writes_after != writes_before {
        eprintln!(
            "status before: {:?}\nstatus after: {:?}",
            ready.status, ms_after.status
        );
    }
    assert_eq!(
        writes_after, writes_before,
        "re-applying the same spec wrote"
    );
    assert_eq!(after.metadata.generation, before.metadata.generation);
    assert_eq!(
        managed_by_controller(&after),
        managed_by_controller(&before)
    );
    let service_after = ns.api::<Service>().get("navidrome").await.unwrap();
    assert_eq!(
        service_after.resource_version(),
        service_before.resource_version()
    );
    assert_eq!(ms_after.status, ready.status, "the status was rewritten");

    // A new tag and more memory: one new generation, one new ReplicaSet.
    spec["image"] = json!("docker.io/deluan/navidrome:0.53.3");
    spec["resources"]["limits"]["memory"] = json!("512Mi");
    let deployment_writes = controller.metrics.writes_of("Deployment");
    servers.apply("navidrome", spec).await;
    let edited = servers
        .wait_condition("navidrome", types::READY, "True")
        .await;
    assert_eq!(edited.status.as_ref().unwrap().observed_generation, Some(2));
    let rolled = deployments.get("navidrome").await.unwrap();
    let generations = (
        before.metadata.generation.unwrap(),
        rolled.metadata.generation.unwrap(),
    );
    assert_eq!(
        generations.1,
        generations.0 + 1,
        "Deployment generations {generations:?}"
    );
    let container = &pod_spec(&rolled).containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("docker.io/deluan/navidrome:0.53.3")
    );
    let replica_sets = ns
        .api::<ReplicaSet>()
        .list(&ListParams::default().labels(&format!("{SERVER_LABEL}=navidrome")))
        .await
        .unwrap();
    assert_eq!(
        replica_sets.items.len(),
        2,
        "one rollout: the old ReplicaSet and one new"
    );
    let deployment_writes = controller.metrics.writes_of("Deployment") - deployment_writes;
    assert_eq!(deployment_writes, 1);
    eprintln!(
        "edit: Deployment generation {} -> {}, ReplicaSets {}, Deployment writes {deployment_writes}",
        generations.0,
        generations.1,
        replica_sets.items.len()
    );
}

/// The controller's own entries in managedFields (operation and time).
fn managed_by_controller(obj: &Deployment) -> Vec<(Option<String>, Option<String>)> {
    obj.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some(CONTROLLER_NAME))
        .map(|m| {
            (
                m.operation.clone(),
                m.time.as_ref().map(|t| t.0.to_string()),
            )
        })
        .collect()
}

#[tokio::test]
async fn deleting_collects_what_it_created_and_keeps_marked_claims() {
    let (_client, ns, servers, _controller) = setup("ms-gc").await;
    servers
        .apply(
            "jellyfin",
            json!({
                "preset": "Jellyfin",
                "config": {"volumeClaim": {"size": "10Gi", "keepOnDelete": true}},
                "cache": {"size": "20Gi"},
                "media": movies_on_the_nas(),
            }),
        )
        .await;
    let claims = ns.api::<PersistentVolumeClaim>();
    let (deployments, services) = (ns.api::<Deployment>(), ns.api::<Service>());
    wait_exists(&deployments, "jellyfin", READY).await.unwrap();
    wait_exists(&services, "jellyfin", READY).await.unwrap();
    wait_exists(&claims, "jellyfin-cache", READY).await.unwrap();
    let kept = wait_exists(&claims, "jellyfin-config", READY)
        .await
        .unwrap();
    assert!(kept.owner_references().is_empty());

    servers
        .api()
        .delete("jellyfin", &DeleteParams::background())
        .await
        .unwrap();
    wait_deleted(&deployments, "jellyfin", READY).await.unwrap();
    wait_deleted(&services, "jellyfin", READY).await.unwrap();
    wait_deleted(&claims, "jellyfin-cache", READY)
        .await
        .unwrap();
    wait_deleted(servers.api(), "jellyfin", READY)
        .await
        .unwrap();
    let kept = claims.get("jellyfin-config").await.unwrap();
    assert!(kept.metadata.deletion_timestamp.is_none());
    assert_eq!(kept.annotations()[KEEP_ANNOTATION], "true");
    eprintln!("gc: Deployment, Service, jellyfin-cache collected; jellyfin-config kept");
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_leaves_nothing_behind() {
    let (_client, ns, servers, _controller) = setup("ms-bad").await;

    // An unknown preset: the API server refuses it, with the allowed values.
    let err = servers
        .try_apply(
            "emby",
            json!({"preset": "Emby", "config": {"volumeClaim": {"size": "1Gi"}}}),
        )
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("Unsupported value") && message.contains("Jellyfin"),
        "{message}"
    );
    eprintln!("unknown preset: {message}");

    // A GPU no node has.
    servers
        .apply(
            "plex",
            json!({
                "preset": "Plex",
                "config": {"volumeClaim": {"size": "1Gi"}},
                "transcoding": {"hardware": "Nvidia"},
            }),
        )
        .await;
    // A library claim that does not exist.
    servers
        .apply(
            "navidrome",
            json!({
                "preset": "Navidrome",
                "config": {"volumeClaim": {"size": "1Gi"}},
                "media": [{"name": "music", "mountPath": "/music", "existingClaim": "music"}],
            }),
        )
        .await;

    for (name, reason, words) in [
        ("plex", reasons::NO_GPU_NODE, "nvidia.com/gpu"),
        (
            "navidrome",
            reasons::REFERENCE_NOT_FOUND,
            "PersistentVolumeClaim music",
        ),
    ] {
        let ms = servers.wait_condition(name, types::STALLED, "True").await;
        let (got, message) = said(&ms, types::STALLED);
        assert_eq!(got, reason, "{name}: {message}");
        assert!(message.contains(words), "{name}: {message}");
        assert_eq!(said(&ms, types::READY).0, reason);
        let events = warnings(&ns, name, reason).await;
        eprintln!(
            "{name}: Stalled {reason}: {message} ({} Warning Event)",
            events.len()
        );
        nothing_created(&ns, name).await;
    }

    // The claim appears: the server goes ahead without anyone touching it.
    nfs_volume(&ns, "navidrome-config").await.unwrap();
    nfs_claim(&ns, "music").await.unwrap();
    servers
        .wait_condition("navidrome", types::READY, "True")
        .await;
    assert!(
        ns.has::<PersistentVolumeClaim>("navidrome-config")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn two_allowed_nodes_make_a_deployment_the_api_server_accepts() {
    let (_client, ns, servers, _controller) = setup("ms-allowed").await;
    servers
        .apply(
            "navidrome",
            json!({
                "preset": "Navidrome",
                "config": {"volumeClaim": {"size": "1Gi"}},
                "failover": {"allowedNodes": ["pi4-3", "rock64-1"]},
            }),
        )
        .await;
    // A metadata.name requirement may hold one value only: with both nodes in
    // one term the API server refused the Deployment (422) and none appeared.
    let deployment = wait_exists(&ns.api::<Deployment>(), "navidrome", READY)
        .await
        .unwrap();
    let terms = pod_template(&deployment)["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        .clone();
    assert_eq!(terms.as_array().map(Vec::len), Some(2), "{terms}");
}
