//! The scenario of issue 4: a Zigbee stick moves from pi4-1 to pi4-2 and its consumer
//! follows without any manual step.
//!
//! One agent per fake node, each on its own sysfs/dev tree; the test plays each
//! kubelet's part in two ways: its kubelet stand-in follows the node's device plugin
//! over the real gRPC protocol, and the test copies what that plugin advertises into
//! the Node's capacity and allocatable, as a kubelet would. The real scheduler then
//! places the consumer. A sampler checks that at no moment two consumer pods run.

use std::time::{Duration, Instant};

use homelab_api::UsbDevicePin;
use homelab_api::usbdevicepin::resource_name;
use homelab_node_agent::fixtures::SONOFF_ZIGBEE;
use homelab_test_support::pods::wait_only_pod_on;
use homelab_test_support::sample::PodSampler;
use homelab_test_support::{TestNamespace, wait_for, wait_for_event_reasons, wait_for_list};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::ListParams;
use serde_json::json;

use crate::usb::{
    APP, ClusterCleanup, ControllerTask, FakeNode, WAIT, condition_is, follow_plugin, found_pin,
    pin_name, ready, running_on, start_consumer,
};
use crate::usbdevicepin::delete_pin_and_wait_for_labels;

#[tokio::test]
async fn the_consumer_follows_a_stick_moved_from_pi4_1_to_pi4_2() {
    let ns = TestNamespace::with_crds("usb-moves").await.unwrap();
    let client = ns.client().clone();
    let name = pin_name(&ns, "zigbee");
    let _cleanup = ClusterCleanup {
        namespace: ns.name().to_owned(),
        pins: vec![name.clone()],
        nodes: vec!["pi4-1".into(), "pi4-2".into()],
    };
    let pins = ns.api::<UsbDevicePin>();
    let pods = ns.api::<Pod>();

    let mut pi1 = FakeNode::start(&client, ns.name(), "pi4-1").await;
    let mut pi2 = FakeNode::start(&client, ns.name(), "pi4-2").await;
    let controller = ControllerTask::start(&client, ns.name());
    let followers = [
        follow_plugin(&client, &pi1, &name),
        follow_plugin(&client, &pi2, &name),
    ];
    pi1.tree.plug("1-1.2", &SONOFF_ZIGBEE, "ttyUSB0").unwrap();
    let pin = found_pin(
        &ns,
        &name,
        &SONOFF_ZIGBEE,
        json!({"containerPath": "/dev/zigbee"}),
    )
    .await;

    // The consumer asks for the pin through the kit helper: one unit of its resource.
    start_consumer(&ns, &pin).await;
    let selector = ListParams::default().labels(&format!("app={APP}"));
    let first = wait_only_pod_on(&pods, &selector, "pi4-1", WAIT)
        .await
        .unwrap();
    let first = kube::ResourceExt::name_any(&first);
    wait_for(&pins, &name, WAIT, {
        let first = first.clone();
        move |p| p.status.as_ref().and_then(|s| s.holder_pod.as_deref()) == Some(first.as_str())
    })
    .await
    .unwrap();

    // Sample the consumers every 100 ms from here on.
    let sampler = PodSampler::start(
        pods.clone(),
        selector.clone(),
        Duration::from_millis(100),
        |pods| pods.iter().filter(|p| running_on(p).is_some()).count(),
    );

    // The stick's files move from pi4-1's tree to pi4-2's (another port, another tty).
    let moved = Instant::now();
    pi1.tree.unplug("1-1.2").unwrap();
    pi2.tree.plug("1-1.3", &SONOFF_ZIGBEE, "ttyUSB0").unwrap();

    let second = wait_for_list(&pods, &selector, Duration::from_secs(120), |pods| {
        pods.iter()
            .any(|p| running_on(p).as_deref() == Some("pi4-2") && ready(p))
    })
    .await
    .unwrap();
    let elapsed = moved.elapsed();
    let sampled = sampler.stop().await;
    println!(
        "stick moved pi4-1 -> pi4-2: consumer Running and Ready on pi4-2 after {:.2} s ({} samples, at most {} consumer pod(s) Running at once)",
        elapsed.as_secs_f64(),
        sampled.samples,
        sampled.most,
    );
    if homelab_test_support::bench::enabled() {
        homelab_test_support::bench::record("device_move_s", elapsed.as_secs_f64()).unwrap();
    }
    assert!(
        sampled.most <= 1,
        "two consumer pods were Running with the pin at once"
    );
    let second = second
        .iter()
        .find(|p| running_on(p).as_deref() == Some("pi4-2"))
        .map(kube::ResourceExt::name_any)
        .unwrap();
    assert_ne!(second, first);

    // The pin tells the story.
    let pin = wait_for(&pins, &name, WAIT, {
        let second = second.clone();
        move |p| {
            p.status.as_ref().is_some_and(|s| {
                s.current_node.as_deref() == Some("pi4-2")
                    && s.holder_pod.as_deref() == Some(second.as_str())
            }) && condition_is(p, "Ready", "True", "DeviceFound")
        }
    })
    .await
    .unwrap();
    let status = pin.status.unwrap();
    let last_move = status.last_move.unwrap();
    assert_eq!(
        (last_move.from_node.as_deref(), last_move.to_node.as_str()),
        (Some("pi4-1"), "pi4-2")
    );
    let failover = status.last_failover.unwrap();
    assert_eq!(failover.reason, "DeviceMoved");
    println!(
        "controller's own record: failover to Ready in {:?} ms",
        failover.duration_millis
    );
    wait_for_event_reasons(
        &ns,
        &name,
        &["DeviceAppeared", "DeviceMoved", "FailedOver"],
        WAIT,
    )
    .await
    .unwrap();
    let labelled = Api::<Node>::all(client.clone()).get("pi4-2").await.unwrap();
    assert_eq!(
        crate::usbdevicepin::node_label(&labelled, &resource_name(ns.name(), &name)).as_deref(),
        Some("true")
    );

    // The kubelet creating the container asks pi4-2's plugin: the device node,
    // at the path the consumer asked for.
    let advertised = pi2.advertised(&name).borrow().clone();
    let id = advertised.devices[0].id.clone();
    let resource = resource_name(ns.name(), &name);
    let allocated = pi2.kubelet.allocate(&resource, &[&id]).await.unwrap();
    let device = &allocated.container_responses[0].devices[0];
    assert_eq!(
        (device.host_path.as_str(), device.container_path.as_str()),
        ("/dev/ttyUSB0", "/dev/zigbee")
    );

    delete_pin_and_wait_for_labels(&client, &ns, &name).await;
    controller.stop().await;
    pi1.stop().await;
    pi2.stop().await;
    for follower in followers {
        follower.abort();
    }
}
