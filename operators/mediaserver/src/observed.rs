//! Dereference: everything a MediaServer's reconcile reads, taken from the
//! runner's caches once up front ([`crate::caches::Caches::observe`]) so that
//! validating, building and computing status are pure functions of the spec
//! and this.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::storage::v1::{CSIDriver, StorageClass};

/// What the cluster looked like when the reconcile started.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Every node, for placement.
    pub nodes: Vec<Node>,
    /// The claims the server mounts (referenced and owned) that exist, by name.
    pub claims: BTreeMap<String, PersistentVolumeClaim>,
    /// The volumes those claims are bound to, by name.
    pub volumes: BTreeMap<String, PersistentVolume>,
    /// Every StorageClass, to tell where an unbound claim's volume will live.
    pub storage_classes: Vec<StorageClass>,
    /// Every CSIDriver, to tell whether a volume's driver attaches it to one
    /// node at a time.
    pub drivers: Vec<CSIDriver>,
    /// The Deployment as it is now.
    pub deployment: Option<Deployment>,
    /// The Service as it is now.
    pub service: Option<Service>,
    /// The server's pods.
    pub pods: Vec<Pod>,
}
