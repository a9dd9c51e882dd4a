//! The controller's one error type: what a reconcile could not do. Bad input
//! is not an error (it is a `Stalled` status); these are the API server
//! refusing or failing, which the runner retries with backoff.

use homelab_kit::ReconcileError;

/// What went wrong in a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SensorGateway was read without a namespace.
    #[error("SensorGateway has no namespace")]
    NoNamespace,
    /// Reading the gateway or what it references failed.
    #[error("could not read what the SensorGateway depends on")]
    Read(#[source] homelab_kit::Error),
    /// Building or applying an owned object failed.
    #[error("could not apply what the SensorGateway owns")]
    Apply(#[source] homelab_kit::Error),
    /// Restarting the gateway's pod failed.
    #[error("could not restart the gateway's pod")]
    Restart(#[source] homelab_kit::Error),
    /// Marking a lost node or force-deleting its pod failed.
    #[error("could not fail the gateway over")]
    Failover(#[source] homelab_kit::Error),
    /// Writing the status failed.
    #[error("could not write the SensorGateway's status")]
    Status(#[source] homelab_kit::Error),
}

impl ReconcileError for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Self::NoNamespace => "no_namespace",
            Self::Read(e)
            | Self::Apply(e)
            | Self::Restart(e)
            | Self::Failover(e)
            | Self::Status(e) => e.metric_label(),
        }
    }

    fn event_reason(&self) -> &'static str {
        match self {
            Self::NoNamespace => "InvalidObject",
            Self::Read(_) => "ReadFailed",
            Self::Apply(_) => "ApplyFailed",
            Self::Restart(_) => "RestartFailed",
            Self::Failover(_) => "FailoverFailed",
            Self::Status(_) => "StatusWriteFailed",
        }
    }
}
