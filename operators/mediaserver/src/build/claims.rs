//! The claims the operator creates for config and cache.
//!
//! A claim the user marked `keepOnDelete` gets no owner reference (and the
//! [`names::KEEP_ANNOTATION`]), so the garbage collector leaves it when the
//! MediaServer goes; a MediaServer created again under the same name picks
//! the claim, and its data, back up.

use std::collections::BTreeMap;

use homelab_api::MediaServer;
use homelab_api::storage::VolumeClaim;
use homelab_kit::FieldManager;
use homelab_kit::apply::owned_metadata;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use super::names;
use crate::observed::Observed;
use crate::validate::Plan;

/// The config and cache claims `ms` asks the operator to create.
///
/// # Errors
/// [`homelab_kit::Error::OwnerNotPersisted`].
pub fn claims(
    ms: &MediaServer,
    plan: &Plan,
    observed: &Observed,
    manager: &FieldManager,
) -> Result<Vec<PersistentVolumeClaim>, homelab_kit::Error> {
    let name = ms.name_any();
    let wanted = [
        (
            names::config_claim(&name),
            ms.spec.config.volume_claim.as_ref(),
        ),
        (names::cache_claim(&name), ms.spec.cache.as_ref()),
    ];
    wanted
        .into_iter()
        .filter_map(|(claim, spec)| spec.map(|spec| (claim, spec)))
        .map(|(claim, spec)| {
            let current = observed.claims.get(&claim);
            build(ms, plan, &claim, spec, current, manager)
        })
        .collect()
}

fn build(
    ms: &MediaServer,
    plan: &Plan,
    claim: &str,
    spec: &VolumeClaim,
    current: Option<&PersistentVolumeClaim>,
    manager: &FieldManager,
) -> Result<PersistentVolumeClaim, homelab_kit::Error> {
    let mut metadata = owned_metadata(ms, claim, manager)?;
    metadata.labels = Some(names::labels(
        &ms.name_any(),
        plan.preset.app,
        manager.name(),
    ));
    if spec.keep_on_delete {
        metadata.owner_references = None;
        metadata.annotations =
            Some([(names::KEEP_ANNOTATION.to_owned(), "true".to_owned())].into());
    }
    // The size is only the size to create with: a claim someone grew keeps
    // its size, and shrinking one is refused by Kubernetes anyway.
    let size = current
        .and_then(|c| c.spec.as_ref())
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .unwrap_or_else(|| spec.size.clone());
    Ok(PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![spec.access_mode().as_str().to_owned()]),
            storage_class_name: spec.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::<String, Quantity>::from([(
                    "storage".to_owned(),
                    size,
                )])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{homelab, media_server};
    use crate::validate::validate;
    use serde_json::json;

    fn build_all(observed: &Observed) -> Vec<PersistentVolumeClaim> {
        let ms = media_server(json!({
            "preset": "Jellyfin",
            "config": {"volumeClaim": {"size": "10Gi", "keepOnDelete": true, "storageClassName": "longhorn"}},
            "cache": {"size": "20Gi"},
        }));
        let plan = validate(&ms, observed, &crate::fixtures::allowed()).unwrap();
        claims(
            &ms,
            &plan,
            observed,
            &FieldManager::new("mediaserver-controller"),
        )
        .unwrap()
    }

    #[test]
    fn kept_claim_has_no_owner_and_the_cache_is_owned() {
        let observed = Observed {
            nodes: homelab(),
            ..Observed::default()
        };
        let built = build_all(&observed);
        assert_eq!(built.len(), 2);
        let (config, cache) = (&built[0], &built[1]);
        assert_eq!(config.name_any(), "jellyfin-config");
        assert!(config.metadata.owner_references.is_none());
        assert_eq!(config.annotations()[names::KEEP_ANNOTATION], "true");
        let spec = config.spec.as_ref().unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("longhorn"));
        assert_eq!(
            spec.access_modes.as_deref(),
            Some(&["ReadWriteOnce".to_owned()][..])
        );
        assert_eq!(cache.name_any(), "jellyfin-cache");
        assert_eq!(
            cache.metadata.owner_references.as_ref().unwrap()[0].uid,
            "uid-1"
        );
    }

    #[test]
    fn a_grown_claim_keeps_its_size() {
        let mut observed = Observed {
            nodes: homelab(),
            ..Observed::default()
        };
        let mut grown = crate::fixtures::claim("jellyfin-config", "ReadWriteOnce");
        if let Some(spec) = grown.spec.as_mut() {
            spec.resources = Some(VolumeResourceRequirements {
                requests: Some([("storage".to_owned(), Quantity("50Gi".into()))].into()),
                limits: None,
            });
        }
        observed.claims.insert("jellyfin-config".into(), grown);
        let built = build_all(&observed);
        let requests = built[0]
            .spec
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap();
        assert_eq!(requests["storage"], Quantity("50Gi".into()));
    }
}
