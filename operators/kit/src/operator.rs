//! One entry point for every controller: a binary's `main` is
//! `homelab_kit::operator::main::<Controller>().await`, and a test starts any
//! controller the same way through [`Operator::run_until`].

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use kube::Client;
use kube::runtime::controller::Action;

use crate::error::{Error, exit_code};
use crate::kinds::Reconciled;
use crate::runner::{Context, ReconcileError, Runner};
use crate::settings::Settings;

/// A homelab controller: its watches wired into a [`Runner`], the state every
/// reconcile shares, and the reconcile; run until told to stop.
pub trait Operator: Sized + Send + 'static {
    /// The kind it reconciles.
    type Kind: Reconciled;
    /// What every reconcile shares.
    type State: Send + Sync + 'static;
    /// What a reconcile fails with.
    type Error: ReconcileError;

    /// Its name: field manager, Event reporter, Lease name and metric label.
    const NAME: &'static str;

    /// Wires the controller; its own settings, if any, come from the
    /// environment.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for a setting of its own that is malformed.
    fn from_env(client: Client, settings: Settings) -> Result<Self, Error>;

    /// The runner with its watches, and the state.
    fn into_parts(self) -> (Runner<Self::Kind>, Self::State);

    /// Brings one object in line with its spec.
    fn reconcile(
        obj: Arc<Self::Kind>,
        ctx: Arc<Context<Self::State>>,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send + 'static;

    /// Runs until SIGTERM or SIGINT (a second one forces the stop).
    fn run(self) -> impl Future<Output = Result<(), Error>> + Send {
        async move {
            let (runner, state) = self.into_parts();
            runner.run(state, Self::reconcile).await
        }
    }

    /// Runs until `shutdown` completes (to run a controller inside a test).
    fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        async move {
            let (runner, state) = self.into_parts();
            runner.run_until(state, Self::reconcile, shutdown).await
        }
    }
}

/// Settings from the environment, a client, then `C` until SIGTERM; logging is
/// the caller's (a binary with subcommands sets it up its own way).
///
/// # Errors
/// A malformed setting, an API server that cannot be reached, or the
/// controller stopping on an error.
pub async fn serve<C: Operator>() -> Result<(), Error> {
    let settings = Settings::from_env(C::NAME)?;
    let client = crate::client::connect(&settings).await?;
    C::from_env(client, settings)?.run().await
}

/// Logs, then [`serve`], as a process: the exit code, and the error said once.
pub async fn main<C: Operator>() -> ExitCode {
    let served = match crate::telemetry::init() {
        Ok(()) => serve::<C>().await,
        Err(e) => Err(e),
    };
    exit_code(served)
}
