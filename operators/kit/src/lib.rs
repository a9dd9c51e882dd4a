//! The controller kit: what every homelab controller shares, so that each
//! controller binary is a reconcile function and a few lines of `main`.
//!
//! # How a controller uses it
//!
//! ```no_run
//! use std::sync::Arc;
//! use k8s_openapi::api::{apps::v1::Deployment, core::v1::{ConfigMap, Service}};
//! use homelab_kit::{Action, Context, ReconcileError, Runner, Settings};
//!
//! /// The controller's own error type, with a fixed metric label per variant.
//! #[derive(Debug, thiserror::Error)]
//! enum Error {
//!     #[error("could not apply the Deployment")]
//!     Apply(#[source] homelab_kit::Error),
//! }
//!
//! impl ReconcileError for Error {
//!     fn metric_label(&self) -> &'static str {
//!         match self {
//!             Error::Apply(e) => e.metric_label(),
//!         }
//!     }
//! }
//!
//! /// Read, build, apply, write status (only if it changed).
//! async fn reconcile(obj: Arc<ConfigMap>, ctx: Arc<Context<()>>) -> Result<Action, Error> {
//!     // let desired = build(&obj)?;                       // pure, unit-tested
//!     // ctx.manager.apply(&api, &desired).await.map_err(Error::Apply)?;
//!     // ctx.manager.apply_status(&api, &obj, current, &status, Default::default()).await?;
//!     Ok(Action::requeue(std::time::Duration::from_secs(3600)))
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), homelab_kit::Error> {
//!     homelab_kit::telemetry::init()?;
//!     let client = kube::Client::try_default()
//!         .await
//!         .map_err(|e| homelab_kit::Error::kube("connect to the API server", e))?;
//!     Runner::<ConfigMap>::new(client, Settings::from_env("example-controller")?)
//!         .owns::<Deployment>()
//!         .owns::<Service>()
//!         .run((), reconcile)
//!         .await
//! }
//! ```
//!
//! [`Runner::run`] then watches the kind and what it owns, serves
//! `/metrics`, `/healthz` and `/readyz`, takes the Lease, calls `reconcile`
//! in a span per object, backs off per object on errors (with a Warning
//! Event and an error metric), and stops cleanly on SIGTERM. See
//! `examples/configmap_copy.rs` for a whole controller.
//!
//! # Inside a reconcile
//!
//! - [`homelab_api::conditions`]: set `Ready` / `Reconciling` / `Stalled` from
//!   an [`Outcome`]; `lastTransitionTime` moves only when a status changes.
//! - [`reconcile`]: leave an object being deleted alone, say a refused spec
//!   once ([`Context::refused`]), write the status only when it changed
//!   ([`Context::write_status`]).
//! - [`apply`]: [`FieldManager::apply`] for owned objects (server-side apply,
//!   forced), [`apply::owner_reference`] / [`apply::owned_metadata`] to own
//!   them, [`FieldManager::apply_status`] that writes only on change.
//! - [`events`]: `ctx.events.warning(&obj, "SecretNotFound", "Reconcile", note)`.
//!
//! # Modules
//!
//! One job each: [`operator`] (a binary's entry point), [`reconcile`] (the
//! steps every reconcile shares), [`runner`] (wiring), [`settings`] (environment),
//! [`leader`] (Lease election), [`health`] and [`server`] (probes and
//! metrics port), [`metrics`], [`backoff`], [`events`],
//! [`apply`], [`objects`] (per-object gauges), [`telemetry`] (logs), [`error`], [`device_pin`] (consuming a
//! UsbDevicePin).

/// Implements `Debug` as the type's name alone, for caches, recorders and the
/// like: their contents would flood a log line and tell its reader nothing.
#[macro_export]
macro_rules! debug_by_name {
    ($ty:ident) => {
        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($ty)).finish_non_exhaustive()
            }
        }
    };
}

pub mod apply;
pub mod backoff;
pub mod cache;
pub mod cached;
pub mod client;
pub mod device_pin;
pub mod error;
pub mod events;
pub mod failover;
pub mod health;
pub mod image;
pub mod kinds;
pub mod leader;
pub mod metrics;
pub mod objects;
pub mod operator;
pub mod reconcile;
pub mod runner;
pub mod server;
pub mod settings;
pub mod single_replica;
pub mod telemetry;
pub mod workload;

pub use apply::{FieldManager, Kept, StatusPatch, StatusWrite};
pub use error::Error;
pub use events::EventPublisher;
pub use homelab_api::conditions::Outcome;
pub use kube::runtime::controller::Action;
pub use operator::Operator;
pub use reconcile::{Problem, Refusal, STALE_RETRY, StatusWritten, being_deleted};
pub use runner::{Context, ReconcileError, Runner};
pub use settings::Settings;
