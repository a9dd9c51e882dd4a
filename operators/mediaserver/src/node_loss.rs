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
use homelab_kit::failover::Holds;
use homelab_kit::failover::workload::{self, Actor, Workload};

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
    let holds = holds(ms, analysis);
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
        Actor {
            client: &ctx.client,
            events: &ctx.events,
            metrics: &ctx.state.failover,
            controller: CONTROLLER_NAME,
            manager: &ctx.manager,
            fencing_allowed: ctx.fencing_allowed,
        },
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
