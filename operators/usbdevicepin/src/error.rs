//! The controller's one error type, with a fixed metric label per variant.

use homelab_kit::ReconcileError;

/// What can fail in a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A UsbDevicePin was read without a namespace.
    #[error("UsbDevicePin has no namespace")]
    NoNamespace,

    /// A request to the Kubernetes API failed.
    #[error("Kubernetes API request failed: {action}")]
    Kube {
        /// What the controller was doing.
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },

    /// Writing the status failed.
    #[error("could not write the status")]
    Status(#[source] homelab_kit::Error),

    /// Marking a lost node, or taking the mark off a node that is back, failed.
    #[error("could not mark or unmark a lost node")]
    Fence(#[source] homelab_kit::Error),

    /// Adding or removing the finalizer failed.
    #[error("could not manage the finalizer")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// Wraps a client error with what the controller was doing.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            source,
        }
    }
}

impl ReconcileError for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Self::NoNamespace => "no_namespace",
            Self::Kube { source, .. } => homelab_kit::error::kube_error_label(source),
            Self::Status(e) | Self::Fence(e) => e.metric_label(),
            Self::Finalizer(_) => "finalizer",
        }
    }
}
