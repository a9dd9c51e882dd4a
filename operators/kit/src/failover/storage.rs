//! Where a claim's data lives, and so what a second copy of its workload on
//! another node could do to it. Pure: a function of the claim, its volume, the
//! StorageClasses and the CSIDrivers as read.
//!
//! | the claim's volume                                          | [`Storage`]                  |
//! |-------------------------------------------------------------|------------------------------|
//! | hostPath or local volume, node affinity to one node         | `NodeLocal`                  |
//! | class provisioned on the node (local-path, no-provisioner…) | `NodeLocal`                  |
//! | NFS, CephFS, GlusterFS, Azure Files, SMB (in-tree or CSI)   | `Shared`                     |
//! | a CSI driver without an attach step (`attachRequired: false`)| `Shared`                    |
//! | ReadWriteMany                                               | `Shared`                     |
//! | ReadWriteOnce on a driver that attaches                     | `SingleAttach`               |
//! | unbound, no class known                                     | `Undetermined`               |
//!
//! ReadWriteOnce alone promises nothing across nodes: only an attach step, which
//! the attach/detach controller refuses on a second node while the first holds
//! it, keeps two nodes from writing the same volume. A CSI driver without a
//! CSIDriver object attaches (Kubernetes' default).

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::{CSIDriver, StorageClass, VolumeAttachment};
use kube::ResourceExt;

use super::decide::Holds;

/// Provisioners and CSI drivers whose volumes live on the node that made them.
const NODE_LOCAL_PROVISIONERS: &[&str] = &[
    "rancher.io/local-path",
    "kubernetes.io/no-provisioner",
    "openebs.io/local",
    "local.csi.openebs.io",
    "topolvm.io",
    "lvm.csi.metal-stack.io",
    "hostpath.csi.k8s.io",
];
/// Provisioners and CSI drivers of file shares every node mounts at once.
const SHARED_PROVISIONERS: &[&str] = &[
    "nfs.csi.k8s.io",
    "smb.csi.k8s.io",
    "cephfs.csi.ceph.com",
    "k8s-sigs.io/nfs-subdir-external-provisioner",
    "cluster.local/nfs-subdir-external-provisioner",
    "nfs.openebs.io",
    "efs.csi.aws.com",
    "file.csi.azure.com",
    "filestore.csi.storage.gke.io",
];
/// Annotation marking the cluster's default StorageClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// k3s' default StorageClass: a directory on the node that first ran the pod.
const K3S_LOCAL_PATH: &str = "rancher.io/local-path";

/// What a claim's storage means for a second copy on another node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    /// The data stays on one node: no other node can run the workload.
    NodeLocal {
        /// Why, after "claim NAME ", with what to change.
        why: String,
    },
    /// Kubernetes attaches the volume to one node at a time: a copy on another
    /// node waits until the lost node's attachment is released.
    SingleAttach {
        /// Why, after "claim NAME ".
        why: String,
    },
    /// Two nodes can mount it at once: only a fenced node is safe to replace.
    Shared {
        /// Why, after "claim NAME ".
        why: String,
        /// The volume, when its driver attaches it to nodes: its
        /// VolumeAttachments say whether a lost node still holds it.
        attached_volume: Option<String>,
    },
    /// Not bound, and nothing says where it will be.
    Undetermined {
        /// Why, after "claim NAME ".
        why: String,
    },
}

/// What is known of one claim.
#[derive(Clone, Copy, Debug)]
pub struct ClaimFacts<'a> {
    /// The claim.
    pub claim: &'a PersistentVolumeClaim,
    /// The volume it is bound to, if bound and readable.
    pub volume: Option<&'a PersistentVolume>,
    /// Every StorageClass (for an unbound claim, and the default class).
    pub classes: &'a [StorageClass],
    /// Every CSIDriver (whether a driver attaches).
    pub drivers: &'a [CSIDriver],
}

/// Classifies the claim's storage. See the module's table.
#[must_use]
pub fn classify(f: &ClaimFacts<'_>) -> Storage {
    match f.volume {
        Some(pv) => by_volume(f, pv),
        None => by_class(f),
    }
}

fn by_volume(f: &ClaimFacts<'_>, pv: &PersistentVolume) -> Storage {
    let name = pv.name_any();
    let Some(spec) = pv.spec.as_ref() else {
        return by_class(f);
    };
    if let Some(node) = pinned_node(pv) {
        return Storage::NodeLocal {
            why: format!("is bound to volume {name}, which only node {node} can use"),
        };
    }
    let many = access_modes(spec.access_modes.as_deref()).many;
    let share = if let Some(nfs) = &spec.nfs {
        Some(format!("an NFS share ({}:{})", nfs.server, nfs.path))
    } else if spec.cephfs.is_some() {
        Some("a CephFS share".to_owned())
    } else if spec.glusterfs.is_some() {
        Some("a GlusterFS share".to_owned())
    } else if spec.azure_file.is_some() {
        Some("an Azure Files share".to_owned())
    } else {
        None
    };
    if let Some(share) = share {
        return Storage::Shared {
            why: format!("is bound to volume {name}, {share} that every node can mount at once"),
            attached_volume: None,
        };
    }
    let Some(csi) = &spec.csi else {
        // An in-tree block volume (iSCSI, RBD, FC, a cloud disk): its plugin
        // attaches.
        return if many {
            Storage::Shared {
                why: format!("is bound to volume {name}, which is ReadWriteMany"),
                attached_volume: None,
            }
        } else {
            Storage::SingleAttach {
                why: format!(
                    "is bound to volume {name}, a ReadWriteOnce block volume attached to one node at a time"
                ),
            }
        };
    };
    by_driver(
        &csi.driver,
        many,
        f.drivers,
        &format!("is bound to volume {name}"),
        Some(&name),
    )
}

fn by_class(f: &ClaimFacts<'_>) -> Storage {
    let spec = f.claim.spec.as_ref();
    let many = access_modes(spec.and_then(|s| s.access_modes.as_deref())).many;
    let named = spec.and_then(|s| s.storage_class_name.as_deref());
    let class = match named {
        Some("") => None,
        Some(name) => f.classes.iter().find(|c| c.name_any() == name),
        None => default_class(f.classes),
    };
    let Some(class) = class else {
        return if many {
            Storage::Shared {
                why: "is ReadWriteMany, which every node may mount at once".to_owned(),
                attached_volume: None,
            }
        } else {
            Storage::Undetermined {
                why: match named {
                    Some(n) if !n.is_empty() => {
                        format!("is not bound yet, and StorageClass {n} does not exist")
                    }
                    _ => "is not bound yet, and names no StorageClass the cluster has".to_owned(),
                },
            }
        };
    };
    let provisioner = class.provisioner.as_str();
    let default = if named.is_none() {
        ", the cluster's default class"
    } else {
        ""
    };
    let what = format!(
        "uses StorageClass {} ({provisioner}{default})",
        class.name_any()
    );
    if NODE_LOCAL_PROVISIONERS.contains(&provisioner) {
        let k3s = if provisioner == K3S_LOCAL_PATH {
            " (k3s installs it as the default class)"
        } else {
            ""
        };
        return Storage::NodeLocal {
            why: format!("{what}, whose volumes stay on the node that created them{k3s}"),
        };
    }
    by_driver(provisioner, many, f.drivers, &what, None)
}

/// A CSI driver (or provisioner) named `driver`.
fn by_driver(
    driver: &str,
    many: bool,
    drivers: &[CSIDriver],
    what: &str,
    volume: Option<&str>,
) -> Storage {
    if NODE_LOCAL_PROVISIONERS.contains(&driver) {
        return Storage::NodeLocal {
            why: format!("{what} of {driver}, whose volumes stay on the node that created them"),
        };
    }
    let declared = drivers
        .iter()
        .find(|d| d.name_any() == driver)
        .and_then(|d| d.spec.attach_required);
    let known_share = SHARED_PROVISIONERS.contains(&driver);
    // Without a CSIDriver object Kubernetes attaches; a file-share driver
    // known not to is taken at its word.
    let attaches = declared.unwrap_or(!known_share);
    let attached_volume = attaches.then(|| volume.map(str::to_owned)).flatten();
    if known_share {
        return Storage::Shared {
            why: format!("{what}, a file share ({driver}) that every node can mount at once"),
            attached_volume,
        };
    }
    if !attaches {
        return Storage::Shared {
            why: format!(
                "{what}, whose driver {driver} has no attach step (attachRequired: false): nothing stops two nodes mounting it at once"
            ),
            attached_volume: None,
        };
    }
    if many {
        return Storage::Shared {
            why: format!("{what}, ReadWriteMany on {driver}: several nodes may mount it at once"),
            attached_volume,
        };
    }
    Storage::SingleAttach {
        why: format!("{what}, ReadWriteOnce on {driver}, which attaches it to one node at a time"),
    }
}

struct Modes {
    many: bool,
}

fn access_modes(modes: Option<&[String]>) -> Modes {
    Modes {
        many: modes
            .unwrap_or_default()
            .iter()
            .any(|m| m == "ReadWriteMany"),
    }
}

/// The cluster's default StorageClass.
#[must_use]
pub fn default_class(classes: &[StorageClass]) -> Option<&StorageClass> {
    classes.iter().find(|c| {
        c.annotations()
            .get(DEFAULT_CLASS_ANNOTATION)
            .is_some_and(|v| v == "true")
    })
}

/// The node a volume is tied to: node affinity on a single node, or a local or
/// hostPath volume ("one" when it names none).
#[must_use]
pub fn pinned_node(pv: &PersistentVolume) -> Option<String> {
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

/// The nodes `volume` is attached to, by its VolumeAttachments (attached or
/// still detaching: either way the node may still write it).
#[must_use]
pub fn attached_nodes(volume: &str, attachments: &[VolumeAttachment]) -> Vec<String> {
    let mut nodes: Vec<String> = attachments
        .iter()
        .filter(|a| a.spec.source.persistent_volume_name.as_deref() == Some(volume))
        .map(|a| a.spec.node_name.clone())
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

impl Storage {
    /// What a pod using it holds, for [`super::decide`]: `what` names it for a
    /// person ("the config"), `attachments` are the cluster's VolumeAttachments
    /// (read only when [`Storage::needs_attachments`]).
    #[must_use]
    pub fn holds(&self, what: &str, attachments: &[VolumeAttachment]) -> Option<Holds> {
        match self {
            Self::NodeLocal { .. } => Some(Holds::NodeLocalVolume {
                what: what.to_owned(),
            }),
            Self::Shared {
                attached_volume, ..
            } => Some(Holds::SharedStorage {
                what: what.to_owned(),
                attached_to: attached_volume
                    .as_deref()
                    .map(|v| attached_nodes(v, attachments)),
            }),
            // A claim that cannot be judged is treated as one two nodes could
            // write: a fence is the only proof then.
            Self::Undetermined { .. } => Some(Holds::SharedStorage {
                what: what.to_owned(),
                attached_to: None,
            }),
            Self::SingleAttach { .. } => None,
        }
    }

    /// Whether [`Storage::holds`] needs the VolumeAttachments.
    #[must_use]
    pub fn needs_attachments(&self) -> bool {
        matches!(
            self,
            Self::Shared {
                attached_volume: Some(_),
                ..
            }
        )
    }

    /// The explanation, after "claim NAME ".
    #[must_use]
    pub fn why(&self) -> &str {
        match self {
            Self::NodeLocal { why }
            | Self::SingleAttach { why }
            | Self::Shared { why, .. }
            | Self::Undetermined { why } => why,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(spec: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "config"}, "spec": spec})).unwrap()
    }

    fn volume(spec: serde_json::Value) -> PersistentVolume {
        serde_json::from_value(json!({"metadata": {"name": "pv-1"}, "spec": spec})).unwrap()
    }

    fn class(name: &str, provisioner: &str, default: bool) -> StorageClass {
        let mut c: StorageClass =
            serde_json::from_value(json!({"metadata": {"name": name}, "provisioner": provisioner}))
                .unwrap();
        if default {
            c.metadata.annotations =
                Some([(DEFAULT_CLASS_ANNOTATION.to_owned(), "true".to_owned())].into());
        }
        c
    }

    fn driver(name: &str, attach: bool) -> CSIDriver {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"attachRequired": attach}}),
        )
        .unwrap()
    }

    fn rwo() -> PersistentVolumeClaim {
        claim(json!({"accessModes": ["ReadWriteOnce"]}))
    }

    fn of(
        claim: &PersistentVolumeClaim,
        pv: Option<&PersistentVolume>,
        classes: &[StorageClass],
        drivers: &[CSIDriver],
    ) -> Storage {
        classify(&ClaimFacts {
            claim,
            volume: pv,
            classes,
            drivers,
        })
    }

    #[test]
    fn an_rwo_claim_on_an_nfs_volume_is_shared() {
        let pv = volume(json!({
            "accessModes": ["ReadWriteOnce"],
            "nfs": {"server": "nas.home.arpa", "path": "/volume1/z2m"},
        }));
        let s = of(&rwo(), Some(&pv), &[], &[]);
        assert!(
            matches!(
                s,
                Storage::Shared {
                    attached_volume: None,
                    ..
                }
            ),
            "{s:?}"
        );
        assert!(
            s.why().contains("nas.home.arpa:/volume1/z2m"),
            "{}",
            s.why()
        );
    }

    #[test]
    fn csi_without_attach_is_shared_and_with_attach_single() {
        let csi = |driver: &str| {
            volume(json!({
                "accessModes": ["ReadWriteOnce"],
                "csi": {"driver": driver, "volumeHandle": "h"},
            }))
        };
        // The CSI NFS driver, with or without its CSIDriver object.
        let s = of(&rwo(), Some(&csi("nfs.csi.k8s.io")), &[], &[]);
        assert!(
            matches!(
                s,
                Storage::Shared {
                    attached_volume: None,
                    ..
                }
            ),
            "{s:?}"
        );
        let drivers = [driver("nfs.csi.k8s.io", false)];
        let s = of(&rwo(), Some(&csi("nfs.csi.k8s.io")), &[], &drivers);
        assert!(matches!(s, Storage::Shared { .. }), "{s:?}");
        // Any driver that says it has no attach step.
        let drivers = [driver("example.com/share", false)];
        let s = of(&rwo(), Some(&csi("example.com/share")), &[], &drivers);
        assert!(
            matches!(
                s,
                Storage::Shared {
                    attached_volume: None,
                    ..
                }
            ),
            "{s:?}"
        );
        assert!(s.why().contains("attachRequired: false"), "{}", s.why());
        // Longhorn: attaches; no CSIDriver object means it attaches too.
        let drivers = [driver("driver.longhorn.io", true)];
        let s = of(&rwo(), Some(&csi("driver.longhorn.io")), &[], &drivers);
        assert!(matches!(s, Storage::SingleAttach { .. }), "{s:?}");
        let s = of(&rwo(), Some(&csi("rbd.csi.ceph.com")), &[], &[]);
        assert!(matches!(s, Storage::SingleAttach { .. }), "{s:?}");
    }

    #[test]
    fn read_write_many_on_an_attaching_driver_is_shared_and_watched_by_attachment() {
        let pv = volume(json!({
            "accessModes": ["ReadWriteMany"],
            "csi": {"driver": "driver.longhorn.io", "volumeHandle": "h"},
        }));
        let s = of(&rwo(), Some(&pv), &[], &[]);
        assert_eq!(
            s,
            Storage::Shared {
                why: s.why().to_owned(),
                attached_volume: Some("pv-1".into())
            }
        );
        assert!(s.needs_attachments());
        let attachment = |node: &str, pv: &str| -> VolumeAttachment {
            serde_json::from_value(json!({
                "metadata": {"name": format!("csi-{node}")},
                "spec": {"attacher": "driver.longhorn.io", "nodeName": node,
                         "source": {"persistentVolumeName": pv}},
            }))
            .unwrap()
        };
        let all = [attachment("pi4-2", "pv-1"), attachment("pi4-3", "pv-9")];
        assert_eq!(
            s.holds("the data", &all),
            Some(Holds::SharedStorage {
                what: "the data".into(),
                attached_to: Some(vec!["pi4-2".into()])
            })
        );
    }

    #[test]
    fn local_and_single_node_volumes_are_node_local() {
        let pinned = volume(json!({
            "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/var/lib/rancher/k3s/storage/pvc-1"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["pi4-1"]}
            ]}]}},
        }));
        let s = of(&rwo(), Some(&pinned), &[], &[]);
        assert!(matches!(s, Storage::NodeLocal { .. }), "{s:?}");
        assert!(s.why().contains("pi4-1"), "{}", s.why());
        let local = volume(json!({"local": {"path": "/mnt/ssd"}}));
        assert!(matches!(
            of(&rwo(), Some(&local), &[], &[]),
            Storage::NodeLocal { .. }
        ));
        assert_eq!(
            s.holds("x", &[]),
            Some(Holds::NodeLocalVolume { what: "x".into() })
        );
    }

    #[test]
    fn an_unbound_claim_is_judged_by_its_class_or_the_default_one() {
        let k3s = [class("local-path", "rancher.io/local-path", true)];
        let s = of(&rwo(), None, &k3s, &[]);
        assert!(matches!(s, Storage::NodeLocal { .. }), "{s:?}");
        assert!(
            s.why().contains("local-path")
                && s.why().contains("default")
                && s.why().contains("k3s"),
            "{}",
            s.why()
        );
        let classes = [
            class("local-path", "rancher.io/local-path", true),
            class("nfs", "nfs.csi.k8s.io", false),
            class("longhorn", "driver.longhorn.io", false),
        ];
        let named =
            |c: &str| claim(json!({"accessModes": ["ReadWriteOnce"], "storageClassName": c}));
        assert!(matches!(
            of(&named("nfs"), None, &classes, &[]),
            Storage::Shared { .. }
        ));
        assert!(matches!(
            of(&named("longhorn"), None, &classes, &[]),
            Storage::SingleAttach { .. }
        ));
        let many = claim(json!({"accessModes": ["ReadWriteMany"], "storageClassName": "longhorn"}));
        assert!(matches!(
            of(&many, None, &classes, &[]),
            Storage::Shared { .. }
        ));
        let s = of(&named("gone"), None, &classes, &[]);
        assert!(matches!(s, Storage::Undetermined { .. }), "{s:?}");
        assert!(s.why().contains("gone"), "{}", s.why());
        // Undetermined is treated as shared by failover: only a fence proves it.
        assert!(matches!(
            s.holds("x", &[]),
            Some(Holds::SharedStorage {
                attached_to: None,
                ..
            })
        ));
        // An empty class is "no class", not the default one.
        assert!(matches!(
            of(&named(""), None, &classes, &[]),
            Storage::Undetermined { .. }
        ));
    }

    #[test]
    fn single_attach_holds_nothing_a_second_copy_could_share() {
        let s = Storage::SingleAttach { why: String::new() };
        assert_eq!(s.holds("x", &[]), None);
        assert!(!s.needs_attachments());
    }
}
