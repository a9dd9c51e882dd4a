//! The agent's one error type.

use std::path::PathBuf;

/// What can stop the agent or fail one of its steps.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting read from the environment is missing or does not parse.
    #[error("invalid setting {name}={value:?}: {expected}")]
    InvalidSetting {
        /// The environment variable.
        name: &'static str,
        /// The value found.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },

    /// A request to the Kubernetes API failed.
    #[error("Kubernetes API request failed: {action}")]
    Kube {
        /// What the agent was doing.
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },

    /// A file or socket could not be used.
    #[error("{action} {}", path.display())]
    Io {
        /// What the agent was doing, such as "listen on".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The kubelet could not be reached over its registration socket.
    #[error("cannot connect to the kubelet at {}", path.display())]
    Connect {
        /// The kubelet's socket.
        path: PathBuf,
        /// The transport's error.
        #[source]
        source: tonic::transport::Error,
    },

    /// The kubelet refused to register a device plugin.
    #[error("the kubelet refused to register {resource}")]
    Register {
        /// The extended resource.
        resource: String,
        /// The kubelet's answer.
        #[source]
        source: tonic::Status,
    },

    /// The health and metrics port failed.
    #[error("the health and metrics server failed")]
    Server(#[source] homelab_kit::Error),

    /// The watch of UsbDevicePins ended without a shutdown being asked for.
    #[error("the UsbDevicePin watch stopped")]
    WatchStopped,
}

impl Error {
    /// Wraps a client error with what the agent was doing.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            source,
        }
    }
}
