//! Volumes: where a workload keeps its state (config, database, coordinator backups)
//! and where a media server finds its media.
//!
//! Each volume names exactly one source. Where the data lives decides whether a workload
//! can fail over: a node-local `hostPath` pins it to that node; a claim or NFS share
//! can follow it.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::formats::{
    ABSOLUTE_PATH_RULE, CLAIM_NAME_MESSAGE, DNS_SUBDOMAIN_RULE, NODE_NAME_MESSAGE,
};

/// CEL rule refusing a change of storage kind on an existing object (put it on the
/// field that holds a [`StateVolume`]).
pub const STATE_KIND_IMMUTABLE_RULE: &str = "[has(self.existingClaim), has(self.volumeClaim), has(self.hostPath), has(self.nfs)] == [has(oldSelf.existingClaim), has(oldSelf.volumeClaim), has(oldSelf.hostPath), has(oldSelf.nfs)]";
/// Message for [`STATE_KIND_IMMUTABLE_RULE`].
pub const STATE_KIND_IMMUTABLE_MESSAGE: &str = "the kind of storage (existingClaim, volumeClaim, hostPath or nfs) cannot change after creation: the data lives there; create a new object and copy the data over";
/// CEL rule refusing a new StorageClass for a claim the operator already created.
pub const STATE_CLASS_IMMUTABLE_RULE: &str = "!has(self.volumeClaim) || !has(oldSelf.volumeClaim) || (has(self.volumeClaim.storageClassName) == has(oldSelf.volumeClaim.storageClassName) && (!has(self.volumeClaim.storageClassName) || self.volumeClaim.storageClassName == oldSelf.volumeClaim.storageClassName))";
/// Message for [`STATE_CLASS_IMMUTABLE_RULE`].
pub const STATE_CLASS_IMMUTABLE_MESSAGE: &str = "volumeClaim.storageClassName cannot change after creation: the claim already exists in its class; create a new object and copy the data over";
/// CEL rule refusing a different host path for an existing object.
pub const STATE_HOST_PATH_IMMUTABLE_RULE: &str =
    "!has(self.hostPath) || !has(oldSelf.hostPath) || self.hostPath == oldSelf.hostPath";
/// Message for [`STATE_HOST_PATH_IMMUTABLE_RULE`].
pub const STATE_HOST_PATH_IMMUTABLE_MESSAGE: &str = "hostPath cannot change after creation: the data lives on that node at that path; move it by hand and create a new object";

/// Storage for a workload's own state (its config and database). Set exactly one of
/// existingClaim, volumeClaim, hostPath or nfs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "[has(self.existingClaim), has(self.volumeClaim), has(self.hostPath), has(self.nfs)].filter(x, x).size() == 1"
).message("set exactly one of existingClaim, volumeClaim, hostPath or nfs"))]
pub struct StateVolume {
    /// A PersistentVolumeClaim you created, in the same namespace. The operator never
    /// deletes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message(CLAIM_NAME_MESSAGE))]
    pub existing_claim: Option<String>,

    /// A PersistentVolumeClaim the operator creates and owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim: Option<VolumeClaim>,

    /// A directory on one node. The workload can then only run on that node, and cannot
    /// fail over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolume>,

    /// An NFS export. Works, and can fail over, but SQLite databases on NFS corrupt
    /// sooner or later; the status warns about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<NfsVolume>,
}

impl StateVolume {
    /// State in a new claim of `size` from the default StorageClass.
    pub fn claim(size: &str) -> Self {
        Self {
            existing_claim: None,
            volume_claim: Some(VolumeClaim {
                size: Quantity(size.to_owned()),
                storage_class_name: None,
                access_mode: None,
                keep_on_delete: false,
            }),
            host_path: None,
            nfs: None,
        }
    }

    /// The node this volume ties its workload to, if it is node-local.
    pub fn pinned_node(&self) -> Option<&str> {
        self.host_path.as_ref().map(|h| h.node.as_str())
    }
}

/// A PersistentVolumeClaim the operator creates, owns, and (unless keepOnDelete) deletes
/// with the object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeClaim {
    /// Requested size, such as 10Gi. Used when the claim is created; to grow it later,
    /// resize the PersistentVolumeClaim itself.
    #[schemars(schema_with = "size_schema")]
    pub size: Quantity,

    /// StorageClass of the claim. The cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message("must be the name of a StorageClass as `kubectl get storageclass` shows it: lowercase letters, digits, '-' and '.', such as longhorn"))]
    pub storage_class_name: Option<String>,

    /// Access mode of the claim: ReadWriteOnce (when unset), ReadWriteOncePod or
    /// ReadWriteMany.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<AccessMode>,

    /// Keep the claim, and its data, when the object is deleted. When false or unset,
    /// the claim is deleted with the object.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_on_delete: bool,
}

// The fields of a one-of member (volumeClaim here, s3 in EtcdBackup) carry no
// API-server defaults: with server-side apply, a defaulted field belongs to no field
// manager, so it would survive when a GitOps tool removes the member, and the error a
// person then sees would be about a half-removed object instead of the real rule.

impl VolumeClaim {
    /// The access mode, ReadWriteOnce when unset.
    pub fn access_mode(&self) -> AccessMode {
        self.access_mode.unwrap_or_default()
    }
}

/// Access mode of a claim the operator creates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AccessMode {
    /// One node at a time.
    #[default]
    ReadWriteOnce,
    /// One pod at a time.
    ReadWriteOncePod,
    /// Many nodes at once.
    ReadWriteMany,
}

impl AccessMode {
    /// The value Kubernetes uses in `spec.accessModes`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ReadWriteOnce => "ReadWriteOnce",
            Self::ReadWriteOncePod => "ReadWriteOncePod",
            Self::ReadWriteMany => "ReadWriteMany",
        }
    }
}

/// A directory on one named node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostPathVolume {
    /// The node that has the directory.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message(NODE_NAME_MESSAGE))]
    pub node: String,

    /// Absolute path of the directory on that node.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new(ABSOLUTE_PATH_RULE).message("must be an absolute path without . or .. segments or control characters, such as /srv/media"))]
    pub path: String,
}

/// An NFS export.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NfsVolume {
    /// Host name or IP address of the NFS server, such as nas.home.arpa.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$')").message("must be a host name or IP address, such as nas.home.arpa or 192.168.1.10"))]
    pub server: String,

    /// Exported path on the server, such as /volume1/media.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new(ABSOLUTE_PATH_RULE).message("must be an absolute path without . or .. segments or control characters, such as /volume1/media"))]
    pub path: String,
}

/// The schema of a storage size: a Kubernetes quantity written as a string.
pub fn size_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": 32,
        "x-kubernetes-validations": [{
            "rule": "isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))",
            "message": "must be a size such as 500Mi or 10Gi",
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_helper_builds_one_source() {
        let volume = StateVolume::claim("1Gi");
        assert!(volume.volume_claim.is_some());
        assert_eq!(volume.pinned_node(), None);
        assert_eq!(
            volume.volume_claim.as_ref().map(VolumeClaim::access_mode),
            Some(AccessMode::ReadWriteOnce)
        );
        let json = serde_json::to_value(&volume).unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "volumeClaim": { "size": "1Gi" } })
        );
    }
}
