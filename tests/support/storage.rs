//! Storage a user would bring: the kwok cluster has no provisioner, so a test
//! that needs a bound claim makes a volume bound in advance to the claim: an
//! NFS share (as a NAS would export; two nodes can mount it at once) or an
//! iSCSI disk (attached to one node at a time). A StorageClass like k3s'
//! local-path shows what an unbound claim's class says.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use crate::namespace::TEST_LABEL;
use crate::{Error, TestNamespace};

/// Creates an NFS-backed ReadWriteOnce volume reserved for `claim` in the test
/// namespace, labelled with that namespace, whose end deletes it too.
/// Returns the volume's name.
pub async fn nfs_volume(ns: &TestNamespace, claim: &str) -> Result<String, Error> {
    let nfs = json!({"nfs": {"server": "nas.home.arpa", "path": format!("/volume1/{claim}")}});
    volume(ns, claim, nfs).await
}

/// Creates an iSCSI ReadWriteOnce volume (a disk Kubernetes attaches to one
/// node at a time) reserved for `claim`; as [`nfs_volume`] otherwise.
pub async fn block_volume(ns: &TestNamespace, claim: &str) -> Result<String, Error> {
    let iscsi = json!({"iscsi": {
        "targetPortal": "nas.home.arpa:3260",
        "iqn": format!("iqn.2024-01.arpa.home.nas:{claim}"),
        "lun": 0,
        "fsType": "ext4",
    }});
    volume(ns, claim, iscsi).await
}

/// A claim the user made, bound to a fresh iSCSI volume; returns the volume's
/// name.
pub async fn block_claim(ns: &TestNamespace, claim: &str) -> Result<String, Error> {
    let volume = block_volume(ns, claim).await?;
    user_claim(ns, claim).await?;
    Ok(volume)
}

/// A StorageClass provisioned like k3s' default `local-path` (named after the
/// test's namespace, and not the default: other tests' claims must not land in
/// it). Nothing provisions it here: its claims stay unbound. Returns its name.
pub async fn local_path_class(ns: &TestNamespace) -> Result<String, Error> {
    let name = format!("{}-local-path", ns.name());
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {TEST_LABEL: ns.name()}},
        "provisioner": "rancher.io/local-path",
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
    }))
    .map_err(Error::Json)?;
    Api::<StorageClass>::all(ns.client().clone())
        .create(&PostParams::default(), &class)
        .await
        .map_err(Error::api(format!("creating StorageClass {name}")))?;
    Ok(name)
}

async fn volume(ns: &TestNamespace, claim: &str, source: Value) -> Result<String, Error> {
    let name = format!("{}-{claim}", ns.name());
    let mut spec = json!({
        "capacity": {"storage": "100Gi"},
        "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": "",
        "claimRef": {"namespace": ns.name(), "name": claim},
    });
    if let (Some(spec), Some(source)) = (spec.as_object_mut(), source.as_object()) {
        spec.extend(source.clone());
    }
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {TEST_LABEL: ns.name()}},
        "spec": spec,
    }))
    .map_err(Error::Json)?;
    Api::<PersistentVolume>::all(ns.client().clone())
        .create(&PostParams::default(), &pv)
        .await
        .map_err(Error::api(format!("creating volume {name}")))?;
    Ok(name)
}

/// A claim the user made, bound to a fresh NFS volume; returns the volume's name.
pub async fn nfs_claim(ns: &TestNamespace, claim: &str) -> Result<String, Error> {
    let volume = nfs_volume(ns, claim).await?;
    user_claim(ns, claim).await?;
    Ok(volume)
}

/// A ReadWriteOnce claim without a class, as a user writes one for a volume
/// made in advance.
async fn user_claim(ns: &TestNamespace, claim: &str) -> Result<(), Error> {
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": claim},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "",
            "resources": {"requests": {"storage": "10Gi"}},
        }
    }))
    .map_err(Error::Json)?;
    ns.api::<PersistentVolumeClaim>()
        .create(&PostParams::default(), &pvc)
        .await
        .map_err(Error::api(format!("creating claim {claim}")))?;
    Ok(())
}
