//! Is a node there? Read from what its kubelet last said: the heartbeat Lease in
//! `kube-node-lease` (renewed every quarter of its duration, 10 s by default) and the
//! node's `Ready` condition. Pure; the clock is an argument.
//!
//! The Lease answers first: the node-lifecycle controller only marks a node
//! `Ready=Unknown` after `--node-monitor-grace-period` (50 s by default), while a
//! silent Lease shows after one missed renewal.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;

use homelab_api::failover::OUT_OF_SERVICE_TAINT;

/// Namespace of the kubelets' heartbeat Leases (one per node, named after it).
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Annotation the operator puts on a node it fenced, naming itself, so that it only
/// ever removes an out-of-service taint it added (never one an admin set).
pub const FENCED_BY_ANNOTATION: &str = "homelab.home.arpa/fenced-by";
/// The kubelet's default Lease duration, when a Lease does not say.
const DEFAULT_LEASE_SECONDS: i32 = 40;

/// Whether the node's kubelet is heard from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reachability {
    /// It heartbeats.
    Reachable,
    /// Silent; last heard from at `since`.
    Lost {
        /// The kubelet's last heartbeat.
        since: Timestamp,
    },
    /// The Node object does not exist (removed from the cluster).
    Gone,
}

/// What the operator knows about one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// The node's name.
    pub name: String,
    /// Whether it is heard from.
    pub reachability: Reachability,
    /// It carries the out-of-service taint (by anyone): Kubernetes treats it as off.
    pub out_of_service: bool,
    /// The controller that fenced it, when one of ours did.
    pub fenced_by: Option<String>,
}

impl NodeView {
    /// A node that is heard from and not fenced.
    #[must_use]
    pub fn reachable(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            reachability: Reachability::Reachable,
            out_of_service: false,
            fenced_by: None,
        }
    }

    /// A node missing from the cluster.
    #[must_use]
    pub fn gone(name: impl Into<String>) -> Self {
        Self {
            reachability: Reachability::Gone,
            ..Self::reachable(name)
        }
    }
}

/// Reads node `name` from its Node object and heartbeat Lease as of `now`.
#[must_use]
pub fn observe_node(
    name: &str,
    node: Option<&Node>,
    lease: Option<&Lease>,
    now: Timestamp,
) -> NodeView {
    let Some(node) = node else {
        return NodeView::gone(name);
    };
    let out_of_service = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT));
    NodeView {
        name: name.to_owned(),
        reachability: reachability(node, lease, now),
        out_of_service,
        fenced_by: node.annotations().get(FENCED_BY_ANNOTATION).cloned(),
    }
}

fn reachability(node: &Node, lease: Option<&Lease>, now: Timestamp) -> Reachability {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let heartbeat = lease.and_then(last_renewal);
    if let Some(renewed) = heartbeat {
        let silence = silence_after(lease);
        return if now.duration_since(renewed) > silence {
            Reachability::Lost { since: renewed }
        } else {
            Reachability::Reachable
        };
    }
    // No Lease (an old kubelet, or the Lease was deleted): only the node-lifecycle
    // controller's verdict is left.
    match ready {
        Some(c) if c.status == "Unknown" => Reachability::Lost {
            since: c
                .last_heartbeat_time
                .as_ref()
                .or(c.last_transition_time.as_ref())
                .map_or(now, |t| t.0),
        },
        _ => Reachability::Reachable,
    }
}

/// Whether so many nodes are silent at once that the fault is more likely the
/// control plane or the network than the nodes (an API server outage leaves every
/// Lease stale): more than 55 %, Kubernetes' `--unhealthy-zone-threshold`.
#[must_use]
pub fn disrupted(leases: &[Lease], now: Timestamp) -> bool {
    let silent = leases.iter().filter(|l| lease_silent(l, now)).count();
    silent > 1 && silent * 100 > leases.len() * 55
}

/// Whether the Lease has gone unrenewed for longer than a kubelet allows itself.
#[must_use]
pub fn lease_silent(lease: &Lease, now: Timestamp) -> bool {
    last_renewal(lease).is_some_and(|r| now.duration_since(r) > silence_after(Some(lease)))
}

fn last_renewal(lease: &Lease) -> Option<Timestamp> {
    let spec = lease.spec.as_ref()?;
    spec.renew_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| spec.acquire_time.as_ref().map(|t| t.0))
}

/// How long a Lease may go unrenewed before its node counts as silent: one and a
/// half renewal intervals (the kubelet renews every quarter of the duration), so one
/// late renewal is not a lost node.
fn silence_after(lease: Option<&Lease>) -> SignedDuration {
    let seconds = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.lease_duration_seconds)
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_LEASE_SECONDS);
    SignedDuration::from_millis(i64::from(seconds) * 1000 * 3 / 8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::ObjectMeta;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn node(ready: &str, taints: Vec<Taint>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("pi4-2".into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    last_heartbeat_time: Some(Time(t(0))),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            }),
        }
    }

    fn lease(renewed: i64) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(t(renewed))),
                lease_duration_seconds: Some(40),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_fresh_lease_is_reachable_even_before_the_node_controller_agrees() {
        let n = node("True", vec![]);
        let v = observe_node("pi4-2", Some(&n), Some(&lease(100)), t(110));
        assert_eq!(v.reachability, Reachability::Reachable);
    }

    #[test]
    fn a_lease_silent_past_one_and_a_half_renewals_is_lost_since_its_last_renewal() {
        let n = node("True", vec![]);
        let v = observe_node("pi4-2", Some(&n), Some(&lease(100)), t(116));
        assert_eq!(v.reachability, Reachability::Lost { since: t(100) });
        // One late renewal is not a lost node.
        let v = observe_node("pi4-2", Some(&n), Some(&lease(100)), t(114));
        assert_eq!(v.reachability, Reachability::Reachable);
    }

    #[test]
    fn without_a_lease_the_node_controllers_unknown_counts() {
        let v = observe_node("pi4-2", Some(&node("Unknown", vec![])), None, t(60));
        assert_eq!(v.reachability, Reachability::Lost { since: t(0) });
        let v = observe_node("pi4-2", Some(&node("True", vec![])), None, t(60));
        assert_eq!(v.reachability, Reachability::Reachable);
    }

    #[test]
    fn most_nodes_silent_at_once_is_a_disruption_not_a_lost_node() {
        let fresh = || lease(100);
        let stale = || lease(0);
        let one = [stale(), fresh(), fresh(), fresh()];
        assert!(!disrupted(&one, t(105)));
        let most = [stale(), stale(), stale(), fresh()];
        assert!(disrupted(&most, t(105)));
        // A two-node cluster losing one is a lost node.
        assert!(!disrupted(&[stale(), fresh()], t(105)));
    }

    #[test]
    fn a_missing_node_is_gone_and_the_fence_is_read() {
        assert_eq!(
            observe_node("pi4-2", None, None, t(0)).reachability,
            Reachability::Gone
        );
        let mut n = node(
            "Unknown",
            vec![Taint {
                key: OUT_OF_SERVICE_TAINT.into(),
                effect: "NoExecute".into(),
                ..Taint::default()
            }],
        );
        n.metadata.annotations = Some(
            [(
                FENCED_BY_ANNOTATION.to_owned(),
                "mediaserver-controller".to_owned(),
            )]
            .into(),
        );
        let v = observe_node("pi4-2", Some(&n), Some(&lease(0)), t(60));
        assert!(v.out_of_service);
        assert_eq!(v.fenced_by.as_deref(), Some("mediaserver-controller"));
    }
}
