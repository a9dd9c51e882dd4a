//! The data claim, when `data.volumeClaim` asks the operator for one.
//!
//! With `keepOnDelete` the claim gets no owner reference, so it outlives the
//! gateway: zigbee2mqtt's network key and coordinator backup are in it, and
//! losing them means pairing every device again.

use std::collections::BTreeMap;

use homelab_api::SensorGateway;
use homelab_kit::FieldManager;
use homelab_kit::apply::owned_metadata;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use kube::ResourceExt;

use super::names;
use crate::validate::Plan;

/// The claim `sg` asks the operator to create, if any.
///
/// # Errors
/// [`homelab_kit::Error::OwnerNotPersisted`].
pub fn claim(
    sg: &SensorGateway,
    plan: &Plan,
    manager: &FieldManager,
) -> Result<Option<PersistentVolumeClaim>, homelab_kit::Error> {
    let Some(spec) = sg
        .spec
        .data
        .volume_claim
        .as_ref()
        .filter(|_| !sg.spec.external)
    else {
        return Ok(None);
    };
    let name = sg.name_any();
    let claim = names::data_claim(&name);
    let mut metadata = owned_metadata(sg, &claim, manager)?;
    metadata.labels = Some(names::labels(&name, plan.preset.app, manager.name()));
    if spec.keep_on_delete {
        metadata.owner_references = None;
    }
    Ok(Some(PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![spec.access_mode().as_str().to_owned()]),
            storage_class_name: spec.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), spec.size.clone())])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }))
}
