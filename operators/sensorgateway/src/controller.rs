//! The reconcile, as a pipeline: observe (the runner's caches, the Secrets the
//! spec names, the clock: [`crate::observed`]) → decide what to hear over MQTT
//! (pure) → hear it (the hub) → decide (pure: [`crate::decide`]) → act (apply,
//! fail over, write the status, restart, say it in Events). This file acts.

use std::sync::Arc;

use homelab_api::SensorGateway;
use homelab_api::sensorgateway::SensorGatewayStatus;
use homelab_kit::failover::workload;
use homelab_kit::workload::WorkloadState;
use homelab_kit::{Action, Context, Kept, STALE_RETRY, being_deleted};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use kube::api::{DeleteParams, Preconditions};
use kube::{Api, ResourceExt};

use crate::build;
use crate::caches::{Caches, Cluster};
use crate::decide::{self, Decision, Given, Note, Refusal, Run};
use crate::error::Error;
use crate::liveness;
use crate::metrics::Metrics;
use crate::mqtt::{GatewayId, Hub};
use crate::node_loss;
use crate::observed::{Observed, observe};

pub use crate::decide::INVALID_TLS;

/// The controller's own state, shared by every reconcile.
#[derive(Clone, Debug)]
pub struct State {
    /// The MQTT connections.
    pub hub: Hub,
    /// The controller's metrics.
    pub metrics: Metrics,
    /// Failover metrics, how often to look again (the hub wakes a gateway
    /// sooner when MQTT says something new; a refused spec is looked at often,
    /// since the Secrets it names cannot be watched), allowed host paths.
    pub workload: WorkloadState,
    /// What the reconcile reads: the runner's caches (the kubelets' heartbeat
    /// Leases among them).
    pub caches: Caches,
}

/// Brings what `sg` owns and its status in line with its spec and with what
/// MQTT says.
///
/// `sg` is the runner's cached object: nothing is read again. Should it lag
/// behind this controller's own last status write, that write carries its
/// resourceVersion, is refused as stale, and nothing else is done on it: the
/// reconcile looks again on top of the newer version.
///
/// # Errors
/// When the API server refuses or fails a request; bad input is a status.
pub async fn reconcile(sg: Arc<SensorGateway>, ctx: Arc<Context<State>>) -> Result<Action, Error> {
    let id = GatewayId {
        namespace: sg.namespace().ok_or(Error::NoNamespace)?,
        name: sg.name_any(),
    };
    if being_deleted(sg.as_ref()) {
        forget(&ctx, &id, &sg);
        return Ok(Action::await_change());
    }
    let state = &ctx.state;
    // Observe: the caches, the Secrets the spec names, the clock.
    let observed = observe(&sg, &state.caches, &ctx.client).await?;
    // What to hear (pure: validate, dereference), and what MQTT heard of it.
    let listened = decide::watch(&sg, &observed, &state.workload.allowed_host_paths).map(|watch| {
        let heard = state
            .hub
            .observe(&id, &watch.resolved.broker, watch.interest());
        (watch, heard)
    });
    // Decide (pure): which refusal, what to apply, restart, the status, Events.
    let given = Given {
        manager: &ctx.manager,
        fencing_allowed: ctx.fencing_allowed,
        resync: state.workload.resync,
        retry_refused: state.workload.retry_refused,
    };
    let decision = decide::decide(&sg, &observed, listened, given).map_err(Error::Apply)?;
    // Act.
    match decision {
        Decision::Refuse(refusal) => refuse(&sg, &ctx, &id, *refusal).await,
        Decision::Run(run) => act(&sg, &ctx, &id, &observed, *run).await,
    }
}

fn forget(ctx: &Context<State>, id: &GatewayId, sg: &SensorGateway) {
    ctx.state.hub.forget(id);
    let sensors: Vec<String> = sg.spec.sensors.iter().map(|s| s.name.clone()).collect();
    ctx.state.metrics.forget(&id.namespace, &id.name, &sensors);
}

/// A refused spec: nothing applied, nothing watched, `Stalled` with what to
/// fix, and a Warning Event once the status says it for the first time.
async fn refuse(
    sg: &SensorGateway,
    ctx: &Context<State>,
    id: &GatewayId,
    refusal: Refusal,
) -> Result<Action, Error> {
    ctx.state.hub.forget(id);
    ctx.state.metrics.set_online(&id.namespace, &id.name, None);
    let none = SensorGatewayStatus::default();
    if write_status(sg, ctx, &refusal.status, &none).await? {
        return Ok(Action::requeue(STALE_RETRY));
    }
    if refusal.warn {
        ctx.refused(sg, &refusal.problem).await;
    }
    Ok(Action::requeue(refusal.retry))
}

/// Applies what was decided, lets the kit handle a lost node, writes the
/// status, and only then restarts the pod and publishes the Events: a
/// decision made on a cached gateway older than the stored one (its status
/// write refused as stale) does nothing more.
async fn act(
    sg: &SensorGateway,
    ctx: &Context<State>,
    id: &GatewayId,
    observed: &Observed,
    mut run: Run,
) -> Result<Action, Error> {
    if let Some(desired) = run.desired.take() {
        apply_all(sg, &id.namespace, ctx, &observed.cluster, desired).await?;
    }
    let lost = match &run.failover {
        Some(failover) => node_loss::handle(sg, ctx, &observed.cluster, failover).await?,
        None => workload::Outcome::default(),
    };
    let soon = lost.requeue;
    let (status, records) = decide::with_failover(
        sg,
        std::mem::take(&mut run.status),
        run.standing.as_ref(),
        lost,
        observed.now,
    );
    record_metrics(&ctx.state.metrics, &id.namespace, &id.name, &status);
    if write_status(sg, ctx, &status, &records).await? {
        return Ok(Action::requeue(STALE_RETRY));
    }
    if let Some(restart) = &run.restart {
        restart_pod(sg, &id.namespace, ctx, restart).await?;
    }
    publish(sg, ctx, &run.notes).await;
    Ok(Action::requeue(decide::next_look(&run, soon)))
}

/// Writes `status` and counts the writes ([`Context::write_status`]);
/// returns whether it was stale.
async fn write_status(
    sg: &SensorGateway,
    ctx: &Context<State>,
    status: &SensorGatewayStatus,
    records: &SensorGatewayStatus,
) -> Result<bool, Error> {
    let written = ctx
        .write_status(sg, status, records)
        .await
        .map_err(Error::Status)?;
    for _ in 0..written.writes() {
        ctx.state.metrics.wrote("SensorGatewayStatus");
    }
    Ok(written.stale())
}

/// The claim once (a claim someone grew keeps its size), then the Service and
/// the Deployment, each only when it differs from what the cache holds.
async fn apply_all(
    sg: &SensorGateway,
    ns: &str,
    ctx: &Context<State>,
    cluster: &Cluster,
    desired: build::Desired,
) -> Result<(), Error> {
    let manager = &ctx.manager;
    if let Some(claim) = desired.claim {
        let exists = cluster
            .claim
            .as_ref()
            .is_some_and(|c| c.name_any() == claim.name_any());
        if !exists {
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
            manager.apply(&claims, &claim).await.map_err(Error::Apply)?;
            ctx.state.metrics.wrote("PersistentVolumeClaim");
        }
    }
    if let Some(service) = desired.service {
        let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
        let (_, wrote) = manager
            .apply_unless_current(&services, cluster.service.as_ref(), Kept::Whole, service)
            .await
            .map_err(Error::Apply)?;
        if wrote {
            ctx.state.metrics.wrote("Service");
        }
    }
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let current = cluster.deployment.as_ref();
    let (_, wrote) = manager
        .apply_unless_current(&deployments, current, Kept::Whole, desired.deployment)
        .await
        .map_err(Error::Apply)?;
    if wrote {
        ctx.state.metrics.wrote("Deployment");
        let (reason, note) = match current {
            None => ("Created", "created the gateway's Deployment"),
            Some(_) => (
                "Updated",
                "applied the changed spec to the gateway's Deployment",
            ),
        };
        ctx.events.normal(sg, reason, "Apply", note).await;
    }
    Ok(())
}

/// Deletes the pod (only that one: the uid precondition), and the Deployment
/// makes a new one.
async fn restart_pod(
    sg: &SensorGateway,
    ns: &str,
    ctx: &Context<State>,
    restart: &liveness::Restart,
) -> Result<(), Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(restart.pod.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(&restart.pod.name, &params).await {
        Ok(_) => {}
        // Gone or replaced already: the restart happened without us.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => {
            return Err(Error::Restart(homelab_kit::Error::kube(
                format!("delete pod {ns}/{}", restart.pod.name),
                e,
            )));
        }
    }
    tracing::info!(pod = %restart.pod.name, reason = %restart.record.reason, "restarted the gateway");
    ctx.state.metrics.restarted("offline");
    let mut note = format!(
        "restarted pod {}: {}",
        restart.pod.name, restart.record.reason
    );
    if restart.record.count >= liveness::MOVE_AFTER_RESTARTS
        && let Some(node) = &restart.record.node
    {
        note.push_str(&format!(
            "; restart {} in a row on {node}: the next pod avoids that node if it can run elsewhere",
            restart.record.count
        ));
    }
    ctx.events
        .warning(sg, "RestartedOffline", "Restart", note)
        .await;
    Ok(())
}

/// The Events decided for the status just written.
async fn publish(sg: &SensorGateway, ctx: &Context<State>, notes: &[Note]) {
    for note in notes {
        ctx.events
            .event(sg, note.warning, note.reason, "Watch", note.message.clone())
            .await;
    }
}

fn record_metrics(metrics: &Metrics, ns: &str, name: &str, status: &SensorGatewayStatus) {
    metrics.set_online(ns, name, status.online);
    for s in &status.sensors {
        if let Some(t) = &s.last_seen {
            metrics.set_last_seen(ns, name, &s.name, t.0.as_second());
        }
    }
}
