//! UsbDevicePin end to end against the real API server: node agents (one tokio task
//! per fake node, each on its own real-shaped sysfs and /dev tree, with a kubelet
//! stand-in on real device-plugin sockets) report presence with per-node field
//! managers; the controller turns it into status, conditions, node labels and Events.
//!
//! The fakes themselves are in `tests/shared/usb.rs`, shared with the disruptive
//! tests.

use std::time::Duration;

use homelab_api::UsbDevicePin;
use homelab_api::UsbDevicePinRef;
use homelab_api::conditions::Outcome;
use homelab_api::usbdevicepin::resource_name;
use homelab_kit::device_pin;
use homelab_node_agent::fixtures::{AEOTEC_ZSTICK_7, SONOFF_ZIGBEE};
use homelab_test_support::{TestNamespace, wait_for, wait_for_event_reasons, wait_for_list};
use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use serde_json::json;

use crate::usb::{
    ClusterCleanup, ControllerTask, FakeNode, WAIT, condition, condition_is, create_pin, pin_name,
};

pub fn presence_nodes(pin: &UsbDevicePin) -> Vec<String> {
    let mut nodes: Vec<String> = pin
        .status
        .iter()
        .flat_map(|s| s.presence.iter().map(|p| p.node.clone()))
        .collect();
    nodes.sort();
    nodes
}

pub fn node_label(node: &Node, key: &str) -> Option<String> {
    node.metadata.labels.as_ref()?.get(key).cloned()
}

/// Deletes the pin while the controller still runs, and waits until its finalizer
/// has taken the label off every node.
pub async fn delete_pin_and_wait_for_labels(client: &Client, ns: &TestNamespace, name: &str) {
    let pins = ns.api::<UsbDevicePin>();
    pins.delete(name, &DeleteParams::default()).await.unwrap();
    let label = resource_name(ns.name(), name);
    wait_for_list(
        &Api::<Node>::all(client.clone()),
        &ListParams::default().labels(&label),
        WAIT,
        |nodes| nodes.is_empty(),
    )
    .await
    .unwrap();
    wait_for_list(&pins, &ListParams::default(), WAIT, |items| {
        items.iter().all(|p| kube::ResourceExt::name_any(p) != name)
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn agents_report_presence_each_with_its_own_field_manager() {
    let ns = TestNamespace::with_crds("usb-presence").await.unwrap();
    let client = ns.client().clone();
    let name = pin_name(&ns, "zigbee");
    create_pin(&ns, &name, &SONOFF_ZIGBEE, json!({})).await;
    let mut pi1 = FakeNode::start(&client, ns.name(), "pi4-1").await;
    let mut pi2 = FakeNode::start(&client, ns.name(), "pi4-2").await;
    pi1.tree.plug("1-1.2", &SONOFF_ZIGBEE, "ttyUSB0").unwrap();
    pi2.tree.plug("1-1.3", &SONOFF_ZIGBEE, "ttyUSB1").unwrap();

    let pins = ns.api::<UsbDevicePin>();
    let pin = wait_for(&pins, &name, WAIT, |p| {
        presence_nodes(p) == ["pi4-1", "pi4-2"]
    })
    .await
    .unwrap();
    let status = pin.status.as_ref().unwrap();
    let on_pi1 = status.presence.iter().find(|p| p.node == "pi4-1").unwrap();
    assert_eq!(on_pi1.dev_node.as_deref(), Some("/dev/ttyUSB0"));
    assert_eq!(
        on_pi1.by_id_path.as_deref(),
        Some(format!("/dev/serial/by-id/{}", SONOFF_ZIGBEE.by_id).as_str())
    );
    assert_eq!(on_pi1.serial.as_deref(), SONOFF_ZIGBEE.serial);
    assert_eq!(on_pi1.product.as_deref(), SONOFF_ZIGBEE.product);
    assert!(on_pi1.since.is_some());
    // Each entry is owned by its node's own field manager, on the status subresource.
    let managers: Vec<(String, Option<String>)> = pin
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| (m.manager.clone().unwrap_or_default(), m.subresource.clone()))
        .collect();
    for node in ["pi4-1", "pi4-2"] {
        assert!(
            managers.contains(&(format!("node-agent/{node}"), Some("status".into()))),
            "{managers:?}"
        );
    }

    // Each node's device plugin advertises the stick to its kubelet.
    let mut advertised = pi1.advertised(&name);
    tokio::time::timeout(WAIT, advertised.wait_for(|a| a.healthy() == 1))
        .await
        .unwrap()
        .unwrap();

    // Unplugged from pi4-1: only pi4-1's entry goes; the kubelet sees no device.
    pi1.tree.unplug("1-1.2").unwrap();
    wait_for(&pins, &name, WAIT, |p| presence_nodes(p) == ["pi4-2"])
        .await
        .unwrap();
    tokio::time::timeout(WAIT, advertised.wait_for(|a| a.devices.is_empty()))
        .await
        .unwrap()
        .unwrap();

    pi1.stop().await;
    pi2.stop().await;
}

#[tokio::test]
async fn controller_reports_labels_and_flags_conflicts() {
    let ns = TestNamespace::with_crds("usb-controller").await.unwrap();
    let client = ns.client().clone();
    let name = pin_name(&ns, "zwave");
    let _cleanup = ClusterCleanup {
        namespace: ns.name().to_owned(),
        pins: vec![name.clone(), format!("{name}-b")],
        nodes: vec!["pi4-1".into(), "pi4-2".into()],
    };
    let label = resource_name(ns.name(), &name);
    let pins = ns.api::<UsbDevicePin>();
    let nodes = Api::<Node>::all(client.clone());
    let controller = ControllerTask::start(&client, ns.name());

    // No agent reports it yet: Stalled, and the message says what to do.
    create_pin(
        &ns,
        &name,
        &AEOTEC_ZSTICK_7,
        json!({"containerPath": "/dev/zwave"}),
    )
    .await;
    let pin = wait_for(&pins, &name, WAIT, |p| {
        condition_is(p, "Stalled", "True", "DeviceNotFound")
    })
    .await
    .unwrap();
    let message = &condition(&pin, "Ready").unwrap().message;
    assert!(
        message.contains("0658:0200") && message.contains("plug it into a node"),
        "{message}"
    );

    let mut pi1 = FakeNode::start(&client, ns.name(), "pi4-1").await;
    let mut pi2 = FakeNode::start(&client, ns.name(), "pi4-2").await;
    pi1.tree.plug("1-1.3", &AEOTEC_ZSTICK_7, "ttyACM0").unwrap();
    let pin = wait_for(&pins, &name, WAIT, |p| {
        condition_is(p, "Ready", "True", "DeviceFound")
    })
    .await
    .unwrap();
    let status = pin.status.as_ref().unwrap();
    assert_eq!(status.current_node.as_deref(), Some("pi4-1"));
    assert_eq!(
        status.by_id_path.as_deref(),
        Some("/dev/serial/by-id/usb-0658_0200-if00")
    );
    assert!(status.since.is_some());
    assert!(condition_is(&pin, "DevicePresent", "True", "DeviceFound"));
    assert!(condition_is(&pin, "Conflict", "False", "NoConflict"));
    assert_eq!(
        condition(&pin, "Ready").unwrap().observed_generation,
        Some(1)
    );
    wait_for(&nodes, "pi4-1", WAIT, {
        let label = label.clone();
        move |n| node_label(n, &label).as_deref() == Some("true")
    })
    .await
    .unwrap();
    wait_for_event_reasons(&ns, &name, &["DeviceAppeared"], WAIT)
        .await
        .unwrap();

    // The same (exclusive) stick model shows up on pi4-2 as well: Conflict, the
    // choice explained, consumers stay on pi4-1 and only pi4-1 keeps the label.
    pi2.tree.plug("1-1.2", &AEOTEC_ZSTICK_7, "ttyACM0").unwrap();
    let pin = wait_for(&pins, &name, WAIT, |p| {
        condition_is(p, "Conflict", "True", "DeviceOnSeveralNodes")
    })
    .await
    .unwrap();
    let message = &condition(&pin, "Conflict").unwrap().message;
    assert!(
        message.contains("pi4-1, pi4-2") && message.contains("stay on node pi4-1"),
        "{message}"
    );
    assert_eq!(
        pin.status.as_ref().unwrap().current_node.as_deref(),
        Some("pi4-1")
    );
    assert_eq!(node_label(&nodes.get("pi4-2").await.unwrap(), &label), None);
    pi2.tree.unplug("1-1.2").unwrap();
    wait_for(&pins, &name, WAIT, |p| {
        condition_is(p, "Conflict", "False", "NoConflict")
            && condition_is(p, "Ready", "True", "DeviceFound")
    })
    .await
    .unwrap();

    // A second pin matching the same device: the older pin keeps it.
    let second = format!("{name}-b");
    create_pin(&ns, &second, &AEOTEC_ZSTICK_7, json!({})).await;
    let pin = wait_for(&pins, &second, WAIT, |p| {
        condition_is(p, "Conflict", "True", "ClaimedByAnotherPin")
    })
    .await
    .unwrap();
    let message = &condition(&pin, "Conflict").unwrap().message;
    assert!(
        message.contains(&format!("{}/{name}", ns.name())),
        "{message}"
    );
    assert!(
        presence_nodes(&pin).is_empty(),
        "the agent gave the device to the older pin only"
    );

    // Steady state (agents rescanning every 2 s, the controller woken by them): no
    // write for 6 s.
    let before = pins.get(&name).await.unwrap().metadata.resource_version;
    let written = wait_for(&pins, &name, Duration::from_secs(6), move |p| {
        p.metadata.resource_version != before
    })
    .await;
    assert!(written.is_err(), "a write in steady state: {written:?}");

    delete_pin_and_wait_for_labels(&client, &ns, &second).await;
    delete_pin_and_wait_for_labels(&client, &ns, &name).await;
    controller.stop().await;
    pi1.stop().await;
    pi2.stop().await;
}

#[tokio::test]
async fn a_consumer_naming_a_missing_pin_is_stalled_naming_it() {
    let ns = TestNamespace::with_crds("usb-missing").await.unwrap();
    let client = ns.client().clone();
    let reference = UsbDevicePinRef {
        name: "zwave-nowhere".into(),
    };
    let err = device_pin::resolve(&client, ns.name(), &reference)
        .await
        .unwrap_err();
    match err.outcome() {
        Outcome::Stalled { reason, message } => {
            assert_eq!(reason, "ReferenceNotFound");
            assert!(
                message.contains("UsbDevicePin zwave-nowhere not found"),
                "{message}"
            );
            assert!(message.contains(ns.name()), "{message}");
        }
        other => panic!("expected Stalled, got {other:?}"),
    }
}
