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

    /// The API server refused an object the controller built from a spec as
    /// invalid (HTTP 400 or 422). Sending the same object again cannot work:
    /// the spec has to change. See [`Refusal`].
    #[error("{kind} {object} as built from the spec is invalid")]
    Refused {
        /// The refused object's kind.
        kind: String,
        /// `namespace/name` of the refused object.
        object: String,
        /// The client's error, an API status naming the field.
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

    /// No usable connection to the API server could be configured.
    #[error("could not connect to the API server: {0}")]
    Connect(String),
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
            Self::Kube { source, .. } | Self::Refused { source, .. } => kube_error_label(source),
            Self::Serialize { .. } => "serialize",
            Self::MissingName { .. } => "missing_name",
            Self::OwnerNotPersisted { .. } => "owner_not_persisted",
            Self::InvalidSetting { .. } => "invalid_setting",
            Self::Bind { .. } | Self::Serve(_) => "http_server",
            Self::Signal(_) => "signal",
            Self::Connect(_) => "connect",
            Self::Telemetry(_) => "telemetry",
            Self::ControllerStopped | Self::ForcedShutdown => "shutdown",
        }
    }
}

/// Whether the API server refused a request as invalid: the body is wrong,
/// and sending it again cannot succeed.
///
/// Besides 400 and 422, that is a server-side apply the API server could not
/// turn into its type (a memory limit of `lots`): it answers 500 "failed to
/// convert new object", though nothing but the body is at fault.
#[must_use]
pub fn is_invalid(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => match status.code {
            400 | 422 => true,
            500 => status.message.starts_with("failed to convert new object"),
            _ => false,
        },
        _ => false,
    }
}

/// An object a controller built from a spec and the API server refused as
/// invalid, found in a reconcile's error chain by [`Refusal::find`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The refused object's kind (`Deployment`).
    pub kind: String,
    /// `namespace/name` of the refused object.
    pub object: String,
    /// The API server's own words, which name the refused field.
    pub message: String,
}

impl Refusal {
    /// The first [`Error::Refused`] in `err`'s chain of causes.
    #[must_use]
    pub fn find(err: &(dyn std::error::Error + 'static)) -> Option<Self> {
        let mut next = Some(err);
        while let Some(e) = next {
            if let Some(Error::Refused {
                kind,
                object,
                source,
            }) = e.downcast_ref::<Error>()
            {
                let message = match source {
                    kube::Error::Api(status) => status.message.clone(),
                    other => other.to_string(),
                };
                return Some(Self {
                    kind: kind.clone(),
                    object: object.clone(),
                    message,
                });
            }
            next = e.source();
        }
        None
    }

    /// What to tell the person who wrote the spec, in a condition and an Event.
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "the API server refused the {} {} built from this spec: {}; change the spec to fix it",
            self.kind, self.object, self.message
        )
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
    fn a_refused_child_is_found_through_the_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("could not apply what the MediaServer owns")]
        struct Outer(#[source] Error);

        let status = kube::core::Status::failure(
            "Deployment.apps \"x\" is invalid: spec.template.spec.containers[0].env[0].name: Required value",
            "Invalid",
        )
        .with_code(422);
        let source = kube::Error::Api(Box::new(status));
        assert!(is_invalid(&source));
        let err = Outer(Error::Refused {
            kind: "Deployment".into(),
            object: "home/x".into(),
            source,
        });
        let refusal = Refusal::find(&err).unwrap();
        assert_eq!(refusal.kind, "Deployment");
        assert!(
            refusal
                .describe()
                .contains("the Deployment home/x built from this spec: Deployment.apps \"x\" is invalid: spec.template.spec.containers[0].env[0].name"),
            "{}",
            refusal.describe()
        );
        assert_eq!(err.0.metric_label(), "kube_invalid");
        assert!(report(&err).contains("as built from the spec is invalid"));

        // What server-side apply says of a body it cannot even type.
        let untyped = kube::core::Status::failure(
            "failed to convert new object (home/x; apps/v1, Kind=Deployment) to proper version: unable to convert unstructured object to apps/v1, Kind=Deployment: quantities must match the regular expression",
            "",
        )
        .with_code(500);
        assert!(is_invalid(&kube::Error::Api(Box::new(untyped))));
        let busy = kube::core::Status::failure("etcdserver: request timed out", "").with_code(500);
        assert!(!is_invalid(&kube::Error::Api(Box::new(busy))));

        // A refusal of anything else, or another failure, is not a refused child.
        let conflict = kube::Error::Api(Box::new(
            kube::core::Status::failure("the object changed", "Conflict").with_code(409),
        ));
        assert!(!is_invalid(&conflict));
        assert_eq!(Refusal::find(&Outer(Error::kube("apply", conflict))), None);
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
