//! The controller's error type: what a reconcile could not do. Bad input is a
//! `Stalled` status, not an error.

use homelab_kit::ReconcileError;

/// What went wrong in a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An EtcdBackup without a namespace (it is a namespaced kind).
    #[error("EtcdBackup has no namespace")]
    NoNamespace,
    /// Reading the EtcdBackup, its Secrets or its Pods failed.
    #[error("could not read what the EtcdBackup depends on")]
    Read(#[source] homelab_kit::Error),
    /// Building or applying the CronJob failed.
    #[error("could not apply the backup CronJob")]
    Apply(#[source] homelab_kit::Error),
    /// Writing the status failed.
    #[error("could not write the EtcdBackup status")]
    Status(#[source] homelab_kit::Error),
}

impl ReconcileError for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::NoNamespace => "no_namespace",
            Error::Read(_) => "read",
            Error::Apply(_) => "apply",
            Error::Status(_) => "status",
        }
    }
}
