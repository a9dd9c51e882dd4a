//! The reconcile: read → decide (pure, in [`crate::decide`]) → label nodes → move
//! consumers → write status (only the fields this controller owns, only when they
//! change) → publish Events.

use std::sync::Arc;
use std::time::Duration;

use homelab_api::UsbDevicePin;
use homelab_kit::{Action, Context, StatusPatch};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::finalizer::{self, Event as Finalize, finalizer};
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::decide::{Decision, decide};
use crate::status::OwnedStatus;
use crate::{Error, labels};

/// Removes the pin's node labels before the pin goes: nodes are cluster-scoped, so
/// owner references cannot clean them up.
pub const FINALIZER: &str = "homelab.home.arpa/node-labels";

/// How soon to look again while consumers are being moved.
const WHILE_MOVING: Duration = Duration::from_secs(5);

/// The controller's own state.
pub struct State {
    /// Every pin the controller sees, for conflicts between pins.
    pub pins: Store<UsbDevicePin>,
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
    let pod_list = pods
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube(format!("list pods in {namespace}"), e))?
        .items;
    let others = ctx.state.pins.state();
    let decision = decide(pin, &others, &pod_list, homelab_kit::conditions::now());
    act(pin, ctx, &pods, &decision).await?;
    let api: Api<UsbDevicePin> = Api::namespaced(ctx.client.clone(), namespace);
    let current = pin.status.as_ref().map(OwnedStatus::from);
    let wrote = ctx
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
    if wrote {
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
    let moving = !decision.removals.is_empty()
        || decision
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == homelab_api::conditions::types::RECONCILING);
    Ok(Action::requeue(if moving {
        WHILE_MOVING
    } else {
        ctx.state.resync
    }))
}

/// Labels nodes and removes consumers as decided.
async fn act(
    pin: &UsbDevicePin,
    ctx: &Context<State>,
    pods: &Api<Pod>,
    decision: &Decision,
) -> Result<(), Error> {
    let (added, removed) = labels::sync(
        &ctx.client,
        ctx.manager.name(),
        &pin.resource_name(),
        &decision.labelled_nodes,
    )
    .await?;
    if !added.is_empty() || !removed.is_empty() {
        tracing::info!(?added, ?removed, "node labels changed");
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
    labels::sync(
        &ctx.client,
        ctx.manager.name(),
        &pin.resource_name(),
        &std::collections::BTreeSet::new(),
    )
    .await?;
    Ok(Action::await_change())
}
