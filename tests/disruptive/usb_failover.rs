//! A Zigbee coordinator's consumer whose node loses power, with an identical backup
//! stick on another node (`exclusive: false`, as the pin's documentation says for
//! intentional spares): the consumer is Running on the backup's node without a
//! manual step, and at no sampled moment do two consumer pods run.
//!
//! The lost node's agent dies with it (its task is aborted, so it withdraws nothing:
//! its presence entry stays, as a dead node's would), and so does its kubelet
//! stand-in (the node keeps advertising the device it can no longer hand out). The
//! controller must see through both. A second test kills the controller (as
//! SIGKILL would) when it acts, and a fresh one finishes the job.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use homelab_api::UsbDevicePin;
use homelab_api::conditions::reasons;
use homelab_api::usbdevicepin::resource_name;
use homelab_kit::failover::fence::SILENT_TAINT;
use homelab_node_agent::fixtures::SONOFF_ZIGBEE;
use homelab_test_support::pods::{taint_keys, wait_only_pod_on};
use homelab_test_support::sample::PodSampler;
use homelab_test_support::{Cluster, TestNamespace, wait_for, wait_for_list};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::failover::RecoverOnDrop;
use crate::usb::{
    APP, ClusterCleanup, ControllerTask, FakeNode, WAIT, condition_is, follow_plugin, found_pin,
    pin_name, ready, running_on, start_consumer,
};

/// Where the stick and the consumer are, until it loses power.
const LOST: &str = "pi4-2";
/// Where the backup stick is.
const BACKUP: &str = "pi4-3";

/// A consumer pod that holds the device: Running, and not being deleted.
fn holding(pod: &Pod) -> bool {
    running_on(pod).is_some() && pod.metadata.deletion_timestamp.is_none()
}

#[tokio::test]
async fn a_consumer_follows_the_backup_stick_when_its_node_dies() {
    node_loss_with_a_backup_stick("usb-failover", false).await;
}

#[tokio::test]
async fn a_controller_killed_when_it_acts_is_finished_by_the_next_one() {
    node_loss_with_a_backup_stick("usb-failover-kill", true).await;
}

async fn node_loss_with_a_backup_stick(prefix: &str, kill_mid_way: bool) {
    let _exclusive = crate::exclusive().await;
    // The controllers' logs; RUST_LOG=homelab=debug shows their decisions.
    let _ = homelab_kit::telemetry::init();
    let ns = TestNamespace::with_crds(prefix).await.unwrap();
    let client = ns.client().clone();
    let name = pin_name(&ns, "zigbee");
    let _cleanup = ClusterCleanup {
        namespace: ns.name().to_owned(),
        pins: vec![name.clone()],
        nodes: vec![LOST.into(), BACKUP.into()],
    };
    let pins = ns.api::<UsbDevicePin>();
    let pods = ns.api::<Pod>();
    let nodes = Api::<Node>::all(client.clone());

    let mut lost = FakeNode::start(&client, ns.name(), LOST).await;
    let mut backup = FakeNode::start(&client, ns.name(), BACKUP).await;
    let mut controller = ControllerTask::start(&client, ns.name());
    let lost_kubelet = follow_plugin(&client, &lost, &name);
    let backup_kubelet = follow_plugin(&client, &backup, &name);

    // The coordinator stick on pi4-2; the consumer starts there.
    lost.tree.plug("1-1.2", &SONOFF_ZIGBEE, "ttyUSB0").unwrap();
    let pin = found_pin(
        &ns,
        &name,
        &SONOFF_ZIGBEE,
        json!({"containerPath": "/dev/zigbee", "exclusive": false,
               "failover": {"preferredNodes": [LOST]}}),
    )
    .await;
    start_consumer(&ns, &pin).await;
    let selector = ListParams::default().labels(&format!("app={APP}"));
    let first = wait_only_pod_on(&pods, &selector, LOST, WAIT)
        .await
        .unwrap()
        .name_any();

    // The backup stick (an identical one, restored from the coordinator's backup) is
    // plugged into pi4-3: reported and advertised there, and nothing moves.
    backup
        .tree
        .plug("1-1.3", &SONOFF_ZIGBEE, "ttyUSB0")
        .unwrap();
    let resource = resource_name(ns.name(), &name);
    wait_for(&nodes, BACKUP, WAIT, move |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get(&resource))
            .is_some_and(|q| q.0 == "1")
    })
    .await
    .unwrap();
    wait_for(&pins, &name, WAIT, {
        let first = first.clone();
        move |p| {
            p.status.as_ref().is_some_and(|s| {
                s.presence.len() == 2
                    && s.current_node.as_deref() == Some(LOST)
                    && s.holder_pod.as_deref() == Some(first.as_str())
            }) && condition_is(p, "Ready", "True", "DeviceFound")
        }
    })
    .await
    .unwrap();

    // Sample the consumers every 100 ms from here on, noting when the first pod
    // was seen gone, or being deleted: the controller acted.
    let acted: Arc<Mutex<Option<Instant>>> = Arc::default();
    let sampler = PodSampler::start(
        pods.clone(),
        selector.clone(),
        Duration::from_millis(100),
        {
            let (acted, first) = (acted.clone(), first.clone());
            move |pods| {
                if !pods.iter().any(|p| p.name_any() == first && holding(p)) {
                    acted.lock().unwrap().get_or_insert_with(Instant::now);
                }
                pods.iter().filter(|p| holding(p)).count()
            }
        },
    );

    // pi4-2 loses power: its kubelet falls silent, its agent dies with it.
    let cluster = Cluster::default();
    let _recover = RecoverOnDrop(LOST);
    let failed_at = Instant::now();
    cluster.node_fail(LOST).unwrap();
    lost_kubelet.abort();
    lost.kill().await;

    let mut killed_at = None;
    if kill_mid_way {
        // The controller marks the node first, then removes the pod: kill it right
        // when the mark shows, so the removal is lost with it (or only just made).
        wait_for(&nodes, LOST, Duration::from_secs(180), |n: &Node| {
            taint_keys(n).iter().any(|t| t == SILENT_TAINT)
        })
        .await
        .unwrap();
        controller.kill().await;
        killed_at = Some(failed_at.elapsed());
        controller = ControllerTask::start(&client, ns.name());
    }

    let moved = wait_for_list(&pods, &selector, Duration::from_secs(180), |pods| {
        pods.iter()
            .any(|p| running_on(p).as_deref() == Some(BACKUP) && ready(p))
    })
    .await
    .unwrap();
    let elapsed = failed_at.elapsed();
    let sampled = sampler.stop().await;
    let second = moved
        .iter()
        .find(|p| running_on(p).as_deref() == Some(BACKUP))
        .map(ResourceExt::name_any)
        .unwrap();
    assert_ne!(second, first);
    assert!(
        sampled.most <= 1,
        "two consumer pods were Running with the pin at once"
    );
    assert!(
        taint_keys(&nodes.get(LOST).await.unwrap())
            .iter()
            .any(|t| t == SILENT_TAINT),
        "{LOST} should be marked so the replacement is not placed back there"
    );

    // The pin tells the story; one live consumer in the end.
    let pin = wait_for(&pins, &name, WAIT, {
        let second = second.clone();
        move |p| {
            p.status.as_ref().is_some_and(|s| {
                s.current_node.as_deref() == Some(BACKUP)
                    && s.holder_pod.as_deref() == Some(second.as_str())
            }) && condition_is(p, "Ready", "True", "DeviceFound")
        }
    })
    .await
    .unwrap();
    let status = pin.status.unwrap();
    let live: Vec<String> = pods
        .list(&selector)
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(live, std::slice::from_ref(&second), "one live consumer pod");
    let last_move = status.last_move.unwrap();
    assert_eq!(
        (last_move.from_node.as_deref(), last_move.to_node.as_str()),
        (Some(LOST), BACKUP)
    );
    // The record is written before the pod is removed, so a controller killed
    // between the two loses nothing: the next one finds the record, or decides
    // (and records) the same move again.
    let record = status.last_failover;
    let written = record.as_ref().map(|r| {
        (
            r.from_node.as_deref(),
            r.to_node.as_deref(),
            r.reason.as_str(),
        )
    });
    assert_eq!(
        written,
        Some((Some(LOST), Some(BACKUP), reasons::NODE_UNREACHABLE)),
        "status.lastFailover of the pin"
    );
    eprintln!(
        "failover: UsbDevicePin consumer Running and Ready on the backup stick's node {BACKUP} {:.1}s after node-fail {LOST} (old pod seen gone at {:.1}s){} ({} samples, at most {} consumer pod(s) Running at once; lastFailover {:?})",
        elapsed.as_secs_f64(),
        acted
            .lock()
            .unwrap()
            .map_or(f64::NAN, |t| t.duration_since(failed_at).as_secs_f64()),
        killed_at.map_or(String::new(), |k| format!(
            "; first controller killed at {:.1}s",
            k.as_secs_f64()
        )),
        sampled.samples,
        sampled.most,
        record
            .as_ref()
            .map(|r| (&r.from_node, &r.to_node, &r.reason, r.duration_millis)),
    );

    // pi4-2 comes back: its mark comes off, and the consumer stays on pi4-3.
    cluster.node_recover(LOST).unwrap();
    wait_for(&nodes, LOST, Duration::from_secs(120), |n: &Node| {
        !taint_keys(n).iter().any(|t| t == SILENT_TAINT)
    })
    .await
    .unwrap();
    let pin = pins.get(&name).await.unwrap();
    assert_eq!(
        pin.status.as_ref().and_then(|s| s.current_node.as_deref()),
        Some(BACKUP)
    );
    eprintln!(
        "release: {LOST} heartbeats again and lost {SILENT_TAINT}; the consumer stays on {BACKUP}"
    );

    controller.stop().await;
    backup_kubelet.abort();
    backup.stop().await;
}
