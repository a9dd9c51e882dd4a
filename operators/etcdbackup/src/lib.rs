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
pub mod sqlite;
pub mod store;

// The controller: [`controller`] (read → validate → build → apply → status),
// [`build`] (the CronJob), [`preset`] (distributions), [`status`], [`metrics`].
pub mod build;
pub mod controller;
pub mod error;
pub mod metrics;
pub mod preset;
pub mod status;

use std::future::Future;

use homelab_api::EtcdBackup;
use homelab_kit::{Runner, Settings};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

pub use build::Image;
pub use controller::{State, reconcile};
pub use error::Error;
pub use metrics::Metrics;

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

/// The controller, wired and ready to run.
pub struct Controller {
    /// The kit's runner with this controller's watches.
    runner: Runner<EtcdBackup>,
    /// What every reconcile shares.
    state: State,
}

impl Controller {
    /// Watches EtcdBackups, their CronJobs, and the Pods of their runs (a finished
    /// run's report arrives as a Pod status change).
    #[must_use]
    pub fn new(client: Client, settings: Settings, image: Image) -> Self {
        let pods: Api<Pod> = match &settings.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let mut runner = Runner::<EtcdBackup>::new(client, settings)
            .owns::<CronJob>()
            .watches(
                pods,
                watcher::Config::default().labels(build::BACKUP_LABEL),
                |pod: Pod| {
                    let owner = pod.labels().get(build::BACKUP_LABEL).cloned();
                    let ns = pod.namespace().unwrap_or_default();
                    owner.map(|name| ObjectRef::<EtcdBackup>::new(&name).within(&ns))
                },
            );
        let metrics = Metrics::default();
        metrics.register(runner.registry());
        Self {
            runner,
            state: State::new(image, metrics),
        }
    }

    /// The controller's metrics.
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        self.state.metrics.clone()
    }

    /// Runs until SIGTERM or SIGINT.
    ///
    /// # Errors
    /// As [`Runner::run`].
    pub async fn run(self) -> Result<(), homelab_kit::Error> {
        self.runner.run(self.state, reconcile).await
    }

    /// Runs until `shutdown` completes (for tests).
    ///
    /// # Errors
    /// As [`Runner::run_until`].
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), homelab_kit::Error> {
        self.runner.run_until(self.state, reconcile, shutdown).await
    }
}
