#![allow(clippy::unwrap_used)]

use super::*;
use homelab_api::UsbDevicePinStatus;
use homelab_api::conditions::find_condition;
use serde_json::json;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn pin(
    name: &str,
    created: i64,
    spec: serde_json::Value,
    presence: &[(&str, i64)],
) -> UsbDevicePin {
    let mut pin = UsbDevicePin::new(name, serde_json::from_value(spec).unwrap());
    pin.metadata.namespace = Some("home".into());
    pin.metadata.generation = Some(1);
    pin.metadata.creation_timestamp = Some(Time(t(created)));
    pin.status = Some(UsbDevicePinStatus {
        presence: presence
            .iter()
            .map(|(node, since)| DevicePresence {
                node: (*node).into(),
                by_id_path: Some("/dev/serial/by-id/usb-0658_0200-if00".into()),
                dev_node: Some("/dev/ttyACM0".into()),
                serial: None,
                manufacturer: None,
                product: None,
                since: Some(Time(t(*since))),
            })
            .collect(),
        ..UsbDevicePinStatus::default()
    });
    pin
}

fn zwave(presence: &[(&str, i64)]) -> UsbDevicePin {
    pin(
        "zwave",
        0,
        json!({"vendorId": "0658", "productId": "0200"}),
        presence,
    )
}

fn consumer(name: &str, node: &str, started: i64) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "home"},
        "spec": {"nodeName": node, "containers": [{
            "name": "zwave-js-ui", "image": "zwavejs/zwave-js-ui:9",
            "resources": {"limits": {"home.devices.homelab.home.arpa/zwave": "1"}}
        }]},
        "status": {"phase": "Running", "startTime": Time(t(started)),
                   "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": Time(t(started + 1))}]}
    }))
    .unwrap()
}

/// The pin after `decision` was written, as the next reconcile reads it.
fn written(mut pin: UsbDevicePin, decision: &Decision) -> UsbDevicePin {
    let status = pin.status.get_or_insert_with(Default::default);
    let s = decision.status.clone();
    status.conditions = s.conditions;
    status.current_node = s.current_node;
    status.by_id_path = s.by_id_path;
    status.holder_pod = s.holder_pod;
    status.since = s.since;
    status.last_move = s.last_move;
    status.last_failover = s.last_failover;
    status.observed_generation = s.observed_generation;
    pin
}

fn reason<'a>(d: &'a Decision, type_: &str) -> (&'a str, &'a str) {
    let c = find_condition(&d.status.conditions, type_).unwrap();
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn present_device_is_ready_held_and_labelled() {
    let pods = [consumer("zwave-0", "pi4-1", 20)];
    let d = decide(&zwave(&[("pi4-1", 10)]), &[], &pods, &[], t(30));
    assert_eq!(d.status.current_node.as_deref(), Some("pi4-1"));
    assert_eq!(d.status.holder_pod.as_deref(), Some("zwave-0"));
    assert_eq!(d.status.since, Some(Time(t(10))));
    assert_eq!(reason(&d, "Ready"), ("True", "DeviceFound"));
    assert_eq!(reason(&d, "DevicePresent"), ("True", "DeviceFound"));
    assert_eq!(reason(&d, "Conflict"), ("False", NO_CONFLICT));
    assert_eq!(d.labelled_nodes.iter().collect::<Vec<_>>(), ["pi4-1"]);
    assert!(d.removals.is_empty());
    assert_eq!(d.notes[0].reason, DEVICE_APPEARED);
}

#[test]
fn a_steady_state_decides_the_same_status_again() {
    let pods = [consumer("zwave-0", "pi4-1", 20)];
    let first = decide(&zwave(&[("pi4-1", 10)]), &[], &pods, &[], t(30));
    let again = decide(
        &written(zwave(&[("pi4-1", 10)]), &first),
        &[],
        &pods,
        &[],
        t(900),
    );
    assert_eq!(again.status, first.status);
    assert!(again.notes.is_empty());
}

#[test]
fn absent_device_stalls_and_keeps_the_last_node() {
    let before = decide(&zwave(&[("pi4-1", 10)]), &[], &[], &[], t(30));
    let mut pin = written(zwave(&[]), &before);
    pin.status.as_mut().unwrap().presence.clear();
    let d = decide(&pin, &[], &[], &[], t(40));
    assert_eq!(reason(&d, "Ready"), ("False", "DeviceNotFound"));
    assert_eq!(reason(&d, "Stalled"), ("True", "DeviceNotFound"));
    assert_eq!(d.status.current_node.as_deref(), Some("pi4-1"));
    assert!(d.labelled_nodes.is_empty());
    assert_eq!(d.notes[0].reason, DEVICE_DISAPPEARED);
}

#[test]
fn a_moved_device_moves_its_consumer() {
    let pods = [consumer("zwave-0", "pi4-1", 20)];
    let before = decide(&zwave(&[("pi4-1", 10)]), &[], &pods, &[], t(30));
    let mut moved = written(zwave(&[]), &before);
    moved.status.as_mut().unwrap().presence = zwave(&[("pi4-2", 50)]).status.unwrap().presence;
    let d = decide(&moved, &[], &pods, &[], t(51));
    assert_eq!(d.status.current_node.as_deref(), Some("pi4-2"));
    let m = d.status.last_move.as_ref().unwrap();
    assert_eq!(
        (m.from_node.as_deref(), m.to_node.as_str()),
        (Some("pi4-1"), "pi4-2")
    );
    assert_eq!(d.removals.len(), 1);
    assert_eq!(
        (d.removals[0].pod.as_str(), d.removals[0].force),
        ("zwave-0", false)
    );
    assert_eq!(reason(&d, "Ready"), ("False", "DeviceMoved"));
    assert_eq!(reason(&d, "Reconciling"), ("True", "DeviceMoved"));
    let f = d.status.last_failover.as_ref().unwrap();
    assert_eq!(
        (f.from_node.as_deref(), f.to_node.as_deref()),
        (Some("pi4-1"), Some("pi4-2"))
    );
    assert!(d.notes.iter().any(|n| n.reason == "DeviceMoved"));

    // The new consumer runs on pi4-2: Ready, and the failover's duration is known.
    let after = written(moved, &d);
    let d2 = decide(&after, &[], &[consumer("zwave-1", "pi4-2", 53)], &[], t(60));
    assert_eq!(reason(&d2, "Ready"), ("True", "DeviceFound"));
    assert_eq!(d2.status.holder_pod.as_deref(), Some("zwave-1"));
    assert_eq!(
        d2.status.last_failover.unwrap().duration_millis,
        Some(3_000)
    );
}

#[test]
fn a_consumer_stuck_on_a_lost_node_is_removed_at_once_after_the_grace() {
    let mut stuck = consumer("zwave-0", "pi4-1", 20);
    stuck.metadata.deletion_timestamp = Some(Time(t(50)));
    let pin = zwave(&[("pi4-2", 40)]);
    assert!(
        decide(&pin, &[], &[stuck.clone()], &[], t(60))
            .removals
            .is_empty()
    );
    let d = decide(&pin, &[], &[stuck], &[], t(81));
    assert!(d.removals[0].force);
}

#[test]
fn a_re_enumerated_device_restarts_its_consumer() {
    let pods = [consumer("zwave-0", "pi4-1", 20)];
    let d = decide(&zwave(&[("pi4-1", 100)]), &[], &pods, &[], t(101));
    assert_eq!(d.removals.len(), 1);
    assert_eq!(d.removals[0].reason, CONSUMER_RESTARTED);
}

#[test]
fn an_exclusive_device_on_two_nodes_is_a_conflict_and_consumers_stay() {
    let pods = [consumer("zwave-0", "pi4-1", 20)];
    let before = decide(&zwave(&[("pi4-1", 10)]), &[], &pods, &[], t(15));
    let mut both = written(zwave(&[]), &before);
    both.status.as_mut().unwrap().presence = zwave(&[("pi4-2", 5), ("pi4-1", 10)])
        .status
        .unwrap()
        .presence;
    let d = decide(&both, &[], &pods, &[], t(30));
    assert_eq!(reason(&d, "Conflict"), ("True", "DeviceOnSeveralNodes"));
    assert_eq!(reason(&d, "Stalled"), ("True", "DeviceOnSeveralNodes"));
    assert_eq!(d.status.current_node.as_deref(), Some("pi4-1"));
    let message = &find_condition(&d.status.conditions, "Conflict")
        .unwrap()
        .message;
    assert!(
        message.contains("pi4-1, pi4-2") && message.contains("stay on node pi4-1"),
        "{message}"
    );
    assert!(d.removals.is_empty());
    assert_eq!(d.labelled_nodes.iter().collect::<Vec<_>>(), ["pi4-1"]);
}

#[test]
fn without_a_previous_node_the_earliest_report_wins() {
    let d = decide(&zwave(&[("pi4-2", 5), ("pi4-1", 10)]), &[], &[], &[], t(30));
    assert_eq!(d.status.current_node.as_deref(), Some("pi4-2"));
}

#[test]
fn a_younger_pin_matching_the_same_device_is_in_conflict() {
    let older = Arc::new(zwave(&[("pi4-1", 10)]));
    let younger = pin(
        "zwave-too",
        100,
        json!({"vendorId": "0658", "productId": "0200"}),
        &[],
    );
    let d = decide(&younger, std::slice::from_ref(&older), &[], &[], t(200));
    assert_eq!(reason(&d, "Conflict"), ("True", "ClaimedByAnotherPin"));
    let message = &find_condition(&d.status.conditions, "Conflict")
        .unwrap()
        .message;
    assert!(message.contains("home/zwave"), "{message}");
    // The older pin is not in conflict with the younger one.
    let d = decide(&older, &[Arc::new(younger)], &[], &[], t(200));
    assert_eq!(reason(&d, "Conflict"), ("False", NO_CONFLICT));
}

#[test]
fn manual_mode_reports_instead_of_moving() {
    let pods = [consumer("zwave-0", "pi4-1", 20)];
    let mut pin = pin(
        "zwave",
        0,
        json!({"vendorId": "0658", "productId": "0200", "failover": {"mode": "Manual"}}),
        &[("pi4-2", 50)],
    );
    pin.status.as_mut().unwrap().current_node = Some("pi4-1".into());
    let d = decide(&pin, &[], &pods, &[], t(60));
    assert!(d.removals.is_empty());
    assert!(d.notes.iter().any(|n| n.reason == FAILOVER_SKIPPED));
}

/// `node` silent since `since` (its Lease last renewed then).
fn silent(node: &str, since: i64) -> NodeView {
    NodeView {
        reachability: homelab_kit::failover::Reachability::Lost { since: t(since) },
        ..NodeView::reachable(node)
    }
}

/// A consumer on pi4-1 with the pin's stick there and an identical backup stick on
/// pi4-2 (`exclusive: false`), as the previous reconcile left it.
fn with_backup(exclusive: bool) -> (UsbDevicePin, [Pod; 1]) {
    let pods = [consumer("zwave-0", "pi4-1", 20)];
    let spec = json!({"vendorId": "0658", "productId": "0200", "exclusive": exclusive,
                      "failover": {"preferredNodes": ["pi4-1"]}});
    let before = decide(
        &pin("zwave", 0, spec.clone(), &[("pi4-1", 10)]),
        &[],
        &pods,
        &[],
        t(30),
    );
    let mut pin = written(pin("zwave", 0, spec, &[("pi4-1", 10)]), &before);
    pin.status.as_mut().unwrap().presence = zwave(&[("pi4-1", 10), ("pi4-2", 40)])
        .status
        .unwrap()
        .presence;
    (pin, pods)
}

#[test]
fn with_a_backup_stick_the_consumer_stays_while_its_node_heartbeats() {
    let (pin, pods) = with_backup(false);
    let d = decide(&pin, &[], &pods, &[NodeView::reachable("pi4-1")], t(100));
    assert_eq!(d.status.current_node.as_deref(), Some("pi4-1"));
    assert_eq!(d.status.holder_pod.as_deref(), Some("zwave-0"));
    assert!(d.removals.is_empty() && d.mark_lost.is_empty());
    assert_eq!(
        d.labelled_nodes.iter().collect::<Vec<_>>(),
        ["pi4-1", "pi4-2"]
    );
}

#[test]
fn a_node_silent_within_the_grace_changes_nothing_but_is_looked_at_again() {
    let (pin, pods) = with_backup(false);
    let d = decide(&pin, &[], &pods, &[silent("pi4-1", 90)], t(100));
    assert_eq!(d.status.current_node.as_deref(), Some("pi4-1"));
    assert!(d.removals.is_empty() && d.mark_lost.is_empty());
    // 20 s of grace (the default unreachableAfter) from the last heartbeat at 90,
    // plus a second.
    assert_eq!(d.recheck, Some(Duration::from_secs(11)));
}

#[test]
fn a_lost_node_s_stale_entry_is_disregarded_and_its_consumer_force_removed_to_the_backup() {
    let (pin, pods) = with_backup(false);
    let d = decide(&pin, &[], &pods, &[silent("pi4-1", 60)], t(100));
    assert_eq!(d.status.current_node.as_deref(), Some("pi4-2"));
    assert_eq!(d.removals.len(), 1);
    let r = &d.removals[0];
    assert_eq!(
        (r.pod.as_str(), r.force, r.reason),
        ("zwave-0", true, "FailedOver")
    );
    assert!(r.message.contains("stopped heartbeating"), "{}", r.message);
    assert_eq!(d.mark_lost.iter().collect::<Vec<_>>(), ["pi4-1"]);
    // The dead node is no longer labelled: nothing is placed there by the label.
    assert_eq!(d.labelled_nodes.iter().collect::<Vec<_>>(), ["pi4-2"]);
    let f = d.status.last_failover.as_ref().unwrap();
    assert_eq!(
        (
            f.from_node.as_deref(),
            f.to_node.as_deref(),
            f.reason.as_str()
        ),
        (Some("pi4-1"), Some("pi4-2"), "NodeUnreachable")
    );
    assert_eq!(reason(&d, "Reconciling"), ("True", "DeviceMoved"));
    assert_eq!(d.recheck, None);

    // The replacement runs on pi4-2; the old pod is gone. Settled: the dead node's
    // entry does not pull the consumer back, nor is it a conflict.
    let after = written(pin, &d);
    let d2 = decide(
        &after,
        &[],
        &[consumer("zwave-1", "pi4-2", 105)],
        &[silent("pi4-1", 60)],
        t(110),
    );
    assert_eq!(reason(&d2, "Ready"), ("True", "DeviceFound"));
    assert_eq!(d2.status.holder_pod.as_deref(), Some("zwave-1"));
    assert!(d2.removals.is_empty() && d2.mark_lost.is_empty());
    assert_eq!(
        d2.status.last_failover.as_ref().unwrap().duration_millis,
        Some(6_000)
    );

    // pi4-1 comes back: the consumer is not moved back (no flapping).
    let back = written(after, &d2);
    let d3 = decide(
        &back,
        &[],
        &[consumer("zwave-1", "pi4-2", 105)],
        &[NodeView::reachable("pi4-1")],
        t(200),
    );
    assert_eq!(d3.status.current_node.as_deref(), Some("pi4-2"));
    assert!(d3.removals.is_empty());
}

#[test]
fn an_exclusive_pin_whose_node_died_follows_the_stick_plugged_in_elsewhere() {
    // Without the lost node's stale entry there is one device, not two: no conflict.
    let (pin, pods) = with_backup(true);
    let d = decide(&pin, &[], &pods, &[NodeView::reachable("pi4-1")], t(100));
    assert_eq!(reason(&d, "Conflict"), ("True", "DeviceOnSeveralNodes"));
    let d = decide(&pin, &[], &pods, &[silent("pi4-1", 60)], t(100));
    assert_eq!(reason(&d, "Conflict"), ("False", NO_CONFLICT));
    assert_eq!(d.status.current_node.as_deref(), Some("pi4-2"));
    assert!(d.removals[0].force);
}

#[test]
fn a_device_only_on_a_lost_node_leaves_the_consumer_and_says_why() {
    let pods = [consumer("zwave-0", "pi4-1", 20)];
    let before = decide(&zwave(&[("pi4-1", 10)]), &[], &pods, &[], t(30));
    let pin = written(zwave(&[("pi4-1", 10)]), &before);
    let d = decide(&pin, &[], &pods, &[silent("pi4-1", 60)], t(100));
    assert!(d.removals.is_empty() && d.mark_lost.is_empty());
    assert_eq!(d.status.current_node.as_deref(), Some("pi4-1"));
    assert_eq!(reason(&d, "Stalled"), ("True", "NodeUnreachable"));
    let present = find_condition(&d.status.conditions, "DevicePresent").unwrap();
    assert!(
        present.message.contains("only node pi4-1"),
        "{}",
        present.message
    );
}

#[test]
fn manual_mode_reports_a_lost_node_and_marks_nothing() {
    let (mut pin, pods) = with_backup(false);
    pin.spec.failover.mode = FailoverMode::Manual;
    let d = decide(&pin, &[], &pods, &[silent("pi4-1", 60)], t(100));
    assert!(d.removals.is_empty() && d.mark_lost.is_empty());
    assert!(d.notes.iter().any(|n| n.reason == FAILOVER_SKIPPED));
}
