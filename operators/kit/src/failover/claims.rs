//! Reads what [`super::storage::classify`] needs about one claim, asking only
//! for what the claim leaves open: its volume when bound, the StorageClasses
//! when not, the CSIDrivers only for a CSI volume or a class. VolumeAttachments
//! are read apart, only during a node loss that needs them.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::{CSIDriver, StorageClass, VolumeAttachment};
use kube::api::ListParams;
use kube::{Api, Client};

use super::storage::{ClaimFacts, Storage, classify};
use crate::Error;

/// The storage of claim `name` in `ns`; `None` when the claim does not exist.
///
/// # Errors
/// A read the API server refused, naming it.
pub async fn read(client: &Client, ns: &str, name: &str) -> Result<Option<Storage>, Error> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let Some(claim) = claims
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("get PersistentVolumeClaim {ns}/{name}"), e))?
    else {
        return Ok(None);
    };
    let bound = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|v| !v.is_empty());
    let volume = match bound {
        Some(pv) => Api::<PersistentVolume>::all(client.clone())
            .get_opt(pv)
            .await
            .map_err(|e| Error::kube(format!("get PersistentVolume {pv}"), e))?,
        None => None,
    };
    let classes = if volume.is_none() {
        list::<StorageClass>(client, "StorageClasses").await?
    } else {
        Vec::new()
    };
    let csi = volume
        .as_ref()
        .and_then(|v| v.spec.as_ref())
        .is_some_and(|s| s.csi.is_some());
    let drivers = if csi || volume.is_none() {
        list::<CSIDriver>(client, "CSIDrivers").await?
    } else {
        Vec::new()
    };
    Ok(Some(classify(&ClaimFacts {
        claim: &claim,
        volume: volume.as_ref(),
        classes: &classes,
        drivers: &drivers,
    })))
}

/// Every StorageClass and CSIDriver, for a controller that judges several
/// claims at once.
///
/// # Errors
/// A list the API server refused.
pub async fn classes_and_drivers(
    client: &Client,
) -> Result<(Vec<StorageClass>, Vec<CSIDriver>), Error> {
    futures::try_join!(
        list::<StorageClass>(client, "StorageClasses"),
        list::<CSIDriver>(client, "CSIDrivers"),
    )
}

/// Every VolumeAttachment (a home has a handful).
///
/// # Errors
/// A list the API server refused.
pub async fn attachments(client: &Client) -> Result<Vec<VolumeAttachment>, Error> {
    list::<VolumeAttachment>(client, "VolumeAttachments").await
}

async fn list<K>(client: &Client, what: &str) -> Result<Vec<K>, Error>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    Api::<K>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| Error::kube(format!("list {what}"), e))
}
