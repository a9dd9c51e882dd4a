//! The MediaServer controller: Jellyfin, Plex, Navidrome (or any image) as a
//! one-replica `Recreate` Deployment, a Service and the claims they need,
//! placed on a node that can run the image and its transcoding, and honest
//! in its status about where it runs and whether it could fail over.
//!
//! A reconcile is a pipeline, one module each:
//! [`observed`] (dereference: read nodes, claims, volumes, owned objects) →
//! [`validate`] (pure: a [`validate::Plan`] or a [`validate::Problem`]) →
//! [`build`] (pure: the desired objects) → [`apply`] (server-side apply,
//! skipped when nothing would change) → [`status`] (pure: conditions from
//! what was applied and observed), with [`failover`] (pure) saying whether
//! the server could move, and [`node_loss`] moving it when its node is lost
//! (the kit's failover). [`controller`] strings them together.
//!
//! A spec with a problem applies nothing, so bad input never leaves half a
//! server behind; it is `Stalled` with a message and a Warning Event.

pub mod apply;
pub mod build;
pub mod caches;
pub mod controller;
pub mod error;
pub mod failover;
pub mod metrics;
pub mod node_loss;
pub mod observed;
pub mod placement;
pub mod preset;
pub mod status;
pub mod validate;

#[cfg(test)]
mod fixtures;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use homelab_api::MediaServer;
use homelab_kit::workload::WorkloadState;
use homelab_kit::{Action, Context, Operator, Runner, Settings};
use kube::Client;

use crate::caches::{Caches, concerned};

pub use controller::{State, reconcile};
pub use error::Error;
pub use metrics::Metrics;

/// The controller's name: field manager, Event reporter, Lease and metric label.
pub const CONTROLLER_NAME: &str = "mediaserver-controller";

/// What the per-object gauges say of a server: Ready, and the node it runs on.
fn object_state(ms: &MediaServer) -> homelab_kit::objects::ObjectState {
    use homelab_api::ConditionedStatus;
    let status = ms.status.as_ref();
    homelab_kit::objects::ObjectState {
        ready: status.map(|s| s.is_condition_true(homelab_api::conditions::types::READY)),
        node: status.and_then(|s| s.node.clone()),
    }
}

/// The controller, wired and ready to run.
pub struct Controller {
    /// The kit's runner with this controller's watches.
    runner: Runner<MediaServer>,
    /// What every reconcile shares.
    state: State,
}

impl Controller {
    /// Watches MediaServers and, into the caches a reconcile reads, what they
    /// own; their pods (where they run); the claims they mount, owned or not
    /// (a missing claim may appear) and the volumes and classes behind them;
    /// and nodes (a refused server may fit once a node joins or gets a GPU).
    #[must_use]
    pub fn new(client: Client, settings: Settings) -> Self {
        let mut runner = Runner::<MediaServer>::new(client.clone(), settings.clone())
            .ignore_status_changes()
            .export_objects(object_state);
        // A node falling silent changes no object: the kit's heartbeat watch says so.
        let (leases, silence) = homelab_kit::failover::heartbeats::watch(client.clone());
        runner.waits_for(&leases);
        let caches = Caches::watch(&mut runner, leases);
        let by_node = runner.store();
        runner = runner.reconcile_on(
            silence.flat_map(move |node| futures::stream::iter(concerned(&by_node, &node))),
        );
        let metrics = Metrics::default();
        metrics.register(runner.registry());
        // Resync every 10 minutes, refused specs every 5.
        let (resync, retry_refused) = (Duration::from_secs(600), Duration::from_secs(300));
        let workload = WorkloadState::new(&settings, runner.registry(), resync, retry_refused);
        let state = State {
            metrics,
            workload,
            caches,
        };
        Self { runner, state }
    }

    /// What every reconcile shares (for calling a reconcile directly in a test).
    #[must_use]
    pub fn state(&self) -> State {
        self.state.clone()
    }

    /// The controller's failover metrics (clones count into the same series).
    #[must_use]
    pub fn failover_metrics(&self) -> homelab_kit::failover::FailoverMetrics {
        self.state.workload.failover.clone()
    }

    /// The controller's metrics (clones count into the same series).
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        self.state.metrics.clone()
    }
}

impl Operator for Controller {
    type Kind = MediaServer;
    type State = State;
    type Error = Error;

    const NAME: &'static str = CONTROLLER_NAME;

    fn from_env(client: Client, settings: Settings) -> Result<Self, homelab_kit::Error> {
        Ok(Self::new(client, settings))
    }

    fn into_parts(self) -> (Runner<MediaServer>, State) {
        (self.runner, self.state)
    }

    fn reconcile(
        obj: Arc<MediaServer>,
        ctx: Arc<Context<State>>,
    ) -> impl Future<Output = Result<Action, Error>> + Send + 'static {
        reconcile(obj, ctx)
    }
}
