//! Whether the server could move if its node died, and why (not). Pure.
//!
//! It cannot when its config or a library lives on one node (a hostPath, a
//! claim bound to a local volume, a StorageClass whose volumes stay on one
//! node), when only one node can run it, or when the policy says not to act.

use homelab_api::MediaServer;
use homelab_api::conditions::reasons;
use homelab_api::failover::FailoverMode;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;

use crate::build::names;
use crate::observed::Observed;

/// Provisioners whose volumes live on the node that created them.
const NODE_LOCAL_PROVISIONERS: &[&str] = &[
    "rancher.io/local-path",
    "kubernetes.io/no-provisioner",
    "openebs.io/local",
    "topolvm.io",
    "local.csi.openebs.io",
];
/// Annotation marking the cluster's default StorageClass.
const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// The verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Analysis {
    /// Whether the server could move to another node.
    pub possible: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Why, and what to change when it cannot.
    pub message: String,
}

impl Analysis {
    fn no(reason: &'static str, message: String) -> Self {
        Self {
            possible: false,
            reason,
            message,
        }
    }
}

/// Analyses `ms`, which the nodes in `eligible` can run.
#[must_use]
pub fn analyse(ms: &MediaServer, eligible: &[String], observed: &Observed) -> Analysis {
    let spec = &ms.spec;
    let fix_storage = "serve it from network storage (an NFS share, or a claim on Longhorn, Ceph or another replicated class)";
    if let Some(host) = &spec.config.host_path {
        return Analysis::no(
            reasons::NODE_LOCAL_STORAGE,
            format!(
                "the config is on hostPath {} of node {}: the server can only run there. To allow failover, create a new MediaServer with its config in a volumeClaim on network storage and copy the config over",
                host.path, host.node
            ),
        );
    }
    if let Some((media, host)) = spec
        .media
        .iter()
        .find_map(|m| m.host_path.as_ref().map(|h| (m, h)))
    {
        return Analysis::no(
            reasons::NODE_LOCAL_STORAGE,
            format!(
                "media library {} is on hostPath {} of node {}: the server can only run there. To allow failover, {fix_storage}",
                media.name, host.path, host.node
            ),
        );
    }
    for claim in names::claims_of(ms) {
        if let Some(why) = node_local(&claim, observed) {
            return Analysis::no(
                reasons::NODE_LOCAL_STORAGE,
                format!(
                    "claim {claim} {why}: the server can only run there. To allow failover, {fix_storage}"
                ),
            );
        }
    }
    match spec.failover.mode {
        FailoverMode::Automatic => {}
        mode => {
            return Analysis::no(
                reasons::FAILOVER_NOT_AUTOMATIC,
                format!(
                    "failover.mode is {mode:?}: the operator does not move the server off a lost node; set it to Automatic to let it"
                ),
            );
        }
    }
    match eligible {
        [] | [_] => Analysis::no(
            reasons::SINGLE_ELIGIBLE_NODE,
            format!(
                "only {} can run the server (architecture, GPU and allowedNodes): add another node that can, for example a second one with the same GPU",
                eligible.first().map_or("one node", String::as_str)
            ),
        ),
        nodes => Analysis {
            possible: true,
            reason: reasons::NETWORK_STORAGE,
            message: format!(
                "config and media are on network storage; {} nodes can run the server: {}",
                nodes.len(),
                nodes.join(", ")
            ),
        },
    }
}

/// Why the claim's volume stays on one node, if it does.
fn node_local(claim: &str, observed: &Observed) -> Option<String> {
    let pvc = observed.claims.get(claim)?;
    let bound = pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref());
    if let Some(pv) = bound.and_then(|v| observed.volumes.get(v)) {
        return pinned_volume(pv).map(|node| {
            format!(
                "is bound to volume {}, which only node {node} can use",
                pv.name_any()
            )
        });
    }
    let class = class_of(pvc, observed)?;
    let provisioner = observed
        .storage_classes
        .iter()
        .find(|c| c.name_any() == class)
        .map(|c| c.provisioner.as_str())?;
    NODE_LOCAL_PROVISIONERS
        .contains(&provisioner)
        .then(|| format!("uses StorageClass {class} ({provisioner}), whose volumes stay on the node that created them"))
}

/// The claim's class, or the default class when it names none.
fn class_of(pvc: &PersistentVolumeClaim, observed: &Observed) -> Option<String> {
    match pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone()) {
        Some(class) => Some(class).filter(|c| !c.is_empty()),
        None => observed
            .storage_classes
            .iter()
            .find(|c| {
                c.annotations()
                    .get(DEFAULT_CLASS)
                    .is_some_and(|v| v == "true")
            })
            .map(ResourceExt::name_any),
    }
}

/// The node a volume is tied to: a local or hostPath volume, or node affinity
/// on a single node.
fn pinned_volume(pv: &PersistentVolume) -> Option<String> {
    let spec = pv.spec.as_ref()?;
    let terms = spec
        .node_affinity
        .as_ref()
        .and_then(|a| a.required.as_ref())
        .map(|r| r.node_selector_terms.as_slice())
        .unwrap_or_default();
    let nodes: Vec<&String> = terms
        .iter()
        .flat_map(|t| {
            t.match_expressions
                .iter()
                .flatten()
                .chain(t.match_fields.iter().flatten())
        })
        .filter(|e| {
            e.operator == "In"
                && matches!(e.key.as_str(), "kubernetes.io/hostname" | "metadata.name")
        })
        .flat_map(|e| e.values.iter().flatten())
        .collect();
    match nodes.as_slice() {
        [node] => Some((*node).clone()),
        _ if spec.local.is_some() || spec.host_path.is_some() => Some("one".to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{claim, media_server};
    use k8s_openapi::api::core::v1::{
        NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeSpec,
        VolumeNodeAffinity,
    };
    use k8s_openapi::api::storage::v1::StorageClass;
    use kube::api::ObjectMeta;
    use serde_json::json;

    fn two_nodes() -> Vec<String> {
        vec!["celeron-1".into(), "n100-1".into()]
    }

    #[test]
    fn network_config_and_nfs_media_can_move() {
        let ms = media_server(json!({
            "preset": "Jellyfin",
            "config": {"volumeClaim": {"size": "1Gi"}},
            "media": [{"name": "movies", "mountPath": "/m", "nfs": {"server": "nas", "path": "/m"}}],
        }));
        let a = analyse(&ms, &two_nodes(), &Observed::default());
        assert!(a.possible);
        assert_eq!(a.reason, reasons::NETWORK_STORAGE);
        assert!(a.message.contains("celeron-1, n100-1"));
    }

    #[test]
    fn a_node_local_library_keeps_it_there_and_says_what_to_change() {
        let ms = media_server(json!({
            "preset": "Navidrome",
            "config": {"volumeClaim": {"size": "1Gi"}},
            "media": [{"name": "music", "mountPath": "/music",
                       "hostPath": {"node": "pi4-2", "path": "/mnt/usb"}}],
        }));
        let a = analyse(&ms, &["pi4-2".into()], &Observed::default());
        assert!(!a.possible);
        assert_eq!(a.reason, reasons::NODE_LOCAL_STORAGE);
        assert!(
            a.message.contains("music") && a.message.contains("pi4-2"),
            "{}",
            a.message
        );
        assert!(a.message.contains("network storage"), "{}", a.message);
    }

    #[test]
    fn a_claim_bound_to_a_local_volume_is_node_local() {
        let ms = media_server(json!({
            "preset": "Jellyfin",
            "config": {"volumeClaim": {"size": "1Gi"}},
        }));
        let mut observed = Observed::default();
        let mut pvc = claim("jellyfin-config", "ReadWriteOnce");
        if let Some(spec) = pvc.spec.as_mut() {
            spec.volume_name = Some("pv-1".into());
        }
        observed.claims.insert("jellyfin-config".into(), pvc);
        let pv = PersistentVolume {
            metadata: ObjectMeta {
                name: Some("pv-1".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeSpec {
                node_affinity: Some(VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "kubernetes.io/hostname".into(),
                                operator: "In".into(),
                                values: Some(vec!["pi4-1".into()]),
                            }]),
                            match_fields: None,
                        }],
                    }),
                }),
                ..PersistentVolumeSpec::default()
            }),
            status: None,
        };
        observed.volumes.insert("pv-1".into(), pv);
        let a = analyse(&ms, &two_nodes(), &observed);
        assert!(!a.possible);
        assert!(
            a.message.contains("pv-1") && a.message.contains("pi4-1"),
            "{}",
            a.message
        );
    }

    #[test]
    fn k3s_local_path_default_class_is_node_local_before_binding() {
        let ms = media_server(json!({
            "preset": "Jellyfin",
            "config": {"volumeClaim": {"size": "1Gi"}},
        }));
        let mut observed = Observed::default();
        observed.claims.insert(
            "jellyfin-config".into(),
            claim("jellyfin-config", "ReadWriteOnce"),
        );
        observed.storage_classes.push(StorageClass {
            metadata: ObjectMeta {
                name: Some("local-path".into()),
                annotations: Some([(DEFAULT_CLASS.to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            provisioner: "rancher.io/local-path".into(),
            ..StorageClass::default()
        });
        let a = analyse(&ms, &two_nodes(), &observed);
        assert_eq!(a.reason, reasons::NODE_LOCAL_STORAGE);
        assert!(a.message.contains("local-path"), "{}", a.message);
    }

    #[test]
    fn manual_mode_and_a_single_node_are_not_failover() {
        let manual = media_server(json!({
            "preset": "Jellyfin",
            "config": {"volumeClaim": {"size": "1Gi"}},
            "failover": {"mode": "Manual"},
        }));
        let a = analyse(&manual, &two_nodes(), &Observed::default());
        assert_eq!(a.reason, reasons::FAILOVER_NOT_AUTOMATIC);
        let single = media_server(json!({
            "preset": "Jellyfin",
            "config": {"volumeClaim": {"size": "1Gi"}},
            "transcoding": {"hardware": "IntelQuickSync"},
        }));
        let a = analyse(&single, &["n100-1".into()], &Observed::default());
        assert_eq!(
            (a.possible, a.reason),
            (false, reasons::SINGLE_ELIGIBLE_NODE)
        );
        assert!(a.message.contains("n100-1"));
    }
}
