//! Whether the server could move if its node died, and why (not). Pure.
//!
//! It cannot when its config or a library lives on one node (a hostPath, a
//! claim bound to a local volume, a StorageClass whose volumes stay on one
//! node), when only one node can run it, or when the policy says not to act.
//! When it can, the config's storage says how: a volume attached to one node
//! at a time moves by itself; storage two nodes can mount at once (an NFS
//! share, even behind a ReadWriteOnce claim) only once the lost node is fenced
//! or its attachment is gone. Libraries are read, not written, so only their
//! node-locality counts.

use homelab_api::MediaServer;
use homelab_api::conditions::reasons;
use homelab_api::failover::FailoverMode;
use homelab_kit::failover::Storage;
use homelab_kit::failover::readiness::{self, FIX_NODE_LOCAL};
use homelab_kit::failover::storage::{ClaimFacts, classify};
use kube::ResourceExt;

use crate::build::names;
use crate::observed::Observed;

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

/// Analyses `ms`, which the nodes in `eligible` can run; `fencing_allowed`:
/// the administrator lets failover fence nodes.
#[must_use]
pub fn analyse(
    ms: &MediaServer,
    eligible: &[String],
    observed: &Observed,
    fencing_allowed: bool,
) -> Analysis {
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
        if let Some(Storage::NodeLocal { why }) = claim_storage(&claim, observed) {
            return Analysis::no(
                reasons::NODE_LOCAL_STORAGE,
                format!(
                    "claim {claim} {why}: the server can only run there. To allow failover, {FIX_NODE_LOCAL}"
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
    let nodes = match eligible {
        [] | [_] => {
            return Analysis::no(
                reasons::SINGLE_ELIGIBLE_NODE,
                format!(
                    "only {} can run the server (architecture, GPU and allowedNodes): add another node that can, for example a second one with the same GPU",
                    eligible.first().map_or("one node", String::as_str)
                ),
            );
        }
        nodes => format!(
            "{} nodes can run the server: {}",
            nodes.len(),
            nodes.join(", ")
        ),
    };
    let Some((subject, storage)) = config_storage(ms, observed) else {
        // The claim is not there yet (it is created in this same reconcile):
        // judged on the next look.
        return Analysis {
            possible: true,
            reason: reasons::NETWORK_STORAGE,
            message: format!("config and media are on network storage; {nodes}"),
        };
    };
    let verdict = readiness::of_state(&subject, &storage, &spec.failover, fencing_allowed);
    let message = if verdict.possible {
        format!("{}; {nodes}", verdict.message)
    } else {
        verdict.message
    };
    Analysis {
        possible: verdict.possible,
        reason: verdict.reason,
        message,
    }
}

/// The storage of the config (the server's SQLite database: what two copies
/// must not both write), named for a person; `None` for a hostPath (handled
/// apart) or a claim not read yet.
#[must_use]
pub fn config_storage(ms: &MediaServer, observed: &Observed) -> Option<(String, Storage)> {
    let config = &ms.spec.config;
    if let Some(nfs) = &config.nfs {
        let storage = Storage::Shared {
            why: format!(
                "is on NFS {}:{}, which every node can mount at once",
                nfs.server, nfs.path
            ),
            attached_volume: None,
        };
        return Some(("the config".to_owned(), storage));
    }
    let claim = match (&config.existing_claim, &config.volume_claim) {
        (Some(existing), _) => existing.clone(),
        (None, Some(_)) => names::config_claim(&ms.name_any()),
        (None, None) => return None,
    };
    let storage = claim_storage(&claim, observed)?;
    Some((format!("the config's claim {claim}"), storage))
}

/// The storage of `claim`, if it was read.
#[must_use]
pub fn claim_storage(claim: &str, observed: &Observed) -> Option<Storage> {
    let pvc = observed.claims.get(claim)?;
    let bound = pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref());
    Some(classify(&ClaimFacts {
        claim: pvc,
        volume: bound.and_then(|v| observed.volumes.get(v)),
        classes: &observed.storage_classes,
        drivers: &observed.drivers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{claim, media_server};
    use k8s_openapi::api::core::v1::{
        NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolume,
        PersistentVolumeSpec, VolumeNodeAffinity,
    };
    use k8s_openapi::api::storage::v1::StorageClass;
    use kube::api::ObjectMeta;
    use serde_json::json;

    /// Asserts that `message` mentions every one of `words`.
    fn mentions(message: &str, words: &[&str]) {
        for w in words {
            assert!(message.contains(w), "{w:?} not in: {message}");
        }
    }

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
        let a = analyse(&ms, &two_nodes(), &Observed::default(), false);
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
        let a = analyse(&ms, &["pi4-2".into()], &Observed::default(), false);
        assert!(!a.possible);
        assert_eq!(a.reason, reasons::NODE_LOCAL_STORAGE);
        mentions(&a.message, &["music", "pi4-2", "network storage"]);
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
        let a = analyse(&ms, &two_nodes(), &observed, false);
        assert!(!a.possible);
        mentions(&a.message, &["pv-1", "pi4-1"]);
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
                annotations: Some(
                    [(
                        homelab_kit::failover::storage::DEFAULT_CLASS_ANNOTATION.to_owned(),
                        "true".to_owned(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            provisioner: "rancher.io/local-path".into(),
            ..StorageClass::default()
        });
        let a = analyse(&ms, &two_nodes(), &observed, false);
        assert_eq!(a.reason, reasons::NODE_LOCAL_STORAGE);
        mentions(&a.message, &["local-path", "k3s", "storageClassName"]);
    }

    /// A config claim bound to volume `pv-1` with `spec`.
    fn bound_config(spec: serde_json::Value) -> Observed {
        let mut observed = Observed::default();
        let mut pvc = claim("jellyfin-config", "ReadWriteOnce");
        if let Some(s) = pvc.spec.as_mut() {
            s.volume_name = Some("pv-1".into());
        }
        observed.claims.insert("jellyfin-config".into(), pvc);
        let pv: PersistentVolume =
            serde_json::from_value(json!({"metadata": {"name": "pv-1"}, "spec": spec})).unwrap();
        observed.volumes.insert("pv-1".into(), pv);
        observed
    }

    #[test]
    fn an_rwo_claim_on_an_nfs_volume_needs_fencing_and_says_how() {
        let ms = media_server(json!({
            "preset": "Jellyfin",
            "config": {"volumeClaim": {"size": "1Gi"}},
        }));
        let observed = bound_config(json!({
            "accessModes": ["ReadWriteOnce"],
            "nfs": {"server": "nas", "path": "/jellyfin"},
        }));
        let a = analyse(&ms, &two_nodes(), &observed, false);
        assert_eq!(
            (a.possible, a.reason),
            (false, reasons::SHARED_STORAGE_NEEDS_FENCING),
            "{}",
            a.message
        );
        mentions(
            &a.message,
            &["jellyfin-config", "nas:/jellyfin", "out-of-service"],
        );
        // With fenceNode and the administrator's permission, it fences first.
        let fencing = media_server(json!({
            "preset": "Jellyfin",
            "config": {"volumeClaim": {"size": "1Gi"}},
            "failover": {"fenceNode": true},
        }));
        let a = analyse(&fencing, &two_nodes(), &observed, true);
        assert_eq!(
            (a.possible, a.reason),
            (true, reasons::FENCES_BEFORE_MOVING)
        );
        assert!(a.message.contains("celeron-1, n100-1"), "{}", a.message);
    }

    #[test]
    fn an_attaching_driver_enforces_one_node_and_nfs_config_needs_fencing() {
        let ms = media_server(json!({
            "preset": "Jellyfin",
            "config": {"volumeClaim": {"size": "1Gi"}},
        }));
        let observed = bound_config(json!({
            "accessModes": ["ReadWriteOnce"],
            "csi": {"driver": "driver.longhorn.io", "volumeHandle": "pvc-1"},
        }));
        let a = analyse(&ms, &two_nodes(), &observed, false);
        assert_eq!((a.possible, a.reason), (true, reasons::ATTACHMENT_ENFORCED));
        let nfs = media_server(json!({
            "preset": "Jellyfin",
            "config": {"nfs": {"server": "nas", "path": "/c"}},
        }));
        let a = analyse(&nfs, &two_nodes(), &Observed::default(), false);
        assert_eq!(a.reason, reasons::SHARED_STORAGE_NEEDS_FENCING);
    }

    #[test]
    fn manual_mode_and_a_single_node_are_not_failover() {
        let manual = media_server(json!({
            "preset": "Jellyfin",
            "config": {"volumeClaim": {"size": "1Gi"}},
            "failover": {"mode": "Manual"},
        }));
        let a = analyse(&manual, &two_nodes(), &Observed::default(), false);
        assert_eq!(a.reason, reasons::FAILOVER_NOT_AUTOMATIC);
        let single = media_server(json!({
            "preset": "Jellyfin",
            "config": {"volumeClaim": {"size": "1Gi"}},
            "transcoding": {"hardware": "IntelQuickSync"},
        }));
        let a = analyse(&single, &["n100-1".into()], &Observed::default(), false);
        assert_eq!(
            (a.possible, a.reason),
            (false, reasons::SINGLE_ELIGIBLE_NODE)
        );
        assert!(a.message.contains("n100-1"));
    }
}
