//! The whole decision of one reconcile, as a pure function of the pin, the other
//! pins, its consumer pods, what is known of the nodes involved and the clock: the
//! status to write, the node labels, the pods to remove, the nodes to mark lost, the
//! Events to publish.
//!
//! A node silent past `failover.unreachableAfter` is lost: its presence entry (its
//! dead agent cannot withdraw it) is disregarded, so the device counts as being only
//! where a live agent reports it (a backup stick on another node), and a consumer
//! left on the lost node is force-removed at once, since the stick it held stays
//! with that node and the one its replacement gets is another.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use homelab_api::conditions::{
    ConditionStatus, Outcome, new_condition, set_condition, set_outcome,
};
use homelab_api::conditions::{reasons, types};
use homelab_api::failover::{FailoverMode, FailoverRecord};
use homelab_api::usbdevicepin::{DeviceMove, DevicePresence};
use homelab_api::{ConditionedStatus, UsbDevicePin};
use homelab_kit::device_pin::claim_order;
use homelab_kit::failover::NodeView;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use crate::consumers;
use crate::nodes::{Health, health};
use crate::status::OwnedStatus;

/// `Conflict` reason when there is none.
pub const NO_CONFLICT: &str = "NoConflict";
/// Event reason: the device showed up.
pub const DEVICE_APPEARED: &str = "DeviceAppeared";
/// Event reason: the device is gone from every node.
pub const DEVICE_DISAPPEARED: &str = "DeviceDisappeared";
/// Event reason: a consumer was restarted because its device re-enumerated.
pub const CONSUMER_RESTARTED: &str = "ConsumerRestarted";
/// Event reason: `failover.mode: Manual` kept a consumer where its device was.
pub const FAILOVER_SKIPPED: &str = "FailoverSkipped";

/// A pod to remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// The pod's name (in the pin's namespace).
    pub pod: String,
    /// Delete at once (grace 0): its node stopped answering, and the device is
    /// elsewhere, so it cannot hold it twice.
    pub force: bool,
    /// Why, for the Event.
    pub reason: &'static str,
    /// For a person.
    pub message: String,
}

/// An Event to publish about the pin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Warning rather than Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// For a person.
    pub message: String,
}

/// What one reconcile does.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The status fields this controller owns.
    pub status: OwnedStatus,
    /// Nodes that should carry the pin's label.
    pub labelled_nodes: BTreeSet<String>,
    /// Consumer pods to remove.
    pub removals: Vec<Removal>,
    /// Events, published once the status is written.
    pub notes: Vec<Note>,
    /// Lost nodes a consumer is force-removed from: marked so that its replacement
    /// is not scheduled back there (their dead kubelets still advertise the device).
    pub mark_lost: BTreeSet<String>,
    /// Look again this soon: a node the pin depends on is silent, its grace running.
    pub recheck: Option<Duration>,
}

/// A conflict found.
struct Conflict {
    reason: &'static str,
    message: String,
}

/// Decides everything for `pin`; `others` are the other pins the controller sees,
/// `pods` the pods of the pin's namespace, `nodes` what is known of the nodes that
/// report the device or run a consumer (a node not among them counts as heard from).
pub fn decide(
    pin: &UsbDevicePin,
    others: &[Arc<UsbDevicePin>],
    pods: &[Pod],
    nodes: &[NodeView],
    now: Timestamp,
) -> Decision {
    let previous = pin
        .status
        .as_ref()
        .map(OwnedStatus::from)
        .unwrap_or_default();
    let grace = pin
        .spec
        .failover
        .unreachable_after
        .to_std()
        .ok()
        .and_then(|d| SignedDuration::try_from(d).ok())
        .unwrap_or(SignedDuration::from_secs(30));
    let health_of = |node: &str| health(nodes, node, grace, now);
    // Entries of lost nodes are stale: their agents cannot take them back.
    let (presence, stale): (Vec<&DevicePresence>, Vec<&DevicePresence>) = pin
        .status
        .iter()
        .flat_map(|s| s.presence.iter())
        .partition(|p| !health_of(&p.node).is_lost());
    let lost_reporters = stale
        .iter()
        .map(|p| p.node.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let generation = pin.metadata.generation;
    let resource = pin.resource_name();
    let describe = describe_device(pin);
    let mut notes = Vec::new();

    let current = choose_node(pin, &presence, previous.current_node.as_deref());
    let entry = current
        .as_deref()
        .and_then(|n| presence.iter().find(|p| p.node == n).copied());
    let conflict =
        claimed_by_older(pin, others).or_else(|| several_nodes(pin, &presence, current.as_deref()));

    let mut status = OwnedStatus {
        observed_generation: generation,
        conditions: previous.conditions.clone(),
        current_node: current.clone().or_else(|| previous.current_node.clone()),
        by_id_path: entry
            .and_then(|e| e.by_id_path.clone())
            .or_else(|| previous.by_id_path.clone()),
        holder_pod: None,
        since: entry
            .and_then(|e| e.since.clone())
            .or_else(|| previous.since.clone()),
        last_move: previous.last_move.clone(),
        last_failover: previous.last_failover.clone(),
    };

    // Appear, disappear, move.
    let was_present = pin
        .status
        .as_ref()
        .is_some_and(|s| s.is_condition_true(types::DEVICE_PRESENT));
    match (&entry, was_present) {
        (Some(e), false) => notes.push(Note {
            warning: false,
            reason: DEVICE_APPEARED,
            message: format!("{describe} appeared on node {} at {}", e.node, path_of(e)),
        }),
        (None, true) => notes.push(Note {
            warning: true,
            reason: DEVICE_DISAPPEARED,
            message: if stale.is_empty() {
                format!("{describe} is no longer reported by any node")
            } else {
                format!(
                    "{describe} is only reported by node {lost_reporters}, which stopped heartbeating"
                )
            },
        }),
        _ => {}
    }
    if let (Some(from), Some(to)) = (previous.current_node.as_deref(), current.as_deref())
        && from != to
    {
        status.last_move = Some(DeviceMove {
            from_node: Some(from.to_owned()),
            to_node: to.to_owned(),
            time: Time(now),
        });
        notes.push(Note {
            warning: false,
            reason: reasons::DEVICE_MOVED,
            message: format!("{describe} moved from node {from} to node {to}"),
        });
    }

    // Consumers.
    let consumers: Vec<&Pod> = pods
        .iter()
        .filter(|p| consumers::requests(p, &resource) && !consumers::finished(p))
        .collect();
    let nodes_with_device: BTreeSet<&str> = presence.iter().map(|p| p.node.as_str()).collect();
    let holder = current.as_deref().and_then(|node| {
        let here = consumers.iter().filter(|p| {
            consumers::node(p) == Some(node) && p.metadata.deletion_timestamp.is_none()
        });
        here.clone()
            .find(|p| consumers::running(p))
            .or_else(|| here.clone().next())
            .copied()
    });
    status.holder_pod = holder.map(|p| p.name_any());
    let mode = pin.spec.failover.mode;
    let recheck = pin
        .status
        .iter()
        .flat_map(|s| s.presence.iter().map(|p| p.node.as_str()))
        .chain(consumers.iter().filter_map(|p| consumers::node(p)))
        .filter_map(|n| match health_of(n) {
            Health::Silent { remaining } => Some(remaining + Duration::from_secs(1)),
            _ => None,
        })
        .min();
    let mut removals = Vec::new();
    if let (Some(to), None) = (current.as_deref(), &conflict) {
        for pod in &consumers {
            let Some(at) = consumers::node(pod) else {
                continue;
            };
            if nodes_with_device.contains(at) {
                continue;
            }
            let node_lost = health_of(at).is_lost();
            let stuck = node_lost
                || consumers::deleting_since(pod).is_some_and(|t| now.duration_since(t) >= grace);
            if pod.metadata.deletion_timestamp.is_some() && !stuck {
                continue;
            }
            let how = if node_lost {
                "its node stopped heartbeating and can never confirm the deletion, removing it at once (the stick it held stays with that node)"
            } else if stuck {
                "its node does not confirm the deletion, removing it at once"
            } else {
                "removing it so it is recreated there"
            };
            removals.push(Removal {
                pod: pod.name_any(),
                force: stuck,
                reason: reasons::FAILED_OVER,
                message: format!(
                    "pod {} on node {at} lost {describe}, now on node {to}: {how}",
                    pod.name_any(),
                ),
            });
        }
        // A consumer started before its device's latest enumeration holds a dead
        // handle (the stick was replugged, reset, or the node rebooted under it).
        if let (Some(holder), Some(since)) = (holder, entry.and_then(|e| e.since.as_ref()))
            && consumers::running(holder)
            && consumers::started(holder).is_some_and(|started| started < since.0)
        {
            removals.push(Removal {
                pod: holder.name_any(),
                force: false,
                reason: CONSUMER_RESTARTED,
                message: format!(
                    "{describe} re-enumerated on node {to} after pod {} started: restarting it so it opens the device again",
                    holder.name_any()
                ),
            });
        }
    }
    match mode {
        FailoverMode::Automatic => {}
        FailoverMode::Manual => {
            for r in removals.drain(..) {
                notes.push(Note {
                    warning: true,
                    reason: FAILOVER_SKIPPED,
                    message: format!("failover.mode is Manual, not acting: {}", r.message),
                });
            }
        }
        FailoverMode::Disabled => removals.clear(),
    }
    let moving: Vec<&Removal> = removals
        .iter()
        .filter(|r| r.reason == reasons::FAILED_OVER)
        .collect();
    let node_of_removal = |r: &Removal| {
        consumers
            .iter()
            .find(|p| p.name_any() == r.pod)
            .and_then(|p| consumers::node(p))
    };
    let mark_lost: BTreeSet<String> = removals
        .iter()
        .filter(|r| r.force)
        .filter_map(node_of_removal)
        .filter(|n| health_of(n).is_lost())
        .map(str::to_owned)
        .collect();
    if let (Some(first), Some(to)) = (moving.first(), current.as_deref()) {
        let from = node_of_removal(first).map(str::to_owned);
        let reason = if from.as_deref().is_some_and(|n| health_of(n).is_lost()) {
            reasons::NODE_UNREACHABLE
        } else {
            reasons::DEVICE_MOVED
        };
        status.last_failover = Some(FailoverRecord {
            from_node: from,
            to_node: Some(to.to_owned()),
            time: Time(now),
            reason: reason.to_owned(),
            message: Some(first.message.clone()),
            fenced: false,
            duration_millis: None,
        });
    } else if let Some(record) = status.last_failover.as_mut()
        && record.duration_millis.is_none()
        && record.to_node.as_deref() == current.as_deref()
        && let Some(ready) = holder.and_then(consumers::ready_since)
        && ready >= record.time.0
    {
        record.duration_millis = Some(
            ready
                .duration_since(record.time.0)
                .as_millis()
                .try_into()
                .unwrap_or(i64::MAX),
        );
    }

    // Conditions.
    let present = entry.is_some();
    let device_present = match entry {
        Some(e) => new_condition(
            types::DEVICE_PRESENT,
            ConditionStatus::True,
            reasons::DEVICE_FOUND,
            &format!("on node {} at {}", e.node, path_of(e)),
            generation,
            now,
        ),
        None => new_condition(
            types::DEVICE_PRESENT,
            ConditionStatus::False,
            reasons::DEVICE_NOT_FOUND,
            &if stale.is_empty() {
                format!("no node agent reports {describe}")
            } else {
                format!(
                    "only node {lost_reporters} reports {describe}, and it stopped heartbeating"
                )
            },
            generation,
            now,
        ),
    };
    set_condition(&mut status.conditions, device_present);
    let conflict_condition = match &conflict {
        Some(c) => new_condition(
            types::CONFLICT,
            ConditionStatus::True,
            c.reason,
            &c.message,
            generation,
            now,
        ),
        None => new_condition(
            types::CONFLICT,
            ConditionStatus::False,
            NO_CONFLICT,
            "",
            generation,
            now,
        ),
    };
    let had_conflict = pin
        .status
        .as_ref()
        .is_some_and(|s| s.is_condition_true(types::CONFLICT));
    if let (Some(c), false) = (&conflict, had_conflict) {
        notes.push(Note {
            warning: true,
            reason: c.reason,
            message: c.message.clone(),
        });
    }
    set_condition(&mut status.conditions, conflict_condition);
    let outcome = if let Some(c) = &conflict {
        Outcome::stalled(c.reason, c.message.clone())
    } else if !present && !stale.is_empty() {
        Outcome::stalled(
            reasons::NODE_UNREACHABLE,
            format!(
                "{describe} is only reported by node {lost_reporters}, which stopped heartbeating: consumers stay until it is back, or until the device (or a backup stick) is plugged into another node"
            ),
        )
    } else if !present {
        Outcome::stalled(
            reasons::DEVICE_NOT_FOUND,
            format!(
                "no node agent reports {describe}: plug it into a node that runs the node agent, or check the agent's logs on the node it is in"
            ),
        )
    } else if !moving.is_empty() {
        Outcome::progressing(
            reasons::DEVICE_MOVED,
            format!(
                "moving {} after the device to node {}",
                moving
                    .iter()
                    .map(|r| format!("pod {}", r.pod))
                    .collect::<Vec<_>>()
                    .join(", "),
                current.as_deref().unwrap_or_default()
            ),
        )
    } else {
        let held = match &status.holder_pod {
            Some(pod) => format!("held by pod {pod}"),
            None => "no pod holds it".to_owned(),
        };
        Outcome::ready(
            reasons::DEVICE_FOUND,
            format!(
                "on node {} at {}; {held}",
                current.as_deref().unwrap_or_default(),
                entry.map(path_of).unwrap_or_default()
            ),
        )
    };
    set_outcome(&mut status.conditions, &outcome, generation, now);

    let labelled_nodes = if conflict.is_some() && !pin.spec.exclusive {
        BTreeSet::new()
    } else if pin.spec.exclusive || conflict.is_some() {
        entry.map(|e| e.node.clone()).into_iter().collect()
    } else {
        nodes_with_device.iter().map(|n| (*n).to_owned()).collect()
    };
    Decision {
        status,
        labelled_nodes,
        removals,
        notes,
        mark_lost,
        recheck,
    }
}

/// The node consumers should be on: where the device is, staying put when it is on
/// several nodes and one of them is where it was.
fn choose_node(
    pin: &UsbDevicePin,
    presence: &[&DevicePresence],
    previous: Option<&str>,
) -> Option<String> {
    if let Some(prev) = previous
        && presence.iter().any(|p| p.node == prev)
    {
        return Some(prev.to_owned());
    }
    let allowed: Vec<&&DevicePresence> = presence
        .iter()
        .filter(|p| pin.spec.failover.allows(&p.node))
        .collect();
    if let Some(preferred) = pin
        .spec
        .failover
        .preferred_nodes
        .iter()
        .find(|n| allowed.iter().any(|p| &p.node == *n))
    {
        return Some(preferred.clone());
    }
    allowed
        .iter()
        .min_by_key(|p| (p.since.as_ref().map(|t| t.0), p.node.clone()))
        .map(|p| p.node.clone())
}

/// An older pin already claims the device this one would match, or this pin's
/// resource name.
fn claimed_by_older(pin: &UsbDevicePin, others: &[Arc<UsbDevicePin>]) -> Option<Conflict> {
    let me = (pin.namespace(), pin.name_any());
    let mut older: Vec<&Arc<UsbDevicePin>> = others
        .iter()
        .filter(|o| (o.namespace(), o.name_any()) != me)
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .filter(|o| claim_order(o, pin).is_lt())
        .collect();
    older.sort_by(|a, b| claim_order(a, b));
    for other in older {
        let other_name = format!(
            "{}/{}",
            other.namespace().unwrap_or_default(),
            other.name_any()
        );
        if other.name_any() == pin.name_any() {
            return Some(Conflict {
                reason: reasons::CLAIMED_BY_ANOTHER_PIN,
                message: format!(
                    "the older UsbDevicePin {other_name} already uses the resource {}: rename this pin",
                    pin.resource_name()
                ),
            });
        }
        let shared = other
            .status
            .iter()
            .flat_map(|s| s.presence.iter())
            .find(|p| {
                pin.spec.matches(
                    &other.spec.vendor_id,
                    &other.spec.product_id,
                    p.serial.as_deref(),
                )
            });
        if let Some(p) = shared {
            return Some(Conflict {
                reason: reasons::CLAIMED_BY_ANOTHER_PIN,
                message: format!(
                    "the device on node {} at {} matches this pin and the older UsbDevicePin {other_name}; the older pin keeps it. Give this pin a serial that tells the devices apart, or delete one of the pins",
                    p.node,
                    path_of(p)
                ),
            });
        }
    }
    None
}

/// An exclusive device reported by several nodes.
fn several_nodes(
    pin: &UsbDevicePin,
    presence: &[&DevicePresence],
    current: Option<&str>,
) -> Option<Conflict> {
    if !pin.spec.exclusive || presence.len() < 2 {
        return None;
    }
    let mut nodes: Vec<&str> = presence.iter().map(|p| p.node.as_str()).collect();
    nodes.sort_unstable();
    Some(Conflict {
        reason: reasons::DEVICE_ON_SEVERAL_NODES,
        message: format!(
            "a matching device is plugged into nodes {}, but the pin is exclusive; consumers stay on node {} (where it was first, or already). Unplug the extra device, give the pin a serial, or set exclusive: false for intentional spares",
            nodes.join(", "),
            current.unwrap_or_default()
        ),
    })
}

/// `vendor:product (serial …)` for messages.
fn describe_device(pin: &UsbDevicePin) -> String {
    let ids = format!("USB device {}:{}", pin.spec.vendor_id, pin.spec.product_id);
    match &pin.spec.serial {
        Some(serial) => format!("{ids} (serial {serial})"),
        None => ids,
    }
}

fn path_of(p: &DevicePresence) -> &str {
    p.by_id_path
        .as_deref()
        .or(p.dev_node.as_deref())
        .unwrap_or("an unknown path")
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
