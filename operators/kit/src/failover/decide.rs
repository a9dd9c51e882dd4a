//! What to do about a workload whose node may be lost: a pure function of what was
//! observed, so every case is a unit test.
//!
//! | observed                                                   | decision                          |
//! |------------------------------------------------------------|-----------------------------------|
//! | `mode: Disabled`                                           | `Disabled` (Kubernetes' own way)  |
//! | node heard from                                            | `Healthy` (unfence if we fenced)  |
//! | node silent for less than `unreachableAfter`               | `Wait` (look again then)          |
//! | most nodes silent at once (control plane, network)         | `Blocked: ClusterDisrupted`       |
//! | the pod holds a node-local volume                          | `Blocked: NodeLocalStorage`       |
//! | its USB device is not reported on another node             | `Blocked: DeviceNotFound`         |
//! | its USB device is on a node that may not run it            | `Blocked: NoEligibleNode`         |
//! | no other node that is Ready and allowed                    | `Blocked: NoEligibleNode`         |
//! | last failover less than `cooldown` ago (another one)       | `Blocked: CoolingDown`            |
//! | shared storage still attached to the node, not fenced, no `fenceNode` | `Blocked: VolumeStillAttached` (look again) |
//! | shared storage without attachments, not fenced, no `fenceNode` | `Blocked: FencingRequired`   |
//! | `mode: Manual`, all of the above clear                     | `Report` (say it, do nothing)     |
//! | otherwise                                                  | `Move` (fence first if `fenceNode`)|
//!
//! Shared storage is storage two nodes can mount at once (an NFS share, a CSI
//! driver without an attach step, a ReadWriteMany claim): a node that is silent
//! but still running would keep writing beside the replacement. Two things prove
//! it cannot: a fence (the out-of-service taint), or, for a driver that attaches,
//! no VolumeAttachment of the volume left on the lost node (Kubernetes detaches
//! only once the node is off or unmounted, or after its force-detach timeout).
//!
//! A node that is simply gone from the cluster counts as lost past its grace.
//! A record whose failover started from this same node and is not complete is the
//! same failover, unfinished (the operator restarted mid-way): the cooldown does not
//! stop it from finishing.

use std::time::Duration;

use homelab_api::conditions::reasons;
use homelab_api::failover::{FailoverMode, FailoverPolicy, FailoverRecord};
use jiff::Timestamp;

use super::observe::{NodeView, Reachability};

/// Something the workload's pod holds that decides whether a second copy is safe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holds {
    /// A volume that lives on the lost node (hostPath, local volume, local-path
    /// provisioner): gone with the node, so no replacement can have it.
    NodeLocalVolume {
        /// Which volume, for a person.
        what: String,
    },
    /// Storage two copies could both write without the storage stopping them (an NFS
    /// share, a ReadWriteMany claim): safe only once the lost node is fenced, or
    /// once its driver has detached it from that node.
    SharedStorage {
        /// Which volume, for a person.
        what: String,
        /// The nodes its VolumeAttachments name, when its driver attaches
        /// (`None`: no attach step, so only a fence proves the node let go).
        attached_to: Option<Vec<String>>,
    },
    /// A USB device, and the nodes whose agents report it now.
    Device {
        /// The UsbDevicePin's name.
        pin: String,
        /// Where it is plugged in now.
        reported_on: Vec<String>,
    },
}

/// Everything the decision depends on.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    /// The object's policy.
    pub policy: &'a FailoverPolicy,
    /// The node its pod runs on.
    pub node: &'a NodeView,
    /// What the pod holds that matters (nothing: stateless, or claims whose single
    /// attachment the storage itself enforces).
    pub holds: &'a [Holds],
    /// Other nodes that could run it now: Ready, allowed, able to run the image.
    pub candidates: &'a [String],
    /// The object's `status.lastFailover`.
    pub last_failover: Option<&'a FailoverRecord>,
    /// Most nodes are silent at once ([`super::observe::disrupted`]).
    pub disrupted: bool,
    /// The administrator lets failover fence nodes (`fencing.enabled` in the chart).
    pub fencing_allowed: bool,
    /// The clock.
    pub now: Timestamp,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The policy leaves it to Kubernetes.
    Disabled,
    /// The node is heard from: nothing to do; a pending move is cancelled.
    Healthy {
        /// The node carries a fence of ours that can come off now.
        unfence: bool,
    },
    /// The node is silent, but not for long enough.
    Wait {
        /// Until the grace ends.
        remaining: Duration,
    },
    /// It cannot move now; nothing is done and status says why.
    Blocked {
        /// CamelCase reason.
        reason: &'static str,
        /// Why, and what would change it.
        message: String,
        /// When it is worth looking again, if time alone can change it.
        retry: Option<Duration>,
    },
    /// `mode: Manual`: what would be done, for status and an Event.
    Report {
        /// CamelCase reason of the move it would make.
        reason: &'static str,
        /// What it would do.
        message: String,
    },
    /// Force-delete the pod on the lost node so a replacement starts elsewhere.
    Move {
        /// Add the out-of-service taint to the lost node first.
        fence: bool,
        /// CamelCase reason (`NodeUnreachable`, `DeviceMoved`).
        reason: &'static str,
        /// Why, for a person.
        message: String,
        /// Where the replacement must go, when something (a device) decides it.
        to: Option<String>,
    },
}

/// Decides. See the module's table.
#[must_use]
pub fn decide(o: &Observation<'_>) -> Decision {
    let policy = o.policy;
    if policy.mode == FailoverMode::Disabled {
        return Decision::Disabled;
    }
    let node = &o.node.name;
    let silent = match o.node.reachability {
        Reachability::Reachable => {
            return Decision::Healthy {
                unfence: o.node.fenced_by.is_some(),
            };
        }
        Reachability::Gone => "is gone from the cluster".to_owned(),
        Reachability::Lost { since } => {
            let grace = policy.unreachable_after.to_std().unwrap_or(Duration::MAX);
            let silent_for = o.now.duration_since(since).unsigned_abs();
            if silent_for < grace {
                return Decision::Wait {
                    remaining: grace.saturating_sub(silent_for),
                };
            }
            // No seconds in it: a message that changes every reconcile would be
            // written to status every time.
            format!(
                "has not been heard from for longer than failover.unreachableAfter ({})",
                policy.unreachable_after
            )
        }
    };

    if o.disrupted {
        return blocked(
            reasons::CLUSTER_DISRUPTED,
            format!(
                "node {node} {silent}, but so are most nodes: the control plane or the network is more likely at fault than the nodes, so nothing is moved"
            ),
            Some(Duration::from_secs(10)),
        );
    }

    if let Some(what) = o.holds.iter().find_map(|h| match h {
        Holds::NodeLocalVolume { what } => Some(what),
        _ => None,
    }) {
        return blocked(
            reasons::NODE_LOCAL_STORAGE,
            format!(
                "node {node} {silent}, but {what} lives on that node: no other node can run it; bring the node back, or move the data to network storage"
            ),
            None,
        );
    }

    let mut to = None;
    let mut reason = reasons::NODE_UNREACHABLE;
    if let Some((pin, reported_on)) = o.holds.iter().find_map(|h| match h {
        Holds::Device { pin, reported_on } => Some((pin, reported_on)),
        _ => None,
    }) {
        let elsewhere = reported_on.iter().find(|n| *n != node);
        let Some(target) = elsewhere.filter(|_| !reported_on.contains(node)) else {
            return blocked(
                reasons::DEVICE_NOT_FOUND,
                format!(
                    "node {node} {silent}, and UsbDevicePin {pin}'s device is not reported on any other node: plug it (or its backup) into another node"
                ),
                None,
            );
        };
        if !o.candidates.contains(target) {
            return blocked(
                reasons::NO_ELIGIBLE_NODE,
                format!(
                    "node {node} {silent}; UsbDevicePin {pin}'s device is now on {target}, which may not run the workload (allowedNodes, architecture) or is not Ready"
                ),
                None,
            );
        }
        to = Some(target.clone());
        reason = reasons::DEVICE_MOVED;
    }

    if o.candidates.iter().all(|c| c == node) {
        return blocked(
            reasons::NO_ELIGIBLE_NODE,
            format!(
                "node {node} {silent}, and no other Ready node may run the workload (allowedNodes, architecture, hardware)"
            ),
            None,
        );
    }

    if let Some(left) = cooling_down(o) {
        return blocked(
            reasons::COOLING_DOWN,
            format!(
                "node {node} {silent}, but the last failover was less than failover.cooldown ({}) ago; moving again in {}s",
                policy.cooldown,
                left.as_secs()
            ),
            Some(left),
        );
    }

    let fence = policy.fence_node && !o.node.out_of_service;
    if fence && !o.fencing_allowed {
        return blocked(
            reasons::FENCING_NOT_ALLOWED,
            format!(
                "node {node} {silent}; failover.fenceNode asks to fence it with the out-of-service taint, but the cluster's administrator has not enabled fencing (chart value fencing.enabled): ask them to, or add the taint to {node} by hand once it is off"
            ),
            None,
        );
    }
    let shared = o.holds.iter().find_map(|h| match h {
        // Detached from the lost node: the storage no longer lets it write.
        Holds::SharedStorage {
            attached_to: Some(nodes),
            ..
        } if !nodes.contains(node) => None,
        Holds::SharedStorage { what, attached_to } => Some((what, attached_to.is_some())),
        _ => None,
    });
    if let Some((what, true)) = shared
        && !o.node.out_of_service
        && !policy.fence_node
    {
        return blocked(
            reasons::VOLUME_STILL_ATTACHED,
            format!(
                "node {node} {silent}, but {what} is still attached to it and two nodes may mount it at once: the workload moves once Kubernetes detaches it (it does so by itself a few minutes after the node stops answering), or once the node.kubernetes.io/out-of-service taint is on {node}"
            ),
            Some(Duration::from_secs(30)),
        );
    }
    if let Some((what, false)) = shared
        && !o.node.out_of_service
        && !policy.fence_node
    {
        return blocked(
            reasons::FENCING_REQUIRED,
            format!(
                "node {node} {silent}, but {what} could be written by two copies if the node is in fact still running: set failover.fenceNode (only when a silent node is really off; the administrator must enable fencing too), or add the node.kubernetes.io/out-of-service taint to {node} once it is off"
            ),
            None,
        );
    }

    let how = match (&to, fence) {
        (Some(target), _) => format!("its device is now on {target}"),
        (None, true) => format!("fencing {node} with the out-of-service taint"),
        (None, false) if o.node.out_of_service => format!("{node} is fenced"),
        (None, false) => "nothing it holds can be held twice".to_owned(),
    };
    let message = format!("node {node} {silent}; moving the workload off it: {how}");
    if policy.mode == FailoverMode::Manual {
        return Decision::Report {
            reason,
            message: format!(
                "node {node} {silent}; failover.mode is Manual, so the workload stays: delete its pod (or set mode Automatic) to move it"
            ),
        };
    }
    Decision::Move {
        fence,
        reason,
        message,
        to,
    }
}

fn blocked(reason: &'static str, message: String, retry: Option<Duration>) -> Decision {
    Decision::Blocked {
        reason,
        message,
        retry,
    }
}

/// Time left in the cooldown after another failover, if any.
fn cooling_down(o: &Observation<'_>) -> Option<Duration> {
    let last = o.last_failover?;
    let unfinished_same =
        last.duration_millis.is_none() && last.from_node.as_deref() == Some(&o.node.name);
    if unfinished_same {
        return None;
    }
    let cooldown = o.policy.cooldown.to_std().ok()?;
    let since = o.now.duration_since(last.time.0).unsigned_abs();
    (o.now >= last.time.0 && since < cooldown).then(|| cooldown - since)
}

#[cfg(test)]
mod tests {
    use super::*;
    use homelab_api::duration::GoDuration;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn lost(since: i64) -> NodeView {
        NodeView {
            reachability: Reachability::Lost { since: t(since) },
            ..NodeView::reachable("pi4-2")
        }
    }

    fn candidates() -> Vec<String> {
        vec!["pi4-3".into(), "celeron-1".into()]
    }

    fn at(policy: &FailoverPolicy, node: &NodeView, holds: &[Holds], now: i64) -> Decision {
        let candidates = candidates();
        decide(&Observation {
            policy,
            node,
            holds,
            candidates: &candidates,
            last_failover: None,
            disrupted: false,
            fencing_allowed: true,
            now: t(now),
        })
    }

    fn reason(d: &Decision) -> &'static str {
        match d {
            Decision::Blocked { reason, .. }
            | Decision::Report { reason, .. }
            | Decision::Move { reason, .. } => reason,
            _ => "",
        }
    }

    #[test]
    fn disabled_leaves_it_to_kubernetes() {
        let policy = FailoverPolicy {
            mode: FailoverMode::Disabled,
            ..FailoverPolicy::default()
        };
        assert_eq!(at(&policy, &lost(0), &[], 600), Decision::Disabled);
    }

    #[test]
    fn a_heard_from_node_needs_nothing_and_loses_our_fence() {
        let policy = FailoverPolicy::default();
        let node = NodeView::reachable("pi4-2");
        assert_eq!(
            at(&policy, &node, &[], 0),
            Decision::Healthy { unfence: false }
        );
        let fenced = NodeView {
            fenced_by: Some("mediaserver-controller".into()),
            out_of_service: true,
            ..node
        };
        assert_eq!(
            at(&policy, &fenced, &[], 0),
            Decision::Healthy { unfence: true }
        );
    }

    #[test]
    fn within_the_grace_it_waits_for_the_rest_of_it() {
        let d = at(&FailoverPolicy::default(), &lost(100), &[], 112);
        assert_eq!(
            d,
            Decision::Wait {
                remaining: Duration::from_secs(8)
            }
        );
    }

    #[test]
    fn past_the_grace_with_nothing_held_twice_it_moves_without_fencing() {
        let d = at(&FailoverPolicy::default(), &lost(100), &[], 131);
        let Decision::Move {
            fence, reason, to, ..
        } = d
        else {
            panic!("{d:?}")
        };
        assert!(!fence);
        assert_eq!((reason, to), (reasons::NODE_UNREACHABLE, None));
    }

    #[test]
    fn a_node_gone_from_the_cluster_counts_as_lost() {
        let d = at(&FailoverPolicy::default(), &NodeView::gone("pi4-2"), &[], 0);
        assert!(matches!(d, Decision::Move { .. }), "{d:?}");
    }

    #[test]
    fn most_nodes_silent_at_once_moves_nothing() {
        let policy = FailoverPolicy::default();
        let node = lost(0);
        let candidates = candidates();
        let d = decide(&Observation {
            policy: &policy,
            node: &node,
            holds: &[],
            candidates: &candidates,
            last_failover: None,
            disrupted: true,
            fencing_allowed: true,
            now: t(600),
        });
        assert_eq!(reason(&d), reasons::CLUSTER_DISRUPTED);
    }

    #[test]
    fn node_local_storage_never_moves_and_says_so() {
        let holds = [Holds::NodeLocalVolume {
            what: "config hostPath /srv/jellyfin".into(),
        }];
        let d = at(&FailoverPolicy::default(), &lost(0), &holds, 600);
        assert_eq!(reason(&d), reasons::NODE_LOCAL_STORAGE);
        let Decision::Blocked { message, .. } = d else {
            panic!()
        };
        assert!(message.contains("/srv/jellyfin"), "{message}");
    }

    #[test]
    fn shared_storage_needs_a_fence_or_permission_to_fence() {
        let holds = [Holds::SharedStorage {
            what: "config NFS share nas:/c".into(),
            attached_to: None,
        }];
        let d = at(&FailoverPolicy::default(), &lost(0), &holds, 600);
        assert_eq!(reason(&d), reasons::FENCING_REQUIRED);

        let fencing = FailoverPolicy {
            fence_node: true,
            ..FailoverPolicy::default()
        };
        let d = at(&fencing, &lost(0), &holds, 600);
        assert!(matches!(d, Decision::Move { fence: true, .. }), "{d:?}");

        // The object's own fenceNode is not enough: the administrator decides.
        let candidates = candidates();
        let d = decide(&Observation {
            policy: &fencing,
            node: &lost(0),
            holds: &holds,
            candidates: &candidates,
            last_failover: None,
            disrupted: false,
            fencing_allowed: false,
            now: t(600),
        });
        assert_eq!(reason(&d), reasons::FENCING_NOT_ALLOWED);

        // An admin fenced it already: move, and do not fence again.
        let fenced = NodeView {
            out_of_service: true,
            ..lost(0)
        };
        let d = at(&FailoverPolicy::default(), &fenced, &holds, 600);
        assert!(matches!(d, Decision::Move { fence: false, .. }), "{d:?}");
    }

    #[test]
    fn shared_storage_that_attaches_moves_once_the_lost_node_let_go() {
        let attached = |nodes: &[&str]| {
            [Holds::SharedStorage {
                what: "the data on volume pv-1".into(),
                attached_to: Some(nodes.iter().map(|n| (*n).to_owned()).collect()),
            }]
        };
        // Still attached to the lost node: wait, and look again.
        let d = at(
            &FailoverPolicy::default(),
            &lost(0),
            &attached(&["pi4-2"]),
            600,
        );
        assert_eq!(reason(&d), reasons::VOLUME_STILL_ATTACHED);
        assert!(
            matches!(d, Decision::Blocked { retry: Some(_), .. }),
            "{d:?}"
        );
        // Detached (attached elsewhere or nowhere): move, without fencing.
        for nodes in [&[][..], &["pi4-3"][..]] {
            let d = at(&FailoverPolicy::default(), &lost(0), &attached(nodes), 600);
            assert!(matches!(d, Decision::Move { fence: false, .. }), "{d:?}");
        }
        // Fenced by an administrator: move even while still attached.
        let fenced = NodeView {
            out_of_service: true,
            ..lost(0)
        };
        let d = at(
            &FailoverPolicy::default(),
            &fenced,
            &attached(&["pi4-2"]),
            600,
        );
        assert!(matches!(d, Decision::Move { fence: false, .. }), "{d:?}");
        // fenceNode: fence it, then move.
        let fencing = FailoverPolicy {
            fence_node: true,
            ..FailoverPolicy::default()
        };
        let d = at(&fencing, &lost(0), &attached(&["pi4-2"]), 600);
        assert!(matches!(d, Decision::Move { fence: true, .. }), "{d:?}");
    }

    #[test]
    fn shared_storage_waits_for_the_fence_then_moves() {
        let holds = [Holds::SharedStorage {
            what: "the data on volume pv-1, an NFS share".into(),
            attached_to: None,
        }];
        let node = lost(0);
        let d = at(&FailoverPolicy::default(), &node, &holds, 600);
        let Decision::Blocked {
            reason,
            message,
            retry,
        } = d
        else {
            panic!("{d:?}")
        };
        assert_eq!(reason, reasons::FENCING_REQUIRED);
        assert!(message.contains("out-of-service"), "{message}");
        // Only a person's taint changes it: no timed retry.
        assert_eq!(retry, None);
        let fenced = NodeView {
            out_of_service: true,
            ..node
        };
        let d = at(&FailoverPolicy::default(), &fenced, &holds, 600);
        let Decision::Move { fence, message, .. } = d else {
            panic!("{d:?}")
        };
        assert!(!fence);
        assert!(message.contains("pi4-2 is fenced"), "{message}");
    }

    #[test]
    fn a_device_moves_its_consumer_to_where_it_is_now() {
        let holds = [Holds::Device {
            pin: "zigbee".into(),
            reported_on: vec!["pi4-3".into()],
        }];
        let d = at(&FailoverPolicy::default(), &lost(0), &holds, 600);
        assert_eq!(reason(&d), reasons::DEVICE_MOVED);
        assert!(matches!(d, Decision::Move { to: Some(ref n), .. } if n == "pi4-3"));
    }

    #[test]
    fn a_device_still_on_the_lost_node_or_nowhere_keeps_it() {
        for reported_on in [
            vec![],
            vec!["pi4-2".to_owned()],
            vec!["pi4-2".into(), "pi4-3".into()],
        ] {
            let holds = [Holds::Device {
                pin: "zigbee".into(),
                reported_on,
            }];
            let d = at(&FailoverPolicy::default(), &lost(0), &holds, 600);
            assert_eq!(reason(&d), reasons::DEVICE_NOT_FOUND, "{d:?}");
        }
    }

    #[test]
    fn a_device_on_a_node_that_may_not_run_it_keeps_it() {
        let holds = [Holds::Device {
            pin: "zigbee".into(),
            reported_on: vec!["rock64-1".into()],
        }];
        let d = at(&FailoverPolicy::default(), &lost(0), &holds, 600);
        assert_eq!(reason(&d), reasons::NO_ELIGIBLE_NODE);
    }

    #[test]
    fn no_other_ready_node_means_no_move() {
        let policy = FailoverPolicy::default();
        let node = lost(0);
        let only_itself = vec!["pi4-2".to_owned()];
        let d = decide(&Observation {
            policy: &policy,
            node: &node,
            holds: &[],
            candidates: &only_itself,
            last_failover: None,
            disrupted: false,
            fencing_allowed: true,
            now: t(600),
        });
        assert_eq!(reason(&d), reasons::NO_ELIGIBLE_NODE);
    }

    fn record(from: &str, to: Option<&str>, at: i64) -> FailoverRecord {
        FailoverRecord {
            from_node: Some(from.into()),
            to_node: to.map(Into::into),
            time: Time(t(at)),
            reason: reasons::NODE_UNREACHABLE.into(),
            message: None,
            fenced: false,
            duration_millis: None,
        }
    }

    fn with_record(record: &FailoverRecord, now: i64) -> Decision {
        let policy = FailoverPolicy {
            cooldown: GoDuration::from_static("10m"),
            ..FailoverPolicy::default()
        };
        let node = lost(0);
        let candidates = candidates();
        decide(&Observation {
            policy: &policy,
            node: &node,
            holds: &[],
            candidates: &candidates,
            last_failover: Some(record),
            disrupted: false,
            fencing_allowed: true,
            now: t(now),
        })
    }

    #[test]
    fn a_second_move_within_the_cooldown_waits_out_the_rest() {
        // Moved pi4-3 → pi4-2 at 100; pi4-2 dies at once: stay put until 700.
        let d = with_record(&record("pi4-3", Some("pi4-2"), 100), 400);
        assert_eq!(
            d,
            Decision::Blocked {
                reason: reasons::COOLING_DOWN,
                message: d_message(&d),
                retry: Some(Duration::from_secs(300)),
            }
        );
        let d = with_record(&record("pi4-3", Some("pi4-2"), 100), 701);
        assert!(matches!(d, Decision::Move { .. }), "{d:?}");
    }

    #[test]
    fn an_unfinished_failover_from_the_same_node_finishes_after_a_restart() {
        let d = with_record(&record("pi4-2", None, 590), 600);
        assert!(matches!(d, Decision::Move { .. }), "{d:?}");
        // Recorded with the node its device chose, then stopped before the delete.
        let d = with_record(&record("pi4-2", Some("pi4-3"), 590), 600);
        assert!(matches!(d, Decision::Move { .. }), "{d:?}");
    }

    #[test]
    fn manual_reports_what_it_would_do_and_does_nothing() {
        let policy = FailoverPolicy {
            mode: FailoverMode::Manual,
            ..FailoverPolicy::default()
        };
        let d = at(&policy, &lost(0), &[], 600);
        assert!(
            matches!(d, Decision::Report { reason: reasons::NODE_UNREACHABLE, ref message } if message.contains("Manual")),
            "{d:?}"
        );
        // Manual still says why a move would be impossible.
        let holds = [Holds::NodeLocalVolume { what: "x".into() }];
        assert_eq!(
            reason(&at(&policy, &lost(0), &holds, 600)),
            reasons::NODE_LOCAL_STORAGE
        );
    }

    fn d_message(d: &Decision) -> String {
        match d {
            Decision::Blocked { message, .. } => message.clone(),
            _ => String::new(),
        }
    }
}
