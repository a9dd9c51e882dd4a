//! The reconcile: read → validate → resolve references → watch over MQTT →
//! apply → assess liveness → restart if due → status. One module does each
//! step; this file strings them together and says what happened in Events.

use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::reflector::Store;
use std::time::Duration;

use homelab_api::ConditionedStatus;
use homelab_api::SensorGateway;
use homelab_api::conditions::types;
use homelab_api::failover::FailoverMode;
use homelab_api::sensorgateway::SensorGatewayStatus;
use homelab_kit::failover::FailoverMetrics;
use homelab_kit::settings::AllowedHostPaths;
use homelab_kit::{Action, Context, StatusPatch, StatusWrite};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Preconditions};
use kube::{Api, ResourceExt};

use crate::build::{self, Inputs, names};
use crate::error::Error;
use crate::liveness::{self, PodView};
use crate::metrics::Metrics;
use crate::mqtt::{GatewayId, Hub, Interest};
use crate::node_loss;
use crate::references::{self, Unresolved};
use crate::status::{self, Verdict, Watched};
use crate::validate::{Problem, check_host_paths, validate};

/// Reason of a broker TLS setting that cannot be used.
pub const INVALID_TLS: &str = "InvalidTLS";

/// The controller's own state, shared by every reconcile.
#[derive(Clone, Debug)]
pub struct State {
    /// The MQTT connections.
    pub hub: Hub,
    /// The controller's metrics.
    pub metrics: Metrics,
    /// Failovers started, blocked and how long they took.
    pub failover: FailoverMetrics,
    /// How long to wait before looking again at a gateway that is fine (the
    /// hub wakes it sooner when MQTT says something new).
    pub resync: Duration,
    /// How long to wait before looking again at a refused spec: a Secret cannot
    /// be watched (the controller may only get Secrets), so it is re-read.
    pub retry_refused: Duration,
    /// Where gateways may mount host directories (the administrator's
    /// `HOMELAB_ALLOWED_HOST_PATHS`).
    pub allowed_host_paths: AllowedHostPaths,
    /// The kubelets' heartbeat Leases, kept by the kit's heartbeat watch.
    pub leases: Store<Lease>,
}

/// Brings what `sg` owns and its status in line with its spec and with what
/// MQTT says.
///
/// # Errors
/// When the API server refuses or fails a request; bad input is a status.
pub async fn reconcile(
    cached: Arc<SensorGateway>,
    ctx: Arc<Context<State>>,
) -> Result<Action, Error> {
    let ns = cached.namespace().ok_or(Error::NoNamespace)?;
    let name = cached.name_any();
    let id = GatewayId {
        namespace: ns.clone(),
        name: name.clone(),
    };
    let api: Api<SensorGateway> = Api::namespaced(ctx.client.clone(), &ns);
    // The cache may lag behind our own last status write; one read keeps a
    // steady state from writing again.
    let Some(sg) = api.get_opt(&name).await.map_err(|e| {
        Error::Read(homelab_kit::Error::kube(
            format!("get SensorGateway {ns}/{name}"),
            e,
        ))
    })?
    else {
        forget(&ctx, &id, &cached);
        return Ok(Action::await_change());
    };
    if sg.metadata.deletion_timestamp.is_some() {
        forget(&ctx, &id, &sg);
        return Ok(Action::await_change());
    }
    let now = homelab_kit::conditions::now();

    let checked = validate(&sg).and_then(|plan| {
        check_host_paths(&sg, &ctx.state.allowed_host_paths)?;
        Ok(plan)
    });
    let plan = match checked {
        Ok(plan) => plan,
        Err(problem) => return refuse(&sg, &api, &ctx, &id, &problem, now).await,
    };
    let resolved = match references::resolve(&ctx.client, &ns, &sg, &plan).await {
        Ok(r) => r,
        Err(Unresolved::Problem(problem)) => {
            return refuse(&sg, &api, &ctx, &id, &problem, now).await;
        }
        Err(Unresolved::Waiting(outcome)) => {
            let status = status::compute(&sg, Verdict::Waiting(&outcome), now);
            write_status(&sg, &api, &ctx, &status, &SensorGatewayStatus::default()).await?;
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
        Err(Unresolved::Error(e)) => return Err(e),
    };
    let interest = Interest {
        availability: Some(plan.availability_topic.clone()),
        sensors: plan
            .sensors
            .iter()
            .map(|s| (s.filter.clone(), s.stale_after))
            .collect(),
    };
    let observed = match ctx.state.hub.observe(&id, &resolved.broker, interest) {
        Ok(o) => o,
        Err(message) => {
            let problem = Problem {
                reason: INVALID_TLS,
                message: format!("mqtt.tls: {message}"),
            };
            return refuse(&sg, &api, &ctx, &id, &problem, now).await;
        }
    };

    let movable = sg.spec.data.pinned_node().is_none()
        && resolved.pin.is_none()
        && sg.spec.failover.mode == FailoverMode::Automatic;
    let avoid = liveness::node_to_avoid(sg.status.as_ref(), movable);
    let pods = if sg.spec.external {
        Vec::new()
    } else {
        let inputs = Inputs {
            pin: resolved.pin.as_ref(),
            avoid_node: avoid.as_deref(),
        };
        let desired = build::desired(&sg, &plan, inputs, &ctx.manager).map_err(Error::Apply)?;
        apply_all(&sg, &ns, &ctx, desired).await?;
        pods(&ctx, &ns, &name).await?
    };
    let pod = current_pod(&pods);
    let data = node_loss::data_storage(&ctx.client, &ns, &sg).await?;
    let lost = if node_loss::applies(&sg) && !pods.is_empty() {
        let nodes = Api::<Node>::all(ctx.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::Read(homelab_kit::Error::kube("list nodes", e)))?
            .items;
        node_loss::handle(&sg, &ctx, &pods, &nodes, data.as_ref()).await?
    } else {
        homelab_kit::failover::workload::Outcome::default()
    };

    let may_restart = !sg.spec.external && sg.spec.failover.mode == FailoverMode::Automatic;
    let assessment = liveness::assess(liveness::Inputs {
        plan: &plan,
        observed: &observed,
        previous: sg.status.as_ref(),
        pod: pod.as_ref(),
        may_restart,
        now,
    });
    let address = resolved.broker.address();
    let radio_missing = resolved.pin.as_ref().and_then(status::radio_missing);
    let watched = Watched {
        plan: &plan,
        connection: &observed.connection,
        address: &address,
        assessment: &assessment,
        pod: pod.as_ref(),
        radio_missing: radio_missing.as_deref(),
    };
    let settling = status::settling_until(&sg, &watched, now);
    let mut status = status::compute(&sg, Verdict::Watched(watched), now);
    // What this reconcile did that must be recorded even if the object changed
    // under it (see write_status).
    let mut records = SensorGatewayStatus::default();
    if let Some(record) = lost.record {
        records.last_failover = Some(record.clone());
        status.last_failover = Some(record);
    }
    let standing = node_loss::readiness(&sg, data.as_ref(), ctx.fencing_allowed);
    status::failover_blocked(
        &mut status,
        standing.as_ref(),
        lost.blocked.as_ref(),
        sg.metadata.generation,
        now,
    );
    if let Some(restart) = &assessment.restart {
        restart_pod(&sg, &ns, &ctx, restart).await?;
        records.last_restart = Some(restart.record.clone());
        status.last_restart = Some(restart.record.clone());
    }
    announce(&sg, &ctx, &status).await;
    record_metrics(&ctx.state.metrics, &ns, &name, &status);
    write_status(&sg, &api, &ctx, &status, &records).await?;

    let next = assessment
        .next_deadline
        .map(|t| {
            let wait = t.duration_since(Timestamp::now()).unsigned_abs();
            // One second past the deadline, so it has passed when we look.
            wait + Duration::from_secs(1)
        })
        .map_or(ctx.state.resync, |d| d.min(ctx.state.resync));
    let next = lost.requeue.map_or(next, |soon| soon.min(next));
    // Look again when the new connection's grace ends, if nothing woke us first.
    let next = settling.map_or(next, |until| {
        let wait = until.duration_since(Timestamp::now()).unsigned_abs();
        next.min(wait + Duration::from_secs(1))
    });
    let next = if assessment.restart.is_some() {
        Duration::from_secs(5)
    } else {
        next
    };
    Ok(Action::requeue(next))
}

fn forget(ctx: &Context<State>, id: &GatewayId, sg: &SensorGateway) {
    ctx.state.hub.forget(id);
    let sensors: Vec<String> = sg.spec.sensors.iter().map(|s| s.name.clone()).collect();
    ctx.state.metrics.forget(&id.namespace, &id.name, &sensors);
}

/// A refused spec: nothing applied, nothing watched, `Stalled` with what to fix,
/// and a Warning Event once per distinct problem.
async fn refuse(
    sg: &SensorGateway,
    api: &Api<SensorGateway>,
    ctx: &Context<State>,
    id: &GatewayId,
    problem: &Problem,
    now: Timestamp,
) -> Result<Action, Error> {
    ctx.state.hub.forget(id);
    ctx.state.metrics.set_online(&id.namespace, &id.name, None);
    let stalled = sg.status.as_ref().and_then(|s| s.condition(types::STALLED));
    let known = stalled.is_some_and(|c| c.reason == problem.reason && c.message == problem.message);
    if !known {
        tracing::info!(reason = problem.reason, message = %problem.message, "spec refused; nothing applied");
        ctx.events
            .warning(sg, problem.reason, "Reconcile", problem.message.clone())
            .await;
    }
    let status = status::compute(sg, Verdict::Refused(problem), now);
    write_status(sg, api, ctx, &status, &SensorGatewayStatus::default()).await?;
    Ok(Action::requeue(ctx.state.retry_refused))
}

async fn write_status(
    sg: &SensorGateway,
    api: &Api<SensorGateway>,
    ctx: &Context<State>,
    status: &SensorGatewayStatus,
    records: &SensorGatewayStatus,
) -> Result<(), Error> {
    let write = ctx
        .manager
        .apply_status(api, sg, sg.status.as_ref(), status, StatusPatch::Apply)
        .await
        .map_err(Error::Status)?;
    if write.wrote() {
        ctx.state.metrics.wrote("SensorGatewayStatus");
    }
    // The object changed since it was read: its next reconcile writes the
    // status again, but cannot know of a restart or failover done just now.
    if write == StatusWrite::Stale && *records != SensorGatewayStatus::default() {
        ctx.manager
            .record_in_status(api, sg, records)
            .await
            .map_err(Error::Status)?;
        ctx.state.metrics.wrote("SensorGatewayStatus");
    }
    Ok(())
}

/// The claim once (a claim someone grew keeps its size), then the Service and
/// the Deployment, each only when it differs from what is stored.
async fn apply_all(
    sg: &SensorGateway,
    ns: &str,
    ctx: &Context<State>,
    desired: build::Desired,
) -> Result<(), Error> {
    let manager = &ctx.manager;
    let read = |what: String| move |e| Error::Read(homelab_kit::Error::kube(what, e));
    if let Some(claim) = desired.claim {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
        let claim_name = claim.name_any();
        let current = claims
            .get_opt(&claim_name)
            .await
            .map_err(read(format!("get PersistentVolumeClaim {ns}/{claim_name}")))?;
        if current.is_none() {
            manager.apply(&claims, &claim).await.map_err(Error::Apply)?;
            ctx.state.metrics.wrote("PersistentVolumeClaim");
        }
    }
    let name = sg.name_any();
    if let Some(service) = desired.service {
        let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
        let current = services
            .get_opt(&name)
            .await
            .map_err(read(format!("get Service {ns}/{name}")))?;
        let (_, wrote) = manager
            .apply_unless_current(&services, current.as_ref(), service)
            .await
            .map_err(Error::Apply)?;
        if wrote {
            ctx.state.metrics.wrote("Service");
        }
    }
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let current = deployments
        .get_opt(&name)
        .await
        .map_err(read(format!("get Deployment {ns}/{name}")))?;
    let (_, wrote) = manager
        .apply_unless_current(&deployments, current.as_ref(), desired.deployment)
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

/// The gateway's pods, Terminating ones included.
async fn pods(ctx: &Context<State>, ns: &str, name: &str) -> Result<Vec<Pod>, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("{}={name}", names::GATEWAY_LABEL)))
        .await
        .map_err(|e| {
            Error::Read(homelab_kit::Error::kube(
                format!("list pods of SensorGateway {ns}/{name}"),
                e,
            ))
        })?;
    Ok(list.items)
}

/// The gateway's live pod: the newest one not being deleted.
fn current_pod(pods: &[Pod]) -> Option<PodView> {
    // A pod its kubelet refused or that ended is history, not the gateway.
    let finished = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|phase| phase == "Failed" || phase == "Succeeded")
    };
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !finished(p))
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .map(pod_view)
}

fn pod_view(pod: &Pod) -> PodView {
    let ready_since = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map_or_else(Timestamp::now, |t| t.0)
        });
    PodView {
        name: pod.name_any(),
        uid: pod.uid().unwrap_or_default(),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        ready_since,
    }
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

/// Events for the transitions a person cares about: a condition turning
/// False (Warning) or from False back to True (Normal). A new gateway coming
/// online, or a broker connecting for the first time, is no news.
async fn announce(sg: &SensorGateway, ctx: &Context<State>, new: &SensorGatewayStatus) {
    let old = sg.status.as_ref();
    for (t, bad, good) in [
        (
            types::BROKER_CONNECTED,
            "BrokerUnreachable",
            "BrokerConnected",
        ),
        (types::GATEWAY_ONLINE, "GatewayOffline", "GatewayOnline"),
        (types::SENSORS_FRESH, "SensorStale", "SensorsFresh"),
    ] {
        let Some(after) = new.condition(t) else {
            continue;
        };
        let before = old.and_then(|s| s.condition(t)).map(|c| c.status.as_str());
        if before == Some(after.status.as_str()) {
            continue;
        }
        match after.status.as_str() {
            "False" => {
                ctx.events
                    .warning(sg, bad, "Watch", after.message.clone())
                    .await
            }
            "True" if before == Some("False") => {
                ctx.events
                    .normal(sg, good, "Watch", after.message.clone())
                    .await;
            }
            _ => {}
        }
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
