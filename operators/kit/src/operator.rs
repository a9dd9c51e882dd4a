//! One entry point for every controller: a binary's `main` is
//! `homelab_kit::operator::main::<Controller>().await`, and a test starts any
//! controller the same way through [`Operator::run_until`].

use std::future::Future;
use std::process::ExitCode;

use kube::Client;

use crate::error::{Error, exit_code};
use crate::settings::Settings;

/// A homelab controller: built from the kit's [`Settings`] (and whatever
/// settings of its own the environment holds), then run until told to stop.
pub trait Operator: Sized {
    /// Its name: field manager, Event reporter, Lease name and metric label.
    const NAME: &'static str;

    /// Wires the controller's watches and state; its own settings, if any,
    /// come from the environment.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for a setting of its own that is malformed.
    fn from_env(client: Client, settings: Settings) -> Result<Self, Error>;

    /// Runs until SIGTERM or SIGINT (a second one forces the stop).
    fn run(self) -> impl Future<Output = Result<(), Error>> + Send;

    /// Runs until `shutdown` completes (to run a controller inside a test).
    fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = Result<(), Error>> + Send;
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
