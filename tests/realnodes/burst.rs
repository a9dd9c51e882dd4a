//! The active MediaServer controller's container is killed (SIGKILL, through its
//! node's containerd) in the middle of a burst of 200 MediaServer creations.
//! Every server still converges, and none has two Deployments or two Services:
//! the standby (or the restarted container) picks up where the dead one stopped,
//! and server-side apply makes a repeated write the same object.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use homelab_api::conditions::types;
use homelab_api::{ConditionedStatus, MediaServer};
use homelab_test_support::objects::navidrome_on_nas;
use homelab_test_support::status::current;
use homelab_test_support::tools::{run_ok, tool};
use homelab_test_support::{TEST_MANAGER, poll_until, wait_for, wait_for_list};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::Resource;

use crate::home::{RealHome, node_dir};

const CONTROLLER: &str = "mediaserver-controller";
const SERVERS: usize = 200;
/// Killed once the controller has applied this many Deployments: in the middle
/// of its work, with most servers still to do.
const KILL_AFTER: usize = 40;
const CONVERGE: Duration = Duration::from_secs(420);

/// Children per owner uid.
fn owners<K: Resource>(items: &[K]) -> BTreeMap<String, usize> {
    let mut count = BTreeMap::new();
    for item in items {
        for owner in item.meta().owner_references.iter().flatten() {
            if owner.kind == "MediaServer" {
                *count.entry(owner.uid.clone()).or_insert(0) += 1;
            }
        }
    }
    count
}

#[tokio::test]
async fn a_controller_killed_mid_burst_leaves_every_server_converged_once() {
    let _one = crate::exclusive().await;
    let home = RealHome::install(
        "rn-burst",
        &[
            "usbDevicePin.enabled=false",
            "sensorGateway.enabled=false",
            "etcdBackup.enabled=false",
            "nodeAgent.enabled=false",
        ],
    )
    .await;
    let leases = home.operators.api::<Lease>();
    let leader = crate::wait_for_holder(&leases, CONTROLLER).await;
    let pods = home.pods(CONTROLLER).await;
    let pod = &pods[&leader];
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap();
    let container = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.container_id.clone())
        .unwrap();
    let container = container.trim_start_matches("containerd://").to_owned();
    println!("leader {leader} on {node}, container {container}");

    let api = home.ns.api::<MediaServer>();
    let apply = PatchParams::apply(TEST_MANAGER);
    let started = Instant::now();
    let creator = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut results = futures::stream::iter(0..SERVERS)
                .map(|i| {
                    let api = api.clone();
                    let apply = apply.clone();
                    async move {
                        let name = format!("navidrome-{i:03}");
                        api.patch(&name, &apply, &Patch::Apply(navidrome_on_nas(&name)))
                            .await
                            .map(drop)
                    }
                })
                .buffer_unordered(16);
            while let Some(result) = results.next().await {
                result.unwrap();
            }
        })
    };
    let deployments = home.ns.api::<Deployment>();
    wait_for_list(&deployments, &ListParams::default(), CONVERGE, |d| {
        d.len() >= KILL_AFTER
    })
    .await
    .unwrap();
    let ctr = tool("containerd", "ctr").unwrap();
    let socket = node_dir(&node).join("containerd/containerd.sock");
    let socket = socket.to_string_lossy().into_owned();
    run_ok(
        &ctr,
        &[
            "--address",
            &socket,
            "-n",
            "k8s.io",
            "tasks",
            "kill",
            "--signal",
            "SIGKILL",
            &container,
        ],
    )
    .unwrap();
    let killed_at = started.elapsed();
    let killed = jiff::Timestamp::now();
    println!(
        "killed the leader's container with {KILL_AFTER} Deployments applied ({:.1} s into the burst)",
        killed_at.as_secs_f64()
    );
    tokio::time::timeout(CONVERGE, creator)
        .await
        .unwrap_or_else(|_| panic!("the {SERVERS} applies took over {CONVERGE:?}"))
        .unwrap();

    // Either the standby takes the Lease, or the kubelet restarts the container
    // under the same pod name and it takes it back: the Lease is renewed again.
    let lease = wait_for(&leases, CONTROLLER, CONVERGE, move |l: &Lease| {
        l.spec
            .as_ref()
            .and_then(|s| s.renew_time.as_ref())
            .is_some_and(|t| t.0 > killed)
    })
    .await
    .unwrap();
    println!(
        "Lease held by {:?} and renewed {:.1} s after the kill",
        crate::holder(&lease),
        (started.elapsed() - killed_at).as_secs_f64()
    );

    poll_until(
        "every MediaServer Ready",
        CONVERGE,
        Duration::from_millis(500),
        || async {
            let servers = api
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items;
            let ready =
                |s: &&MediaServer| current(*s).is_some_and(|s| s.is_condition_true(types::READY));
            match servers.iter().filter(ready).count() {
                SERVERS => Ok(()),
                done => Err(format!("{done}/{SERVERS} Ready")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", home.describe()));
    println!(
        "all {SERVERS} MediaServers Ready {:.1} s after the burst began",
        started.elapsed().as_secs_f64()
    );

    let deployments = deployments
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let services = home
        .ns
        .api::<Service>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let (by_deployment, by_service) = (owners(&deployments), owners(&services));
    assert_eq!(by_deployment.len(), SERVERS, "servers with a Deployment");
    assert_eq!(by_service.len(), SERVERS, "servers with a Service");
    assert!(
        by_deployment.values().all(|n| *n == 1),
        "a server with two Deployments: {by_deployment:?}"
    );
    assert!(
        by_service.values().all(|n| *n == 1),
        "a server with two Services: {by_service:?}"
    );
}
