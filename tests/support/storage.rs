//! Storage a user would bring: the kwok cluster has no provisioner, so a test
//! that needs a bound claim makes an NFS-backed volume (as a NAS would export)
//! bound in advance to the claim.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

use crate::{Error, TestNamespace};

/// Creates an NFS-backed ReadWriteOnce volume reserved for `claim` in the test
/// namespace, labelled with that namespace so leftovers are easy to find.
/// Returns the volume's name (volumes are cluster-wide: delete it afterwards).
pub async fn nfs_volume(ns: &TestNamespace, claim: &str) -> Result<String, Error> {
    let name = format!("{}-{claim}", ns.name());
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"homelab.home.arpa/test": ns.name()}},
        "spec": {
            "capacity": {"storage": "100Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "nfs": {"server": "nas.home.arpa", "path": format!("/volume1/{claim}")},
            "claimRef": {"namespace": ns.name(), "name": claim},
        }
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
    Ok(volume)
}

/// Deletes volumes made by [`nfs_volume`]; ones already gone are fine.
pub async fn delete_volumes(ns: &TestNamespace, names: &[String]) {
    let api = Api::<PersistentVolume>::all(ns.client().clone());
    for name in names {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
}
