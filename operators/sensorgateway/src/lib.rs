//! The SensorGateway controller: zigbee2mqtt, zwave-js-ui, ESPHome-style hubs
//! or any image as a one-replica `Recreate` Deployment, watched where it
//! speaks: MQTT. Its availability topic (with the Last Will) says whether the
//! gateway is online, its sensors' topics whether they still report, and a
//! gateway offline while its pod looks healthy is restarted.
//!
//! A reconcile is a pipeline: observe ([`observed`]: the runner's [`caches`],
//! the Secrets a spec names, the clock) → decide ([`decide`], pure: [`validate`],
//! [`references`] resolved, then with what [`mqtt`]'s shared broker connections
//! heard, [`build`] the desired objects, [`liveness`] online, stale, restart,
//! [`node_loss`] what failover needs, [`status`]) → act ([`controller`]: apply,
//! fail over, write the status, restart, Events).

pub mod build;
pub mod caches;
pub mod controller;
pub mod decide;
pub mod error;
pub mod liveness;
pub mod metrics;
pub mod mqtt;
pub mod node_loss;
pub mod observed;
pub mod preset;
pub mod references;
pub mod status;
pub mod validate;

#[cfg(test)]
mod fixtures;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use homelab_api::SensorGateway;
use homelab_api::conditions::types;
use homelab_kit::objects::{ConditionGauges, ObjectState};
use homelab_kit::workload::WorkloadState;
use homelab_kit::{Action, Context, Operator, Runner, Settings};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::caches::Caches;

pub use controller::{State, reconcile};
pub use error::Error;
pub use metrics::{Metrics, SensorGauges};
pub use mqtt::{Hub, MqttBudget};

/// The controller's name: field manager, Event reporter, Lease and metric label.
pub const CONTROLLER_NAME: &str = "sensorgateway-controller";

/// The conditions exported as `homelab_object_condition` (the alerts on an
/// offline gateway, stale sensors and an unreachable broker read them).
const EXPORTED_CONDITIONS: &[&str] = &[
    types::GATEWAY_ONLINE,
    types::SENSORS_FRESH,
    types::BROKER_CONNECTED,
    types::FAILOVER_READY,
];

/// How often connections of deleted gateways are closed.
const FORGET_EVERY: Duration = Duration::from_secs(30);

/// Ready and node of a gateway, for `homelab_object_ready` and
/// `homelab_object_node_info`.
fn object_state(sg: &SensorGateway) -> ObjectState {
    use homelab_api::ConditionedStatus;
    let status = sg.status.as_ref();
    ObjectState {
        ready: status.map(|s| s.is_condition_true(types::READY)),
        node: status.and_then(|s| s.node.clone()),
    }
}

/// A gateway's conditions, for `homelab_object_condition`.
fn conditions(sg: &SensorGateway) -> &[Condition] {
    match &sg.status {
        Some(status) => &status.conditions,
        None => &[],
    }
}

/// The controller, wired and ready to run.
pub struct Controller {
    runner: Runner<SensorGateway>,
    state: State,
    store: Store<SensorGateway>,
}

impl Controller {
    /// Watches SensorGateways and, into the caches a reconcile reads, what
    /// they own, their pods, data claims and the storage behind them, their
    /// radios' UsbDevicePins and the nodes; and is woken by its MQTT
    /// connections, which keep what they hear within the default
    /// [`MqttBudget`].
    #[must_use]
    pub fn new(client: Client, settings: Settings) -> Self {
        Self::with_mqtt_budget(client, settings, MqttBudget::default())
    }

    /// As [`Controller::new`], keeping no more of what MQTT says than `budget`.
    #[must_use]
    pub fn with_mqtt_budget(client: Client, settings: Settings, budget: MqttBudget) -> Self {
        let client_prefix = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("{CONTROLLER_NAME}-{}", std::process::id()));
        let (wake_tx, mut wake_rx) = tokio::sync::mpsc::unbounded_channel();
        let hub = Hub::new(wake_tx, &client_prefix, budget);
        let woken = futures::stream::poll_fn(move |cx| wake_rx.poll_recv(cx))
            .map(|id: mqtt::GatewayId| ObjectRef::new(&id.name).within(&id.namespace));
        let mut runner =
            Runner::<SensorGateway>::new(client.clone(), settings.clone()).reconcile_on(woken);
        // A node falling silent changes no object: the kit's heartbeat watch says so.
        let (leases, silence) = homelab_kit::failover::heartbeats::watch(client.clone());
        runner.waits_for(&leases);
        let caches = Caches::watch(&mut runner, leases);
        let by_node = runner.store();
        runner = runner.reconcile_on(
            silence.flat_map(move |node| futures::stream::iter(on_node(&by_node, &node))),
        );
        runner = runner.export_objects(object_state);
        let (by_condition, by_sensor) = (runner.store(), runner.store());
        let metrics = Metrics::default();
        let registry = runner.registry();
        metrics.register(registry);
        registry.register_collector(Box::new(ConditionGauges::new(
            by_condition,
            EXPORTED_CONDITIONS,
            conditions,
        )));
        registry.register_collector(Box::new(SensorGauges::new(by_sensor)));
        registry.register(
            "sensorgateway_mqtt_reconnects",
            "Reconnections to an MQTT broker after the first connection, by broker host:port",
            hub.reconnects(),
        );
        hub.register_budget(registry);
        let store = runner.store();
        // Resync every 5 minutes; refused specs every 30 s (a Secret they name
        // may appear, and Secrets are not watched).
        let (resync, retry_refused) = (Duration::from_secs(300), Duration::from_secs(30));
        let workload = WorkloadState::new(&settings, runner.registry(), resync, retry_refused);
        let state = State {
            hub,
            metrics,
            workload,
            caches,
        };
        Self {
            runner,
            state,
            store,
        }
    }

    /// The controller's metrics (clones count into the same series).
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        self.state.metrics.clone()
    }

    /// The MQTT connections (for tests that count them).
    #[must_use]
    pub fn hub(&self) -> Hub {
        self.state.hub.clone()
    }
}

impl Operator for Controller {
    type Kind = SensorGateway;
    type State = State;
    type Error = Error;

    const NAME: &'static str = CONTROLLER_NAME;

    fn from_env(client: Client, settings: Settings) -> Result<Self, homelab_kit::Error> {
        let budget = MqttBudget::from_env()?;
        Ok(Self::with_mqtt_budget(client, settings, budget))
    }

    fn into_parts(self) -> (Runner<SensorGateway>, State) {
        (self.runner, self.state)
    }

    fn reconcile(
        obj: Arc<SensorGateway>,
        ctx: Arc<Context<State>>,
    ) -> impl Future<Output = Result<Action, Error>> + Send + 'static {
        reconcile(obj, ctx)
    }

    /// As the kit's, with deleted gateways' MQTT subscriptions closed.
    async fn run(self) -> Result<(), homelab_kit::Error> {
        let _forgetting = forget_deleted(self.state.hub.clone(), self.store, self.runner.listed());
        self.runner.run(self.state, reconcile).await
    }

    /// As the kit's, with deleted gateways' MQTT subscriptions closed.
    async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), homelab_kit::Error> {
        let forgetting = forget_deleted(self.state.hub.clone(), self.store, self.runner.listed());
        let result = self.runner.run_until(self.state, reconcile, shutdown).await;
        forgetting.abort();
        result
    }
}

/// Closes the subscriptions (and connections) of gateways that were deleted:
/// a deleted object is never reconciled again to say so itself.
fn forget_deleted(
    hub: Hub,
    store: Store<SensorGateway>,
    listed: impl Future<Output = bool> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !listed.await {
            return;
        }
        loop {
            tokio::time::sleep(FORGET_EVERY).await;
            hub.retain(|id| {
                store
                    .get(&ObjectRef::new(&id.name).within(&id.namespace))
                    .is_some()
            });
        }
    })
}

/// The gateways a node falling silent (or speaking again) may concern: all of
/// them. Such transitions are rare, gateways few, and a node that a killed
/// controller marked without writing any status is released only by a look.
fn on_node(store: &Store<SensorGateway>, _node: &str) -> Vec<ObjectRef<SensorGateway>> {
    store
        .state()
        .into_iter()
        .map(|sg| ObjectRef::from_obj(&*sg))
        .collect()
}
