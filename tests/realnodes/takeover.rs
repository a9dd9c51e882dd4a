//! The node that runs the active UsbDevicePin controller loses power (every
//! process of it killed, pods included). The standby replica on the other real
//! node takes the Lease, and the consumer that ran on the dead node follows the
//! spare stick to the surviving one, within the failover budget. Both times are
//! printed: they are the figures a homelab sees when its busiest node dies.

use std::time::{Duration, Instant};

use homelab_api::UsbDevicePin;
use homelab_node_agent::fixtures::CONBEE_II;
use homelab_test_support::{Cluster, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use serde_json::json;

use crate::home::{RealHome, WAIT, WORKERS};
use crate::stick::{PluggedStick, advertised, by_app, consumer_on};
use crate::usb::{create_pin, pin_name, running_on};

const CONTROLLER: &str = "usbdevicepin-controller";
/// The pin's `unreachableAfter` (30 s, counted from the node's last heartbeat),
/// the node-lifecycle controller's taint, the scheduler and a pod start: what a
/// user may expect, with room for a busy machine.
const FAILOVER_BUDGET: Duration = Duration::from_secs(120);

/// Powers the node back on however the test ends.
struct Reboot(&'static str);

impl Drop for Reboot {
    fn drop(&mut self) {
        if let Err(e) = Cluster::default().node_recover(self.0) {
            eprintln!("could not power {} back on: {e}", self.0);
        }
    }
}

#[tokio::test]
async fn the_active_controllers_node_dies_and_the_standby_moves_the_consumer() {
    let _one = crate::exclusive().await;
    let home = RealHome::install("rn-takeover", &[]).await;
    let replicas = home.pods(CONTROLLER).await;
    let nodes: Vec<String> = replicas
        .values()
        .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .collect();
    println!("{CONTROLLER} replicas on {nodes:?}");
    assert_eq!(replicas.len(), 2, "{}", home.describe());
    assert!(
        nodes.contains(&WORKERS[0].to_owned()) && nodes.contains(&WORKERS[1].to_owned()),
        "not spread: {nodes:?}"
    );

    // The active replica and its node.
    let leases = home.operators.api::<Lease>();
    let leader = crate::wait_for_holder(&leases, CONTROLLER).await;
    let doomed = replicas[&leader]
        .spec
        .as_ref()
        .unwrap()
        .node_name
        .clone()
        .unwrap();
    let survivor = WORKERS.iter().find(|n| **n != doomed).unwrap().to_string();
    let doomed: &'static str = if doomed == WORKERS[0] {
        WORKERS[0]
    } else {
        WORKERS[1]
    };
    println!("leader {leader} on {doomed}; {survivor} survives");

    // The stick on the doomed node first, so the consumer runs there; then an
    // identical spare on the other node, which it stays away from while its own
    // stick is there.
    let _stick = PluggedStick::plug(doomed, &CONBEE_II, "ttyACM0", 0);
    let name = pin_name(&home.ns, "conbee");
    let pin = create_pin(
        &home.ns,
        &name,
        &CONBEE_II,
        json!({"exclusive": false, "containerPath": "/dev/zigbee"}),
    )
    .await;
    consumer_on(&home, &pin, doomed).await;
    let (pods, by_app) = (home.ns.api::<Pod>(), by_app());
    let _spare = PluggedStick::plug(&survivor, &CONBEE_II, "ttyACM0", 0);
    let pins = home.ns.api::<UsbDevicePin>();
    wait_for(&pins, &name, WAIT, |p: &UsbDevicePin| {
        p.status.as_ref().is_some_and(|s| s.presence.len() == 2)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", home.describe()));
    advertised(&home, &survivor, &name).await;

    let _reboot = Reboot(doomed);
    let started = Instant::now();
    Cluster::default().node_fail(doomed).unwrap();

    let deadline = started + FAILOVER_BUDGET;
    let mut took_over = None;
    let mut moved = None;
    while took_over.is_none() || moved.is_none() {
        assert!(
            Instant::now() < deadline,
            "after {:?}: takeover {took_over:?}, consumer moved {moved:?}\n{}",
            started.elapsed(),
            home.describe()
        );
        if took_over.is_none()
            && let Some(h) = leases
                .get_opt(CONTROLLER)
                .await
                .ok()
                .flatten()
                .as_ref()
                .and_then(crate::holder)
            && h != leader
        {
            took_over = Some((started.elapsed(), h));
        }
        if moved.is_none() {
            let list = pods.list(&by_app).await.unwrap().items;
            if list
                .iter()
                .any(|p| running_on(p).as_deref() == Some(survivor.as_str()))
            {
                moved = Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (takeover, new_leader) = took_over.unwrap();
    let moved = moved.unwrap();
    println!(
        "{doomed} powered off: Lease taken by {new_leader} after {:.1} s; consumer Running on {survivor} after {:.1} s",
        takeover.as_secs_f64(),
        moved.as_secs_f64()
    );
    if homelab_test_support::bench::enabled() {
        // The limit: the Lease's duration (the standby may take it only once
        // the dead leader's last renewal is that old).
        let lease_s = leases
            .get(CONTROLLER)
            .await
            .ok()
            .and_then(|l| l.spec)
            .and_then(|s| s.lease_duration_seconds)
            .unwrap_or_default();
        homelab_test_support::bench::record("leader_takeover_s", takeover.as_secs_f64()).unwrap();
        homelab_test_support::bench::record("leader_lease_s", lease_s).unwrap();
    }
    let pin = pins.get(&name).await.unwrap();
    let record = pin.status.and_then(|s| s.last_failover);
    println!("lastFailover: {record:?}");
    assert!(record.is_some_and(|r| r.from_node.as_deref() == Some(doomed)));

    // Power back on: the node heartbeats, and the controller lifts the mark it
    // put on the silent node, before the release goes away with the test.
    Cluster::default().node_recover(doomed).unwrap();
    let nodes = Api::<Node>::all(home.client.clone());
    wait_for(&nodes, doomed, WAIT, |n: &Node| {
        let ready = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let marked = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| t.iter().any(|t| t.key.starts_with("homelab.home.arpa/")));
        ready && !marked
    })
    .await
    .unwrap_or_else(|e| panic!("{doomed} did not come back clean: {e}"));
}
