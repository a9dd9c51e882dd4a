//! References from one object to another in the same namespace.
//!
//! Credentials are never written inline in a homelab object: every password, access key
//! or private key is a [`SecretKeyRef`], so the object itself can be committed to Git.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::formats::{DNS_SUBDOMAIN_RULE, SECRET_NAME_MESSAGE};

/// One key of a Secret in the same namespace as the object that names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message(SECRET_NAME_MESSAGE))]
    pub name: String,

    /// Key inside the Secret whose value is used.
    #[schemars(length(min = 1, max = 253))]
    // The keys Kubernetes lets a Secret have: these characters, and not `.`, `..` or
    // anything starting with `..`.
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$') && self != '.' && !self.startsWith('..')").message("must be a key of the Secret: letters, digits, '-', '_' and '.', such as password"))]
    pub key: String,
}

impl SecretKeyRef {
    /// A reference to `key` in the Secret `name`.
    pub fn new(name: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            key: key.into(),
        }
    }
}

/// A UsbDevicePin in the same namespace. The workload is placed on the node that holds
/// the pinned device and gets the device inside its container at the pin's
/// `containerPath`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsbDevicePinRef {
    /// Name of the UsbDevicePin, in the same namespace.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message("must be the name of a UsbDevicePin in the same namespace: lowercase letters, digits, '-' and '.', such as sonoff-zigbee"))]
    pub name: String,
}
