//! The reconcile: read (from the caches, [`crate::caches`]: no request) → decide
//! (pure, in [`crate::decide`]) → label nodes → move consumers → write status (only
//! the fields this controller owns, only when they change) → publish Events.

use std::sync::Arc;
use std::time::Duration;

use homelab_api::UsbDevicePin;
use homelab_kit::failover::{NodeView, fence};
use homelab_kit::{Action, Context, StatusPatch, StatusWrite};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::DeleteParams;
use kube::runtime::finalizer::{self, Event as Finalize, finalizer};
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::caches::Caches;
use crate::decide::{Decision, decide};
use crate::status::OwnedStatus;
use crate::{Error, labels, nodes};

/// Removes the pin's node labels before the pin goes: nodes are cluster-scoped, so
/// owner references cannot clean them up.
pub const FINALIZER: &str = "homelab.home.arpa/node-labels";

/// How soon to look again while consumers are being moved.
const WHILE_MOVING: Duration = Duration::from_secs(5);

/// The controller's own state.
pub struct State {
    /// Every pin the controller sees, for conflicts between pins.
    pub pins: Store<UsbDevicePin>,
    /// Nodes, pods and heartbeat Leases, read instead of the API server.
    pub caches: Caches,
    /// How often to look again without a change.
    pub resync: Duration,
    /// `homelab_usbdevicepin_transitions_total{reason}`: the Events published, by
    /// reason (DeviceAppeared, DeviceMoved, FailedOver, …): a fixed set.
    pub transitions: Family<[(&'static str, &'static str); 1], Counter>,
}

/// Reconciles one pin.
///
/// # Errors
/// Any failed read or write; the runner backs off and publishes a Warning.
pub async fn reconcile(pin: Arc<UsbDevicePin>, ctx: Arc<Context<State>>) -> Result<Action, Error> {
    let namespace = pin.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<UsbDevicePin> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, pin, |event| async {
        match event {
            Finalize::Apply(pin) => apply(&pin, &ctx, &namespace).await,
            Finalize::Cleanup(pin) => cleanup(&pin, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    })
}

async fn apply(pin: &UsbDevicePin, ctx: &Context<State>, namespace: &str) -> Result<Action, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let caches = &ctx.state.caches;
    let pod_list = caches.pods_in(namespace);
    let others = ctx.state.pins.state();
    // Leases are judged against the real clock: the seconds-truncated `now` of
    // conditions could see a node the heartbeat watch just found silent as still
    // heard from, and then nothing would look again until the resync.
    let views = caches.observe(pin, &pod_list, ctx.manager.name(), Timestamp::now());
    let now = homelab_api::conditions::now();
    let decision = decide(pin, &others, &pod_list, &views, now);
    release(ctx, &views).await?;
    // The status first, acts after: a failover's record is then never lost to a
    // controller stopped between the two, and a decision made on a pin the cache
    // had not caught up with is dropped before it does anything.
    let api: Api<UsbDevicePin> = Api::namespaced(ctx.client.clone(), namespace);
    let current = pin.status.as_ref().map(OwnedStatus::from);
    let write = ctx
        .manager
        .apply_status(
            &api,
            pin,
            current.as_ref(),
            &decision.status,
            StatusPatch::Apply,
        )
        .await
        .map_err(Error::Status)?;
    if write == StatusWrite::Stale {
        return Ok(Action::requeue(WHILE_MOVING));
    }
    // The Events tell of the status just written: published before acting, so a
    // failed act (retried with a status already unchanged) cannot lose them.
    if write.wrote() {
        for note in &decision.notes {
            ctx.state
                .transitions
                .get_or_create(&[("reason", note.reason)])
                .inc();
            if note.warning {
                ctx.events
                    .warning(pin, note.reason, "Reconcile", note.message.clone())
                    .await;
            } else {
                ctx.events
                    .normal(pin, note.reason, "Reconcile", note.message.clone())
                    .await;
            }
        }
    }
    act(pin, ctx, &pods, &decision).await?;
    let moving = !decision.removals.is_empty()
        || decision
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == homelab_api::conditions::types::RECONCILING);
    let next = if moving {
        WHILE_MOVING
    } else {
        ctx.state.resync
    };
    Ok(Action::requeue(
        decision.recheck.map_or(next, |r| r.min(next)),
    ))
}

/// Takes this controller's lost-node marks off nodes that heartbeat again.
async fn release(ctx: &Context<State>, views: &[NodeView]) -> Result<(), Error> {
    let api = Api::<Node>::all(ctx.client.clone());
    for node in nodes::releasable(views, ctx.manager.name()) {
        if fence::release(&api, &node).await.map_err(Error::Fence)? {
            tracing::info!(node, "node heartbeats again: removed the lost-node mark");
        }
    }
    Ok(())
}

/// Labels nodes and removes consumers as decided.
async fn act(
    pin: &UsbDevicePin,
    ctx: &Context<State>,
    pods: &Api<Pod>,
    decision: &Decision,
) -> Result<(), Error> {
    let node_api = Api::<Node>::all(ctx.client.clone());
    let label = pin.resource_name();
    let (added, removed) = labels::sync(
        &node_api,
        ctx.manager.name(),
        &label,
        &ctx.state.caches.labelled(&label),
        &decision.labelled_nodes,
    )
    .await?;
    if !added.is_empty() || !removed.is_empty() {
        tracing::info!(?added, ?removed, "node labels changed");
    }
    // Mark first: once the pod is gone its replacement is scheduled, and a lost
    // node's dead kubelet still advertises the device. A node the cache shows marked
    // already is not read again.
    for node in &decision.mark_lost {
        if ctx.state.caches.marked_lost(node) {
            continue;
        }
        fence::mark_lost(&node_api, node, ctx.manager.name(), false)
            .await
            .map_err(Error::Fence)?;
        tracing::info!(node, "marked the lost node so nothing is scheduled there");
    }
    for removal in &decision.removals {
        let params = if removal.force {
            DeleteParams::default().grace_period(0)
        } else {
            DeleteParams::default()
        };
        match pods.delete(&removal.pod, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(kube::Error::Api(s)) if s.code == 403 => {
                let message = format!(
                    "delete pod {}: this controller may delete pods only in the namespaces the administrator listed in the chart value `namespaces`",
                    removal.pod
                );
                return Err(Error::kube(message, kube::Error::Api(s)));
            }
            Err(e) => return Err(Error::kube(format!("delete pod {}", removal.pod), e)),
        }
        tracing::info!(pod = %removal.pod, force = removal.force, reason = removal.reason, "removed consumer pod");
        ctx.events
            .normal(pin, removal.reason, "MoveConsumer", removal.message.clone())
            .await;
    }
    Ok(())
}

async fn cleanup(pin: &UsbDevicePin, ctx: &Context<State>) -> Result<Action, Error> {
    let node_api = Api::<Node>::all(ctx.client.clone());
    let label = pin.resource_name();
    // Once, when the pin goes, from the API server: a label put on an instant ago and
    // not yet in the node cache would otherwise stay behind for good.
    let have = labels::labelled(&node_api, &label).await?;
    labels::sync(
        &node_api,
        ctx.manager.name(),
        &label,
        &have,
        &std::collections::BTreeSet::new(),
    )
    .await?;
    Ok(Action::await_change())
}
