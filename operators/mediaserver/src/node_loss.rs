//! Node-loss failover for a MediaServer, through the kit: say what the server's pod
//! holds and let [`homelab_kit::failover::workload::handle`] decide and act.
//!
//! The Deployment's pods already tolerate an unreachable node only for
//! `failover.unreachableAfter`; this acts sooner and surer than the taint manager:
//! it reads the kubelet's Lease (silent after one missed renewal, where the
//! node-lifecycle controller waits 50 s), keeps the replacement off the silent node,
//! and force-deletes the pod its dead kubelet would never confirm deleted.

use std::time::Duration;

use homelab_api::MediaServer;
use homelab_api::conditions::reasons;
use homelab_api::failover::{FailoverRecord, FailoverStatus};
use homelab_kit::Context;
use homelab_kit::failover::workload::{self, Workload};
use homelab_kit::failover::{Holds, Storage, claims};
use k8s_openapi::api::storage::v1::VolumeAttachment;

use crate::CONTROLLER_NAME;
use crate::controller::State;
use crate::error::Error;
use crate::failover::{self, Analysis};
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
    let config = failover::config_storage(ms, observed);
    // Only shared storage whose driver attaches asks for the attachments: who
    // still holds the volume decides whether the move is safe.
    let attachments = match &config {
        Some((_, storage)) if storage.needs_attachments() && any_pod(observed) => {
            claims::attachments(&ctx.client)
                .await
                .map_err(Error::Read)?
        }
        _ => Vec::new(),
    };
    let holds = holds(analysis, config.as_ref(), &attachments);
    let status = ms.status.as_ref();
    let out = workload::handle(
        Workload {
            object: ms,
            policy: &ms.spec.failover,
            last_failover: status.and_then(|s| s.last_failover()),
            shown_block: status.and_then(|s| s.failover_reason.as_deref()),
            pods: &observed.pods,
            nodes: &observed.nodes,
            eligible,
            holds: &holds,
        },
        ctx.failover_actor(
            CONTROLLER_NAME,
            &ctx.state.workload.failover,
            &ctx.state.caches.leases,
        ),
    )
    .await
    .map_err(Error::Failover)?;
    Ok(Outcome {
        analysis: out.blocked.map(|b| Analysis {
            possible: false,
            reason: b.reason,
            message: b.message,
        }),
        record: out.record,
        requeue: out.requeue,
    })
}

/// Whether the server has a pod on some node (else no node's loss matters).
fn any_pod(observed: &Observed) -> bool {
    observed
        .pods
        .iter()
        .any(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
}

/// What the pod holds that matters for a second copy: a node-local volume (the
/// analysis found one), and the config, unless a volume attached to one node
/// at a time keeps a second copy out by itself.
fn holds(
    analysis: &Analysis,
    config: Option<&(String, Storage)>,
    attachments: &[VolumeAttachment],
) -> Vec<Holds> {
    let mut holds = Vec::new();
    if analysis.reason == reasons::NODE_LOCAL_STORAGE {
        holds.push(Holds::NodeLocalVolume {
            what: "its node-local storage".to_owned(),
        });
    }
    if let Some((subject, storage)) = config {
        let what = format!("{subject} (its SQLite database)");
        holds.extend(storage.holds(&what, attachments));
    }
    holds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis(reason: &'static str) -> Analysis {
        Analysis {
            possible: true,
            reason,
            message: String::new(),
        }
    }

    #[test]
    fn shared_config_is_held_and_an_attaching_one_is_not() {
        let nfs = (
            "the config".to_owned(),
            Storage::Shared {
                why: "is on NFS nas:/c".into(),
                attached_volume: None,
            },
        );
        let h = holds(&analysis(reasons::NETWORK_STORAGE), Some(&nfs), &[]);
        assert!(
            matches!(
                &h[..],
                [Holds::SharedStorage {
                    attached_to: None,
                    ..
                }]
            ),
            "{h:?}"
        );
        let block = (
            "the config's claim c".to_owned(),
            Storage::SingleAttach { why: String::new() },
        );
        assert!(holds(&analysis(reasons::ATTACHMENT_ENFORCED), Some(&block), &[]).is_empty());
        let h = holds(&analysis(reasons::NODE_LOCAL_STORAGE), None, &[]);
        assert!(matches!(&h[..], [Holds::NodeLocalVolume { .. }]), "{h:?}");
    }
}
