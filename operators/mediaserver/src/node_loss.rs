//! Node-loss failover for a MediaServer, through the kit: say what the server's pod
//! holds, let [`homelab_kit::failover::decide`] decide, and act on it.
//!
//! The Deployment's pods already tolerate an unreachable node only for
//! `failover.unreachableAfter`; this acts sooner and surer than the taint manager:
//! it reads the kubelet's Lease (silent after one missed renewal, where the
//! node-lifecycle controller waits 50 s), keeps the replacement off the silent node,
//! and force-deletes the pod its dead kubelet would never confirm deleted.

use std::time::Duration;

use homelab_api::MediaServer;
use homelab_api::conditions::reasons;
use homelab_api::failover::{FailoverRecord, FailoverStatus, OUT_OF_SERVICE_TAINT};
use homelab_kit::Context;
use homelab_kit::failover::fence::{self, SILENT_TAINT};
use homelab_kit::failover::observe::NODE_LEASE_NAMESPACE;
use homelab_kit::failover::{Decision, Holds, NodeView, Observation, Reachability, record};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::{Api, ResourceExt};

use crate::CONTROLLER_NAME;
use crate::controller::State;
use crate::error::Error;
use crate::failover::Analysis;
use crate::observed::Observed;

/// What the reconcile takes from failover into the status and its next look.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Replaces the FailoverReady analysis while a lost node blocks a move.
    pub analysis: Option<Analysis>,
    /// The new `status.lastFailover`, when it changed.
    pub record: Option<FailoverRecord>,
    /// Look again this soon (a grace or a cooldown running out).
    pub requeue: Option<Duration>,
}

/// Handles a lost node under `ms`'s pods; `eligible` are the nodes that can run it,
/// `analysis` whether it could move at all.
///
/// # Errors
/// When marking a node or deleting a pod fails.
pub async fn handle(
    ms: &MediaServer,
    ctx: &Context<State>,
    observed: &Observed,
    eligible: &[String],
    analysis: &Analysis,
) -> Result<Outcome, Error> {
    let now = Timestamp::now();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), NODE_LEASE_NAMESPACE);
    let last = ms.status.as_ref().and_then(|s| s.last_failover());
    let mut out = Outcome::default();

    // The node we left last time: unmark it once it heartbeats again.
    if let Some(from) = last.and_then(|r| r.from_node.as_deref()) {
        let view = view(observed, &leases, from, now).await?;
        if view.reachability == Reachability::Reachable
            && view.fenced_by.as_deref() == Some(CONTROLLER_NAME)
            && fence::release(&nodes, from)
                .await
                .map_err(Error::Failover)?
        {
            ctx.events
                .normal(ms, "NodeReleased", "Failover", format!("node {from} heartbeats again: removed the {SILENT_TAINT} and {OUT_OF_SERVICE_TAINT} taints this controller added"))
                .await;
        }
    }

    // A move that started: done once the server is Ready elsewhere.
    if let Some(started) = last.filter(|r| r.duration_millis.is_none()) {
        let lost_since = match started.from_node.as_deref() {
            Some(from) => match view(observed, &leases, from, now).await?.reachability {
                Reachability::Lost { since } => Some(since),
                _ => None,
            },
            None => None,
        };
        if let Some(done) = record::completed(started, ready_node(&observed.pods), lost_since, now)
        {
            let (from, to) = (
                done.from_node.clone().unwrap_or_default(),
                done.to_node.clone().unwrap_or_default(),
            );
            let millis = done.duration_millis.unwrap_or_default();
            ctx.state.failover.completed(millis);
            ctx.events
                .normal(
                    ms,
                    reasons::FAILED_OVER,
                    "Failover",
                    format!(
                        "moved from {from} to {to}: Ready {:.1}s after {from}'s last heartbeat",
                        millis as f64 / 1000.0
                    ),
                )
                .await;
            out.record = Some(done);
        }
    }

    for node in pod_nodes(&observed.pods) {
        let view = view(observed, &leases, &node, now).await?;
        let candidates = candidates(observed, eligible, &node);
        let holds = holds(ms, analysis);
        let disrupted = match view.reachability {
            Reachability::Reachable => false,
            _ => {
                let all = leases
                    .list(&kube::api::ListParams::default())
                    .await
                    .map_err(|e| {
                        Error::Read(homelab_kit::Error::kube(
                            format!("list Leases in {NODE_LEASE_NAMESPACE}"),
                            e,
                        ))
                    })?;
                homelab_kit::failover::observe::disrupted(&all.items, now)
            }
        };
        let last = out.record.as_ref().or(last);
        let decision = homelab_kit::failover::decide(&Observation {
            policy: &ms.spec.failover,
            node: &view,
            holds: &holds,
            candidates: &candidates,
            last_failover: last,
            disrupted,
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
                blocked(ms, ctx, reason, &message).await;
                out.requeue = retry;
                out.analysis = Some(Analysis {
                    possible: false,
                    reason,
                    message,
                });
            }
            Decision::Report { reason, message } => {
                blocked(ms, ctx, reason, &message).await;
                out.analysis = Some(Analysis {
                    possible: false,
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
                    fence::mark_lost(&nodes, &node, CONTROLLER_NAME, fence)
                        .await
                        .map_err(Error::Failover)?;
                }
                let pods: Api<Pod> =
                    Api::namespaced(ctx.client.clone(), &ms.namespace().unwrap_or_default());
                for pod in observed.pods.iter().filter(|p| node_of(p) == Some(&node)) {
                    fence::force_delete(&pods, pod)
                        .await
                        .map_err(Error::Failover)?;
                }
                tracing::info!(node, reason, %message, "failed over: force-deleted the pod on the lost node");
                ctx.state.failover.started(reason);
                ctx.events
                    .warning(ms, reason, "Failover", message.clone())
                    .await;
                out.record = Some(record::started(
                    &node,
                    reason,
                    &message,
                    fence || view.out_of_service,
                    to.as_deref(),
                    now,
                ));
            }
        }
    }
    Ok(out)
}

/// A Warning Event and a count, once per distinct message: status carries it for as
/// long as it lasts.
async fn blocked(ms: &MediaServer, ctx: &Context<State>, reason: &'static str, message: &str) {
    let known = ms
        .status
        .as_ref()
        .is_some_and(|s| s.failover_reason.as_deref() == Some(message));
    if known {
        return;
    }
    ctx.state.failover.blocked(reason);
    ctx.events
        .warning(ms, reason, "Failover", message.to_owned())
        .await;
}

async fn view(
    observed: &Observed,
    leases: &Api<Lease>,
    node: &str,
    now: Timestamp,
) -> Result<NodeView, Error> {
    let found = observed.nodes.iter().find(|n| n.name_any() == node);
    let lease = leases.get_opt(node).await.map_err(|e| {
        Error::Read(homelab_kit::Error::kube(
            format!("get Lease {NODE_LEASE_NAMESPACE}/{node}"),
            e,
        ))
    })?;
    Ok(homelab_kit::failover::observe_node(
        node,
        found,
        lease.as_ref(),
        now,
    ))
}

/// What the pod holds that matters for a second copy. Claims are ReadWriteOnce,
/// whose single attachment the storage enforces; NFS config is not.
fn holds(ms: &MediaServer, analysis: &Analysis) -> Vec<Holds> {
    let mut holds = Vec::new();
    if analysis.reason == reasons::NODE_LOCAL_STORAGE {
        holds.push(Holds::NodeLocalVolume {
            what: "its node-local storage".to_owned(),
        });
    }
    if let Some(nfs) = &ms.spec.config.nfs {
        holds.push(Holds::SharedStorage {
            what: format!(
                "the config (a SQLite database) on NFS {}:{}",
                nfs.server, nfs.path
            ),
        });
    }
    holds
}

/// Eligible nodes that are Ready now and not marked lost, other than `lost`.
fn candidates(observed: &Observed, eligible: &[String], lost: &str) -> Vec<String> {
    observed
        .nodes
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

fn marked(node: &Node) -> bool {
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

/// The nodes the server's pods are bound to, Terminating ones included (a pod
/// evicted from a dead node stays Terminating there).
fn pod_nodes(pods: &[Pod]) -> Vec<String> {
    let mut nodes: Vec<String> = pods.iter().filter_map(node_of).cloned().collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// The node of the server's Ready, live pod.
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
