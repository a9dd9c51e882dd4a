//! The kit's one error type.
//!
//! Messages say what the kit was doing; the cause is only reachable through
//! [`std::error::Error::source`], never repeated in the message. Print a whole
//! chain with [`report`].

use std::net::SocketAddr;

/// What can go wrong inside the kit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the Kubernetes API failed.
    #[error("Kubernetes API request failed: {action}")]
    Kube {
        /// What the kit was doing, e.g. "apply Deployment default/jellyfin".
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },

    /// An object could not be turned into JSON.
    #[error("could not serialize {what} to JSON")]
    Serialize {
        /// What was being serialized.
        what: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },

    /// An object to apply has no `metadata.name`.
    #[error("{kind} to apply has no metadata.name")]
    MissingName {
        /// The object's kind.
        kind: String,
    },

    /// An owner has no name or uid yet (it was never read from the API server).
    #[error("{kind} cannot own objects before it has a name and uid")]
    OwnerNotPersisted {
        /// The owner's kind.
        kind: String,
    },

    /// A setting read from the environment is not valid.
    #[error("invalid setting {name}={value:?}: {expected}")]
    InvalidSetting {
        /// The environment variable.
        name: &'static str,
        /// The value found.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },

    /// The HTTP port could not be opened.
    #[error("could not listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The HTTP server stopped with an error.
    #[error("the health and metrics server failed")]
    Serve(#[source] std::io::Error),

    /// The signal handlers could not be installed.
    #[error("could not listen for SIGTERM/SIGINT")]
    Signal(#[source] std::io::Error),

    /// The log subscriber could not be installed.
    #[error("could not install the log subscriber")]
    Telemetry(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// The controller's streams ended although no shutdown was asked for.
    #[error("the controller stopped without being asked to")]
    ControllerStopped,

    /// A second SIGTERM/SIGINT arrived while reconciles were draining.
    #[error("shutdown forced by a second signal before reconciles finished")]
    ForcedShutdown,
}

impl Error {
    /// Wraps a client error with what the kit was doing.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            source,
        }
    }

    /// A fixed, bounded label for metrics (one per variant).
    #[must_use]
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube { source, .. } => kube_error_label(source),
            Self::Serialize { .. } => "serialize",
            Self::MissingName { .. } => "missing_name",
            Self::OwnerNotPersisted { .. } => "owner_not_persisted",
            Self::InvalidSetting { .. } => "invalid_setting",
            Self::Bind { .. } | Self::Serve(_) => "http_server",
            Self::Signal(_) => "signal",
            Self::Telemetry(_) => "telemetry",
            Self::ControllerStopped | Self::ForcedShutdown => "shutdown",
        }
    }
}

/// A bounded label for a client error: the HTTP status class of an API
/// refusal, or the transport failure.
#[must_use]
pub fn kube_error_label(err: &kube::Error) -> &'static str {
    // Keep KUBE_ERROR_LABELS in step.
    match err {
        kube::Error::Api(status) => match status.code {
            404 => "kube_not_found",
            409 => "kube_conflict",
            401 | 403 => "kube_forbidden",
            422 | 400 => "kube_invalid",
            429 => "kube_throttled",
            500..=599 => "kube_server_error",
            _ => "kube_api",
        },
        kube::Error::SerdeError(_) => "kube_decode",
        _ => "kube_transport",
    }
}

/// Every label [`kube_error_label`] gives: the reconcile error counter starts
/// with these at 0, so dashboards and alerts see the series before the first
/// failure.
pub const KUBE_ERROR_LABELS: &[&str] = &[
    "kube_not_found",
    "kube_conflict",
    "kube_forbidden",
    "kube_invalid",
    "kube_throttled",
    "kube_server_error",
    "kube_api",
    "kube_decode",
    "kube_transport",
];

/// The message of an error followed by its causes, joined by `": "`.
///
/// Use it wherever an error is shown to a person (logs, Events, conditions),
/// since [`Error`]'s own message leaves its cause out. A refusal by the API
/// server is shortened to its code, reason and message.
#[must_use]
pub fn report(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let (text, last) = brief(e);
        // Some foreign errors already print their cause; don't print it twice.
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        if last {
            break;
        }
        next = e.source();
    }
    out
}

/// The text of one link of a chain, and whether to stop there. kube's own
/// errors print their cause (and its `Debug` form); say it once, briefly.
fn brief(e: &(dyn std::error::Error + 'static)) -> (String, bool) {
    use kube::runtime::watcher::Error as W;
    let refused = |s: &kube::core::Status| {
        format!(
            "API server refused ({} {}): {}",
            s.code, s.reason, s.message
        )
    };
    if let Some(kube::Error::Api(status)) = e.downcast_ref::<kube::Error>() {
        return (refused(status), true);
    }
    match e.downcast_ref::<W>() {
        Some(W::InitialListFailed(_)) => ("list failed".to_owned(), false),
        Some(W::WatchStartFailed(_)) => ("watch could not start".to_owned(), false),
        Some(W::WatchFailed(_)) => ("watch failed".to_owned(), false),
        Some(W::WatchError(status)) => (format!("watch error: {}", refused(status)), true),
        _ => (e.to_string(), false),
    }
}

/// A binary's exit code for how its `main` ended. A failure is said once, as the
/// whole error chain on one line (what `kubectl logs` of a crashed pod shows),
/// instead of the `Debug` dump a `main` returning `Result` prints.
pub fn exit_code<E>(result: Result<(), E>) -> std::process::ExitCode
where
    E: Into<Box<dyn std::error::Error>>,
{
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            let err: Box<dyn std::error::Error> = err.into();
            let message = report(err.as_ref());
            if tracing::dispatcher::has_been_set() {
                tracing::error!(error = %message, "stopped");
            } else {
                eprintln!("error: {message}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_prints_each_cause_once() {
        let io = std::io::Error::other("connection refused");
        let err = Error::Serve(io);
        assert_eq!(
            report(&err),
            "the health and metrics server failed: connection refused"
        );
        // The message alone does not contain the cause.
        assert!(!err.to_string().contains("connection refused"));
    }

    #[test]
    fn api_refusals_are_reported_briefly() {
        let status =
            kube::core::Status::failure("ConfigMap \"x\" is invalid", "Invalid").with_code(422);
        let err = Error::kube("apply ConfigMap home/x", kube::Error::Api(Box::new(status)));
        assert_eq!(
            report(&err),
            "Kubernetes API request failed: apply ConfigMap home/x: \
             API server refused (422 Invalid): ConfigMap \"x\" is invalid"
        );
    }

    #[test]
    fn watch_errors_are_reported_briefly() {
        let status =
            kube::core::Status::failure("mediaservers is forbidden", "Forbidden").with_code(403);
        let err =
            kube::runtime::watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status)));
        assert_eq!(
            report(&err),
            "list failed: API server refused (403 Forbidden): mediaservers is forbidden"
        );
    }

    #[test]
    fn api_errors_get_bounded_labels() {
        let status = |code| {
            kube::Error::Api(Box::new(
                kube::core::Status::failure("some text that must not become a label", "Reason")
                    .with_code(code),
            ))
        };
        assert_eq!(kube_error_label(&status(409)), "kube_conflict");
        assert_eq!(kube_error_label(&status(403)), "kube_forbidden");
        assert_eq!(kube_error_label(&status(503)), "kube_server_error");
        assert_eq!(
            Error::kube("apply", status(404)).metric_label(),
            "kube_not_found"
        );
    }
}
