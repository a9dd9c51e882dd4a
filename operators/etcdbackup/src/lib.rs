//! EtcdBackup: the controller, and the snapshot runner its CronJob runs.
//!
//! The runner (`etcd-backup snapshot`), one module each: [`args`] (its command line),
//! [`etcd`] (the gRPC client), [`run`] (stream → hash → compress → write → verify →
//! prune), [`store`] (a directory or S3, atomic writes, manifests), [`bbolt`]
//! (snapshot integrity), [`sqlite`] (k3s's SQLite), [`retention`], [`naming`] and
//! [`report`] (the result, handed to the controller as the Pod's termination
//! message).

pub mod args;
pub mod bbolt;
pub mod etcd;
pub mod naming;
pub mod report;
pub mod retention;
pub mod run;
pub mod schedule;
pub mod shell;
pub mod sqlite;
pub mod store;

// The controller: [`controller`] (observe → decide → act), [`caches`] and
// [`observed`] (what a reconcile reads), [`decide`] (pure: the whole decision),
// [`validate`] (pure), [`policy`] (the namespaces and host paths an administrator
// allows), [`build`] (the CronJob), [`preset`] (distributions), [`provenance`]
// (which pods' reports count), [`status`], [`metrics`].
pub mod build;
pub mod caches;
pub mod controller;
pub mod decide;
pub mod error;
pub mod metrics;
pub mod observed;
pub mod policy;
pub mod preset;
pub mod provenance;
pub mod status;
pub mod validate;

use std::future::Future;
use std::sync::Arc;

use homelab_api::EtcdBackup;
use homelab_api::conditions::types;
use homelab_kit::objects::{ConditionGauges, ObjectState};
use homelab_kit::{Action, Context, Operator, Runner, Settings};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;

pub use build::Image;
use caches::Caches;
pub use controller::{State, reconcile};
pub use error::Error;
pub use metrics::{Metrics, RunGauges};
pub use policy::Policy;

/// The controller's name: field manager, Event reporter, Lease and metric label.
pub const CONTROLLER_NAME: &str = "etcdbackup-controller";
/// Environment variable with the runner's image.
pub const IMAGE_ENV: &str = "HOMELAB_ETCDBACKUP_IMAGE";
/// Environment variable with the runner image's pull policy (IfNotPresent).
pub const PULL_POLICY_ENV: &str = "HOMELAB_ETCDBACKUP_IMAGE_PULL_POLICY";

impl Image {
    /// The image from the environment.
    ///
    /// # Errors
    /// When [`IMAGE_ENV`] is unset.
    pub fn from_env() -> Result<Self, homelab_kit::Error> {
        let name = std::env::var(IMAGE_ENV).map_err(|_| homelab_kit::Error::InvalidSetting {
            name: IMAGE_ENV,
            value: String::new(),
            expected: "the runner's image (the controller's own image)",
        })?;
        let pull_policy = std::env::var(PULL_POLICY_ENV).unwrap_or_else(|_| "IfNotPresent".into());
        Ok(Self { name, pull_policy })
    }
}

/// The conditions exported as `homelab_object_condition` (staleness has a gauge
/// of its own, `homelab_etcdbackup_stale`).
const EXPORTED_CONDITIONS: &[&str] = &[types::QUORUM_AT_RISK];

/// Whether a backup is Ready, for `homelab_object_ready`. A backup runs on no
/// node of its own: it has no `homelab_object_node_info`.
fn object_state(backup: &EtcdBackup) -> ObjectState {
    use homelab_api::ConditionedStatus;
    ObjectState {
        ready: backup
            .status
            .as_ref()
            .map(|s| s.is_condition_true(types::READY)),
        node: None,
    }
}

/// A backup's conditions, for `homelab_object_condition`.
fn conditions(backup: &EtcdBackup) -> &[Condition] {
    match &backup.status {
        Some(status) => &status.conditions,
        None => &[],
    }
}

/// The controller, wired and ready to run.
pub struct Controller {
    /// The kit's runner with this controller's watches.
    runner: Runner<EtcdBackup>,
    /// What every reconcile shares.
    state: State,
}

impl Controller {
    /// Watches EtcdBackups, their CronJobs, the Jobs and Pods of their runs (a
    /// finished run's report arrives as a Pod status change). EtcdBackups are
    /// honoured only in the client's namespace until [`Controller::with_policy`]
    /// says otherwise.
    #[must_use]
    pub fn new(client: Client, settings: Settings, image: Image) -> Self {
        let policy = Policy::only(client.default_namespace());
        let mut runner = Runner::<EtcdBackup>::new(client, settings);
        let caches = Caches::watch(&mut runner);
        runner = runner.export_objects(object_state);
        let (by_condition, by_run) = (runner.store(), runner.store());
        let metrics = Metrics::default();
        let registry = runner.registry();
        metrics.register(registry);
        registry.register_collector(Box::new(ConditionGauges::new(
            by_condition,
            EXPORTED_CONDITIONS,
            conditions,
        )));
        registry.register_collector(Box::new(RunGauges::new(by_run)));
        let mut state = State::new(image, metrics, caches);
        state.policy = policy;
        Self { runner, state }
    }

    /// Honours EtcdBackups only where `policy` allows, mounting only what it allows.
    #[must_use]
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.state.policy = policy;
        self
    }

    /// The controller's metrics.
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        self.state.metrics.clone()
    }
}

impl Operator for Controller {
    type Kind = EtcdBackup;
    type State = State;
    type Error = Error;

    const NAME: &'static str = CONTROLLER_NAME;

    /// With the runner's image and the administrator's [`Policy`] from the
    /// environment.
    fn from_env(client: Client, settings: Settings) -> Result<Self, homelab_kit::Error> {
        let image = Image::from_env()?;
        let policy = Policy::from_env(client.default_namespace())?;
        tracing::info!(
            namespaces = %policy.namespaces().collect::<Vec<_>>().join(","),
            host_paths = %policy
                .host_paths()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
            "EtcdBackups are honoured in these namespaces, with these host paths besides the presets"
        );
        Ok(Self::new(client, settings, image).with_policy(policy))
    }

    fn into_parts(self) -> (Runner<EtcdBackup>, State) {
        (self.runner, self.state)
    }

    fn reconcile(
        obj: Arc<EtcdBackup>,
        ctx: Arc<Context<State>>,
    ) -> impl Future<Output = Result<Action, Error>> + Send + 'static {
        reconcile(obj, ctx)
    }
}
