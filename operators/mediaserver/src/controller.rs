//! The reconcile: dereference → validate → build → apply → status, one
//! module each; this file only strings them together and says what happened
//! in Events.

use std::sync::Arc;

use homelab_api::conditions::types;
use homelab_api::{ConditionedStatus, MediaServer, MediaServerStatus};
use homelab_kit::workload::WorkloadState;
use homelab_kit::{Action, Context, Kept, STALE_RETRY, being_deleted};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use kube::{Api, ResourceExt};

use crate::apply::apply;
use crate::build::{self, Desired};
use crate::caches::Caches;
use crate::error::Error;
use crate::failover;
use crate::metrics::Metrics;
use crate::node_loss;
use crate::observed::Observed;
use crate::status::{self, Seen, Verdict};
use crate::validate::validate;

/// The controller's own state, shared by every reconcile.
#[derive(Clone, Debug)]
pub struct State {
    /// Writes and refusals, for `/metrics` and for tests that count writes.
    pub metrics: Metrics,
    /// Failover metrics, how often to look again, allowed host paths.
    pub workload: WorkloadState,
    /// What the reconcile reads: the runner's caches.
    pub caches: Caches,
}

/// The owned objects as stored after applying.
struct Applied {
    service: Service,
    deployment: Deployment,
}

/// Brings what `ms` owns and its status in line with its spec.
///
/// # Errors
/// When the API server refuses or fails a request; bad input is a status,
/// not an error.
pub async fn reconcile(ms: Arc<MediaServer>, ctx: Arc<Context<State>>) -> Result<Action, Error> {
    let ns = ms.namespace().ok_or(Error::NoNamespace)?;
    if being_deleted(ms.as_ref()) {
        return Ok(Action::await_change());
    }
    // Everything is read from the runner's caches. Should the cached server
    // lag behind this controller's own last status write, the write below
    // carries the cached resourceVersion and is refused as stale, and the
    // reconcile looks again on top of the newer version.
    let observed = ctx.state.caches.observe(&ms);
    let now = homelab_api::conditions::now();

    // What this reconcile did that must be recorded even if the object changed
    // under it (see the end).
    let mut records = MediaServerStatus::default();
    let (status, action) = match validate(&ms, &observed, &ctx.state.workload.allowed_host_paths) {
        Err(problem) => {
            if ctx.refused(ms.as_ref(), &problem).await {
                ctx.state.metrics.refused(problem.reason);
            }
            let seen = Seen {
                deployment: observed.deployment.as_ref(),
                service: observed.service.as_ref(),
                pods: &observed.pods,
            };
            let status = status::compute(&ms, Verdict::Refused(&problem), seen, now);
            (status, Action::requeue(ctx.state.workload.retry_refused))
        }
        Ok(plan) => {
            let desired =
                build::desired(&ms, &plan, &observed, &ctx.manager).map_err(Error::Apply)?;
            let applied = apply_all(&ms, &ns, &ctx, &observed, desired).await?;
            let analysis =
                failover::analyse(&ms, &plan.eligible_nodes, &observed, ctx.fencing_allowed);
            let lost =
                node_loss::handle(&ms, &ctx, &observed, &plan.eligible_nodes, &analysis).await?;
            let analysis = lost.analysis.unwrap_or(analysis);
            let seen = Seen {
                deployment: Some(&applied.deployment),
                service: Some(&applied.service),
                pods: &observed.pods,
            };
            let mut status = status::compute(&ms, Verdict::Applied(&analysis), seen, now);
            if let Some(record) = lost.record {
                records.last_failover = Some(record.clone());
                status.last_failover = Some(record);
            }
            // Its caches' watches wake it on every change that matters; the
            // resync is only the safety net, the same whether Ready or not.
            let next = ctx.state.workload.resync;
            let next = lost.requeue.map_or(next, |soon| soon.min(next));
            (status, Action::requeue(next))
        }
    };

    if ms.spec.config.nfs.is_some()
        && ms
            .status
            .as_ref()
            .and_then(|s| s.condition(types::CONFIG_ON_NFS))
            .is_none()
    {
        let message = status
            .condition(types::CONFIG_ON_NFS)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        ctx.events
            .warning(ms.as_ref(), status::SQLITE_ON_NFS, "Reconcile", message)
            .await;
    }

    let written = ctx
        .write_status(ms.as_ref(), &status, &records)
        .await
        .map_err(Error::Status)?;
    for _ in 0..written.writes() {
        ctx.state.metrics.wrote("MediaServerStatus");
    }
    if written.stale() {
        return Ok(Action::requeue(STALE_RETRY));
    }
    Ok(action)
}

/// Claims first, so the pod never waits on a claim that is still to come.
async fn apply_all(
    ms: &MediaServer,
    ns: &str,
    ctx: &Context<State>,
    observed: &Observed,
    desired: Desired,
) -> Result<Applied, Error> {
    let (manager, metrics) = (&ctx.manager, &ctx.state.metrics);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    for claim in desired.claims {
        let current = observed.claims.get(&claim.name_any());
        apply(manager, metrics, &claims, current, Kept::Whole, claim)
            .await
            .map_err(Error::Apply)?;
    }
    // Neither refers to the other: one round trip for both.
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let ((service, _), (deployment, wrote)) = futures::try_join!(
        apply(
            manager,
            metrics,
            &services,
            observed.service.as_ref(),
            Kept::Whole,
            desired.service,
        ),
        apply(
            manager,
            metrics,
            &deployments,
            observed.deployment.as_ref(),
            Kept::WithoutSpec,
            desired.deployment,
        ),
    )
    .map_err(Error::Apply)?;
    if wrote {
        let (reason, note) = match &observed.deployment {
            None => (
                "Created",
                "created the server's Deployment, Service and claims",
            ),
            Some(_) => ("Updated", "applied the changed spec to the Deployment"),
        };
        ctx.events.normal(ms, reason, "Apply", note).await;
    }
    Ok(Applied {
        service,
        deployment,
    })
}
