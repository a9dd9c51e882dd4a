//! A SensorGateway on a network coordinator loses its node, and the controller
//! is killed in the middle of failing it over: a second controller finishes
//! the job, with one gateway pod in the end, Ready on another node, and the
//! lost node's fence taken off when it comes back.

use homelab_kit::Operator as _;
use std::time::{Duration, Instant};

use homelab_api::conditions::types;
use homelab_api::failover::OUT_OF_SERVICE_TAINT;
use homelab_api::{ConditionedStatus, SensorGateway};
use homelab_kit::failover::fence::SILENT_TAINT;
use homelab_sensorgateway::build::names::GATEWAY_LABEL;
use homelab_sensorgateway::{CONTROLLER_NAME, Controller};
use homelab_test_support::mosquitto::Mosquitto;
use homelab_test_support::mqtt::{FakeGateway, credentials_secret, mqtt_spec};
use homelab_test_support::pods::taint_keys;
use homelab_test_support::{Cluster, TestNamespace, apply, controller, wait_for};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::json;

use crate::failover::RecoverOnDrop;

const LOST: &str = "pi4-1";
const CREDENTIALS: (&str, &str) = ("homelab", "failover-Pa55");

fn start_controller(client: &Client, ns: &TestNamespace) -> controller::Running {
    // The administrator's part of fencing (the chart's fencing.enabled).
    let mut settings = controller::settings(CONTROLLER_NAME, ns.name());
    settings.fencing_allowed = true;
    let running = Controller::new(client.clone(), settings);
    controller::spawn(|shutdown| running.run_until(shutdown))
}

fn ready_on(sg: &SensorGateway) -> Option<&str> {
    let s = sg.status.as_ref()?;
    (s.observed_generation == sg.metadata.generation && s.is_condition_true(types::READY))
        .then_some(s.node.as_deref())
        .flatten()
}

#[tokio::test]
async fn a_gateway_fails_over_even_when_its_controller_is_killed_mid_way() {
    let _exclusive = crate::exclusive().await;
    let ns = TestNamespace::with_crds("sgw-failover").await.unwrap();
    let client = ns.client().clone();
    let broker = Mosquitto::start(Some(CREDENTIALS)).unwrap();
    credentials_secret(&ns, CREDENTIALS).await.unwrap();
    let _gateway = FakeGateway::start(&broker, CREDENTIALS, "z2m-garage", "garage/bridge/state");
    let first = start_controller(&client, &ns);
    let gateways = ns.api::<SensorGateway>();
    apply(
        &gateways,
        "garage",
        json!({
            "preset": "Zigbee2MQTT",
            "topicPrefix": "garage",
            "mqtt": mqtt_spec(&broker.url()),
            "radio": {"networkAddress": "tcp://192.168.1.40:6638", "adapter": "zstack"},
            "data": {"nfs": {"server": "nas.home.arpa", "path": "/export/garage"}},
            // Data on NFS: two copies could both write it, so the lost node is
            // fenced (out-of-service) before the pod is removed from it.
            "failover": {"preferredNodes": [LOST], "fenceNode": true},
        }),
    )
    .await
    .unwrap();
    let sg = wait_for(&gateways, "garage", Duration::from_secs(120), |sg| {
        ready_on(sg).is_some()
    })
    .await
    .unwrap();
    assert_eq!(
        ready_on(&sg),
        Some(LOST),
        "the gateway should start on {LOST}"
    );

    let cluster = Cluster::default();
    let _recover = RecoverOnDrop(LOST);
    let failed_at = Instant::now();
    cluster.node_fail(LOST).unwrap();

    // The controller marks the node when it acts; kill it right then, as a
    // SIGKILL would: no cleanup, no status written after.
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for(&nodes, LOST, Duration::from_secs(180), |n: &Node| {
        taint_keys(n).iter().any(|t| t == SILENT_TAINT)
    })
    .await
    .unwrap();
    first.kill();
    let killed_at = failed_at.elapsed();
    let _second = start_controller(&client, &ns);

    let moved = wait_for(&gateways, "garage", Duration::from_secs(180), |sg| {
        ready_on(sg).is_some_and(|n| n != LOST)
    })
    .await
    .unwrap();
    let elapsed = failed_at.elapsed();
    let node = taint_keys(&nodes.get(LOST).await.unwrap());
    assert!(
        node.iter().any(|t| t == OUT_OF_SERVICE_TAINT),
        "{LOST} should be fenced: {node:?}"
    );
    // One gateway in the end: every pod but the one Ready elsewhere is gone.
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("{GATEWAY_LABEL}=garage")))
        .await
        .unwrap()
        .items;
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    assert_eq!(live.len(), 1, "one live gateway pod: {pods:?}");
    // Recorded before the pod is deleted, completed once Ready elsewhere: a
    // controller killed mid-way loses no record.
    let record = wait_for(&gateways, "garage", Duration::from_secs(60), |sg| {
        sg.status
            .as_ref()
            .and_then(|s| s.last_failover.as_ref())
            .is_some_and(|r| r.from_node.as_deref() == Some(LOST) && r.duration_millis.is_some())
    })
    .await
    .unwrap()
    .status
    .and_then(|s| s.last_failover);
    eprintln!(
        "figure: SensorGateway on a network coordinator Ready on {} {:.1}s after node-fail; first controller killed at {:.1}s; lastFailover {:?}",
        ready_on(&moved).unwrap_or("?"),
        elapsed.as_secs_f64(),
        killed_at.as_secs_f64(),
        record
            .as_ref()
            .map(|r| (&r.from_node, &r.to_node, r.fenced, r.duration_millis))
    );

    // The node comes back: the second controller takes off the first one's marks.
    cluster.node_recover(LOST).unwrap();
    wait_for(&nodes, LOST, Duration::from_secs(120), |n: &Node| {
        !taint_keys(n)
            .iter()
            .any(|t| t == SILENT_TAINT || t == OUT_OF_SERVICE_TAINT)
    })
    .await
    .unwrap();
    eprintln!("release: {LOST} heartbeats again; the fence came off");
}
