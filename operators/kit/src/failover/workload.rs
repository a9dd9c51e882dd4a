//! Node-loss failover for one workload (a Deployment's pod), whatever its kind:
//! unmark the node it left once that node is back, complete a move once the
//! workload is Ready elsewhere, and for each node its pods are bound to, decide
//! ([`super::decide`]) and act: mark the lost node, record the failover in the
//! status, force-delete the pod its dead kubelet would never confirm deleted, say
//! it in an Event. The record comes before the delete: a controller stopped
//! between the two finds its own unfinished failover and completes it.
//!
//! A controller calls [`handle`] in its reconcile with what it read (pods,
//! nodes) and what the pod holds; it puts [`Outcome`] into its status.

use std::fmt::Debug;
use std::time::Duration;

use homelab_api::conditions::reasons;
use homelab_api::failover::{FailoverPolicy, FailoverRecord, OUT_OF_SERVICE_TAINT};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::core::NamespaceResourceScope;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::decide::{Decision, Holds, Observation, decide};
use super::fence::{self, SILENT_TAINT};
use super::metrics::FailoverMetrics;
use super::observe::{
    FENCED_BY_ANNOTATION, NODE_LEASE_NAMESPACE, NodeView, Reachability, disrupted, observe_node,
};
use super::record;
use crate::Error;
use crate::apply::FieldManager;
use crate::events::EventPublisher;

/// The workload, as the reconcile read it.
#[derive(Debug)]
pub struct Workload<'a, K> {
    /// The object (for Events).
    pub object: &'a K,
    /// Its failover policy.
    pub policy: &'a FailoverPolicy,
    /// Its `status.lastFailover`.
    pub last_failover: Option<&'a FailoverRecord>,
    /// The message of the last blocked failover the status shows, so the same
    /// block is not announced again.
    pub shown_block: Option<&'a str>,
    /// Its pods, Terminating ones included (a pod evicted from a dead node
    /// stays Terminating there).
    pub pods: &'a [Pod],
    /// All nodes.
    pub nodes: &'a [Node],
    /// The nodes that could run it (placement allowing).
    pub eligible: &'a [String],
    /// What its pod holds that matters for a second copy.
    pub holds: &'a [Holds],
}

/// Who acts, and as whom.
#[derive(Clone, Copy)]
pub struct Actor<'a> {
    /// The client.
    pub client: &'a Client,
    /// Events as this controller.
    pub events: &'a EventPublisher,
    /// Failover counts and durations.
    pub metrics: &'a FailoverMetrics,
    /// The controller's name, written into the taints it adds.
    pub controller: &'a str,
    /// Writes the record of a failover into the object's status.
    pub manager: &'a FieldManager,
    /// The administrator lets failover fence a lost node.
    pub fencing_allowed: bool,
    /// The kubelets' heartbeat Leases, as [`super::heartbeats::watch`] keeps them.
    pub leases: &'a Store<Lease>,
}

/// Why a lost node's workload cannot move (or, in Manual mode, would).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// CamelCase reason.
    pub reason: &'static str,
    /// Why, and what would change it.
    pub message: String,
}

/// What the reconcile takes into its status and its next look.
#[derive(Debug, Default)]
pub struct Outcome {
    /// A lost node blocks a move (or Manual mode only reports it).
    pub blocked: Option<Block>,
    /// The new `status.lastFailover`, when it changed.
    pub record: Option<FailoverRecord>,
    /// Look again this soon (a grace or a cooldown running out).
    pub requeue: Option<Duration>,
}

/// Handles a lost node under the workload's pods.
///
/// # Errors
/// When reading Leases, marking a node, recording or deleting a pod fails.
pub async fn handle<K>(w: Workload<'_, K>, actor: Actor<'_>) -> Result<Outcome, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let now = Timestamp::now();
    let nodes: Api<Node> = Api::all(actor.client.clone());
    let leases = actor.leases;
    let mut out = Outcome::default();

    // Nodes this controller marked: unmark each once it heartbeats again. Any
    // marked node, not only the one in lastFailover: a controller killed after
    // marking but before writing the status must not leave the mark behind.
    for marked in w.nodes.iter().filter(|n| {
        n.annotations()
            .get(FENCED_BY_ANNOTATION)
            .map(String::as_str)
            == Some(actor.controller)
    }) {
        let name = marked.name_any();
        let view = view(w.nodes, leases, &name, now);
        if view.reachability == Reachability::Reachable && fence::release(&nodes, &name).await? {
            actor
                .events
                .normal(w.object, "NodeReleased", "Failover", format!("node {name} heartbeats again: removed the {SILENT_TAINT} and {OUT_OF_SERVICE_TAINT} taints this controller added"))
                .await;
        }
    }

    // A move that started: done once the workload is Ready elsewhere.
    if let Some(started) = w.last_failover.filter(|r| r.duration_millis.is_none()) {
        let lost_since = match started.from_node.as_deref() {
            Some(from) => match view(w.nodes, leases, from, now).reachability {
                Reachability::Lost { since } => Some(since),
                _ => None,
            },
            None => None,
        };
        if let Some(done) = record::completed(started, ready_node(w.pods), lost_since, now) {
            let from = done.from_node.clone().unwrap_or_default();
            let to = done.to_node.clone().unwrap_or_default();
            let millis = done.duration_millis.unwrap_or_default();
            actor.metrics.completed(millis);
            #[allow(clippy::cast_precision_loss)]
            let seconds = millis as f64 / 1000.0;
            actor
                .events
                .normal(
                    w.object,
                    reasons::FAILED_OVER,
                    "Failover",
                    format!("moved from {from} to {to}: Ready {seconds:.1}s after {from}'s last heartbeat"),
                )
                .await;
            out.record = Some(done);
        }
    }

    for node in pod_nodes(w.pods) {
        let view = view(w.nodes, leases, &node, now);
        let candidates = candidates(w.nodes, w.eligible, &node);
        let disrupted = match view.reachability {
            Reachability::Reachable => false,
            _ => {
                let all: Vec<Lease> = leases.state().iter().map(|l| (**l).clone()).collect();
                disrupted(&all, now)
            }
        };
        let last = out.record.as_ref().or(w.last_failover);
        let decision = decide(&Observation {
            policy: w.policy,
            node: &view,
            holds: w.holds,
            candidates: &candidates,
            last_failover: last,
            disrupted,
            fencing_allowed: actor.fencing_allowed,
            now,
        });
        tracing::debug!(node, ?decision, "failover decision");
        match decision {
            Decision::Disabled | Decision::Healthy { .. } => {}
            Decision::Wait { remaining } => {
                out.requeue = Some(remaining + Duration::from_secs(1));
            }
            Decision::Blocked {
                reason,
                message,
                retry,
            } => {
                announce_block(&w, actor, reason, &message).await;
                out.requeue = retry;
                out.blocked = Some(Block { reason, message });
            }
            Decision::Report { reason, message } => {
                announce_block(&w, actor, reason, &message).await;
                out.blocked = Some(Block {
                    reason: reasons::FAILOVER_NOT_AUTOMATIC,
                    message,
                });
            }
            Decision::Move {
                fence,
                reason,
                message,
                to,
            } => {
                if view.reachability != Reachability::Gone {
                    fence::mark_lost(&nodes, &node, actor.controller, fence).await?;
                }
                let namespace = w.object.meta().namespace.clone().unwrap_or_default();
                let started = record::started(
                    &node,
                    reason,
                    &message,
                    fence || view.out_of_service,
                    to.as_deref(),
                    now,
                );
                let api: Api<K> = Api::namespaced(actor.client.clone(), &namespace);
                actor
                    .manager
                    .record_in_status(
                        &api,
                        w.object,
                        &LastFailover {
                            last_failover: &started,
                        },
                    )
                    .await?;
                let pods: Api<Pod> = Api::namespaced(actor.client.clone(), &namespace);
                for pod in w.pods.iter().filter(|p| node_of(p) == Some(&node)) {
                    fence::force_delete(&pods, pod).await?;
                }
                tracing::info!(node, reason, %message, "failed over: force-deleted the pod on the lost node");
                actor.metrics.started(reason);
                actor
                    .events
                    .warning(w.object, reason, "Failover", message.clone())
                    .await;
                out.record = Some(started);
            }
        }
    }
    Ok(out)
}

/// The part of a status that holds the failover record.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LastFailover<'a> {
    last_failover: &'a FailoverRecord,
}

/// A Warning Event and a count, once per distinct message: the status carries it
/// for as long as it lasts.
async fn announce_block<K>(
    w: &Workload<'_, K>,
    actor: Actor<'_>,
    reason: &'static str,
    message: &str,
) where
    K: Resource<DynamicType = ()>,
{
    if w.shown_block == Some(message) {
        return;
    }
    actor.metrics.blocked(reason);
    actor
        .events
        .warning(w.object, reason, "Failover", message.to_owned())
        .await;
}

fn view(nodes: &[Node], leases: &Store<Lease>, node: &str, now: Timestamp) -> NodeView {
    let found = nodes.iter().find(|n| n.name_any() == node);
    let lease = leases.get(&ObjectRef::new(node).within(NODE_LEASE_NAMESPACE));
    observe_node(node, found, lease.as_deref(), now)
}

/// Eligible nodes that are Ready now and not marked lost, other than `lost`.
#[must_use]
pub fn candidates(nodes: &[Node], eligible: &[String], lost: &str) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| {
            let name = n.name_any();
            name != lost && eligible.contains(&name) && ready(n) && !marked(n)
        })
        .map(ResourceExt::name_any)
        .collect()
}

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether the node carries a taint saying it is lost or fenced.
#[must_use]
pub fn marked(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| {
            t.iter().any(|t| {
                matches!(
                    t.key.as_str(),
                    SILENT_TAINT
                        | OUT_OF_SERVICE_TAINT
                        | "node.kubernetes.io/unreachable"
                        | "node.kubernetes.io/not-ready"
                )
            })
        })
}

fn node_of(pod: &Pod) -> Option<&String> {
    pod.spec.as_ref()?.node_name.as_ref()
}

/// The nodes the workload's pods are bound to, Terminating ones included.
fn pod_nodes(pods: &[Pod]) -> Vec<String> {
    let mut nodes: Vec<String> = pods.iter().filter_map(node_of).cloned().collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// The node of the workload's Ready, live pod.
fn ready_node(pods: &[Pod]) -> Option<&str> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .and_then(node_of)
        .map(String::as_str)
}
