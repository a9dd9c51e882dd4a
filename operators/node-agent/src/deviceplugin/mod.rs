//! The kubelet device-plugin API (v1beta1): one plugin per pin, each on its own unix
//! socket in the kubelet's device-plugin directory, registered with the kubelet as
//! the extended resource `devices.homelab.home.arpa/<pin>`.
//!
//! [`service`] answers the kubelet (ListAndWatch, Allocate), [`socket`] serves and
//! dials unix sockets, [`registration`] registers a plugin, [`manager`] starts,
//! updates and stops the plugins as pins and devices come and go.

pub mod manager;
pub mod registration;
pub mod service;
pub mod socket;

/// Code generated from `third_party/proto/deviceplugin.proto`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod api {
    tonic::include_proto!("v1beta1");
}

/// The API version plugins register with.
pub const API_VERSION: &str = "v1beta1";
/// The kubelet's registration socket, inside the device-plugin directory.
pub const KUBELET_SOCKET: &str = "kubelet.sock";
/// Health of a usable device.
pub const HEALTHY: &str = "Healthy";
/// Health of a device the kubelet must not hand out.
pub const UNHEALTHY: &str = "Unhealthy";
