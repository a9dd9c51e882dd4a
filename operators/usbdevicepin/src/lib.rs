//! The UsbDevicePin controller: turns the node agents' presence reports into
//! placement and status.
//!
//! For each pin it decides where the device is (`status.currentNode`, `byIdPath`,
//! `since`), which pod holds it, and whether there is a `Conflict` (two pins claim
//! one device, or an exclusive device is on two nodes; the choice is deterministic
//! and the message says which and why). It labels the nodes that hold the device
//! (`devices.homelab.home.arpa/<pin>: "true"`) and publishes Events when the device
//! appears, disappears or moves. Consumers follow it: a consumer pod left on a node
//! without the device is removed once the device is reported elsewhere, so its
//! controller recreates it where the device's extended resource is; a consumer
//! started before its device last re-enumerated is restarted.
//!
//! Node loss: a node whose kubelet Lease goes unrenewed past the pin's
//! `failover.unreachableAfter` is lost ([`nodes`], triggered by the kit's heartbeat
//! watch, [`homelab_kit::failover::heartbeats`]); its
//! agent's presence entry is disregarded, so consumers follow a backup stick on
//! another node, and a consumer left on the lost node is force-removed at once after
//! the lost node is marked so that its replacement is not scheduled back there.
//!
//! A reconcile reads nothing from the API server: pins, pods, nodes and the
//! kubelets' Leases come from watched caches ([`caches`]), and only its writes leave
//! the process.
//!
//! Modules: [`controller`] (the reconcile), [`decide`] (pure decisions),
//! [`caches`] (what is watched, and which pins a change wakes), [`consumers`]
//! (reading pods), [`labels`] (node labels), [`nodes`] (lost nodes), [`status`]
//! (the owned status fields), [`error`].

pub mod caches;
pub mod consumers;
pub mod controller;
pub mod decide;
pub mod error;
pub mod labels;
pub mod nodes;
pub mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use homelab_api::UsbDevicePin;
use homelab_kit::failover::observe::{NODE_LEASE_NAMESPACE, lease_silent};
use homelab_kit::{Action, Context, Operator, Runner, Settings};
use kube::Client;
use kube::runtime::reflector::ObjectRef;
use prometheus_client::metrics::family::Family;

pub use caches::Caches;
pub use controller::{State, reconcile};
pub use error::Error;

/// The controller's name: field manager, Event reporter, Lease name.
pub const CONTROLLER_NAME: &str = "usbdevicepin-controller";

/// The controller, wired and ready to run.
pub struct Controller {
    /// The kit's runner with this controller's watches.
    runner: Runner<UsbDevicePin>,
    /// What every reconcile shares.
    state: State,
}

impl Controller {
    /// Watches pins and, into the caches a reconcile reads, the pods that may
    /// consume them (in `settings.namespace`, or everywhere), the nodes and the
    /// kubelets' heartbeat Leases.
    #[must_use]
    pub fn new(client: Client, settings: Settings) -> Self {
        let (runner, state) = runner(client, settings);
        Self { runner, state }
    }
}

impl Operator for Controller {
    type Kind = UsbDevicePin;
    type State = State;
    type Error = Error;

    const NAME: &'static str = CONTROLLER_NAME;

    fn from_env(client: Client, settings: Settings) -> Result<Self, homelab_kit::Error> {
        Ok(Self::new(client, settings))
    }

    fn into_parts(self) -> (Runner<UsbDevicePin>, State) {
        (self.runner, self.state)
    }

    fn reconcile(
        obj: Arc<UsbDevicePin>,
        ctx: Arc<Context<State>>,
    ) -> impl Future<Output = Result<Action, Error>> + Send + 'static {
        reconcile(obj, ctx)
    }
}

fn runner(client: Client, settings: Settings) -> (Runner<UsbDevicePin>, State) {
    let namespace = settings.namespace.clone();
    let controller = settings.name.clone();
    let mut runner =
        Runner::<UsbDevicePin>::new(client.clone(), settings).export_objects(object_state);
    // A node falling silent changes no object: the kit's heartbeat watch says so. It
    // names a node already silent when it first sees its Lease, so a controller
    // (re)started mid-failover finishes it; the reconcile of every pin at start takes
    // the marks off nodes that are back.
    let (leases, silence) = homelab_kit::failover::heartbeats::watch(client.clone());
    runner.waits_for(&leases);
    let caches = Caches::watch(
        &mut runner,
        &client,
        namespace.as_deref(),
        &controller,
        leases,
    );
    let (pins, by_node) = (runner.store(), caches.clone());
    runner = runner.reconcile_on(silence.flat_map(move |node| {
        let silent = by_node
            .leases
            .get(&ObjectRef::new(&node).within(NODE_LEASE_NAMESPACE))
            .is_some_and(|l| lease_silent(&l, k8s_openapi::jiff::Timestamp::now()));
        let concerned = by_node.concerned(&pins, &controller, &node);
        tracing::info!(
            node,
            silent,
            pins = concerned.len(),
            "node heartbeat changed"
        );
        futures::stream::iter(concerned)
    }));
    let state = State {
        pins: runner.store(),
        caches,
        resync: Duration::from_secs(300),
        transitions: Family::default(),
    };
    // At 0 from the start: an empty family is not exported at all.
    for reason in [
        decide::DEVICE_APPEARED,
        decide::DEVICE_DISAPPEARED,
        homelab_api::conditions::reasons::DEVICE_MOVED,
        homelab_api::conditions::reasons::FAILED_OVER,
    ] {
        let _ = state.transitions.get_or_create(&[("reason", reason)]);
    }
    runner.registry().register(
        "usbdevicepin_transitions",
        "Device transitions announced as Events (appeared, moved, gone, consumer moved), by reason",
        state.transitions.clone(),
    );
    let by_condition = runner.store();
    runner
        .registry()
        .register_collector(Box::new(homelab_kit::objects::ConditionGauges::new(
            by_condition,
            EXPORTED_CONDITIONS,
            conditions,
        )));
    (runner, state)
}

/// The conditions exported as `homelab_object_condition`: the alerts on a missing
/// device and on a conflict read them.
const EXPORTED_CONDITIONS: &[&str] = &[
    homelab_api::conditions::types::DEVICE_PRESENT,
    homelab_api::conditions::types::CONFLICT,
];

/// A pin's conditions, for `homelab_object_condition`.
fn conditions(pin: &UsbDevicePin) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition] {
    match &pin.status {
        Some(status) => &status.conditions,
        None => &[],
    }
}

/// What the per-object gauges say of a pin: Ready (its device is found), and the
/// node it is plugged into.
fn object_state(pin: &UsbDevicePin) -> homelab_kit::objects::ObjectState {
    use homelab_api::ConditionedStatus;
    let status = pin.status.as_ref();
    homelab_kit::objects::ObjectState {
        ready: status.map(|s| s.is_condition_true(homelab_api::conditions::types::READY)),
        node: status.and_then(|s| s.current_node.clone()),
    }
}
