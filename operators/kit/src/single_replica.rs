//! The Deployment of a workload that must never run twice: one replica,
//! replaced with `Recreate`. A RollingUpdate starts the new pod before it stops
//! the old one, and two copies of a server with a database, or of a gateway on
//! one radio, corrupt what they share (or wait forever for a ReadWriteOnce
//! volume the other pod holds on another node).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::{Resource, ResourceExt};

use crate::apply::owned_metadata;
use crate::{Error, FieldManager};

/// Old ReplicaSets kept for a rollback.
const REVISION_HISTORY: i32 = 3;

/// The single-replica Deployment of `owner`, named as it is and owned by it:
/// `labels` on the Deployment and its pod, `selector` (a subset of `labels`)
/// choosing the pod, `pod` as its spec.
///
/// # Errors
/// [`Error::OwnerNotPersisted`] when `owner` was never stored.
pub fn deployment<O>(
    owner: &O,
    manager: &FieldManager,
    labels: BTreeMap<String, String>,
    selector: BTreeMap<String, String>,
    pod: PodSpec,
) -> Result<Deployment, Error>
where
    O: Resource<DynamicType = ()>,
{
    let mut metadata = owned_metadata(owner, owner.name_any(), manager)?;
    metadata.labels = Some(labels.clone());
    Ok(Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            revision_history_limit: Some(REVISION_HISTORY),
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Container};
    use serde_json::json;

    fn owner() -> ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": "jellyfin", "namespace": "home", "uid": "u-1"},
        }))
        .unwrap()
    }

    #[test]
    fn one_recreated_replica_owned_and_selected_by_its_labels() {
        let labels: BTreeMap<String, String> = [("app", "jellyfin"), ("tier", "media")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        let selector: BTreeMap<String, String> = [("app".to_owned(), "jellyfin".to_owned())].into();
        let pod = PodSpec {
            containers: vec![Container {
                name: "server".to_owned(),
                ..Container::default()
            }],
            ..PodSpec::default()
        };
        let d = deployment(
            &owner(),
            &FieldManager::new("test-controller"),
            labels,
            selector,
            pod,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {
                    "name": "jellyfin", "namespace": "home",
                    "labels": {"app": "jellyfin", "tier": "media"},
                    "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "jellyfin",
                                         "uid": "u-1", "controller": true, "blockOwnerDeletion": true}],
                },
                "spec": {
                    "replicas": 1,
                    "revisionHistoryLimit": 3,
                    "strategy": {"type": "Recreate"},
                    "selector": {"matchLabels": {"app": "jellyfin"}},
                    "template": {
                        "metadata": {"labels": {"app": "jellyfin", "tier": "media"}},
                        "spec": {"containers": [{"name": "server"}]},
                    },
                },
            })
        );
    }

    #[test]
    fn an_owner_never_stored_has_no_deployment() {
        let err = deployment(
            &ConfigMap::default(),
            &FieldManager::new("test-controller"),
            BTreeMap::new(),
            BTreeMap::new(),
            PodSpec::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::OwnerNotPersisted { .. }));
    }
}
