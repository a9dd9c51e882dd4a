//! Node-loss failover for a gateway, through the kit: what its pod holds and
//! which nodes could run it (pure, from what the caches hold), then
//! [`homelab_kit::failover::workload::handle`] decides and acts.
//!
//! A gateway with a USB stick is left to the UsbDevicePin controller, which
//! moves a device's consumers to wherever the stick is reported. A gateway on a
//! network coordinator (or without a radio) can run on any eligible node.
//!
//! Its data (network key, coordinator backup) is what two copies must not both
//! write: a claim is judged by the kit ([`homelab_kit::failover::storage`]), so
//! an NFS-backed claim waits for a fence like an `nfs:` volume does, and k3s'
//! `local-path` keeps it on its node.

use homelab_api::ConditionedStatus;
use homelab_api::SensorGateway;
use homelab_api::conditions::reasons;
use homelab_api::conditions::types;
use homelab_api::failover::FailoverMode;
use homelab_api::failover::FailoverStatus;
use homelab_kit::Context;
use homelab_kit::failover::readiness::{self, Readiness};
use homelab_kit::failover::storage::{ClaimFacts, classify};
use homelab_kit::failover::tolerations::NODE_LOST_TAINTS;
use homelab_kit::failover::workload::{self, Outcome, Workload};
use homelab_kit::failover::{Holds, Storage};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::ResourceExt;

use crate::CONTROLLER_NAME;
use crate::build::names;
use crate::caches::Cluster;
use crate::controller::State;
use crate::error::Error;

/// The gateway's data storage, named for a person.
pub type DataStorage = (String, Storage);

/// What the kit needs besides the pods and nodes to handle a lost node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failover {
    /// The nodes that could run the gateway.
    pub eligible: Vec<String>,
    /// What its pod holds that a second copy must not.
    pub holds: Vec<Holds>,
}

/// What failover needs when it applies to `sg` (see [`applies`]) and it has a
/// pod; `None` otherwise.
#[must_use]
pub fn failover(
    sg: &SensorGateway,
    cluster: &Cluster,
    data: Option<&DataStorage>,
) -> Option<Failover> {
    (applies(sg) && !cluster.pods.is_empty()).then(|| Failover {
        eligible: eligible(sg, &cluster.nodes),
        holds: holds(sg, data, &cluster.attachments),
    })
}

/// Handles a lost node under the gateway's pods.
///
/// # Errors
/// When marking a node or deleting a pod fails.
pub async fn handle(
    sg: &SensorGateway,
    ctx: &Context<State>,
    cluster: &Cluster,
    failover: &Failover,
) -> Result<Outcome, Error> {
    let status = sg.status.as_ref();
    workload::handle(
        Workload {
            object: sg,
            policy: &sg.spec.failover,
            last_failover: status.and_then(|s| s.last_failover()),
            shown_block: status
                .and_then(|s| s.condition(types::FAILOVER_READY))
                .map(|c| c.message.as_str()),
            pods: &cluster.pods,
            nodes: &cluster.nodes,
            eligible: &failover.eligible,
            holds: &failover.holds,
        },
        ctx.failover_actor(
            CONTROLLER_NAME,
            &ctx.state.workload.failover,
            &ctx.state.caches.leases,
        ),
    )
    .await
    .map_err(Error::Failover)
}

/// Nodes the gateway's pod could be scheduled on: allowed by the policy (or the
/// host-path node), without a NoSchedule or NoExecute taint it does not
/// tolerate (a control-plane node, say). The node-lost taints do not count:
/// the kit checks those on the candidates itself.
#[must_use]
pub fn eligible(sg: &SensorGateway, nodes: &[Node]) -> Vec<String> {
    let pinned = sg.spec.data.pinned_node();
    nodes
        .iter()
        .filter(|n| {
            let name = n.name_any();
            let placed = match pinned {
                Some(p) => p == name,
                None => sg.spec.failover.allows(&name),
            };
            placed && !repelled(n)
        })
        .map(ResourceExt::name_any)
        .collect()
}

fn repelled(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|taints| {
            taints.iter().any(|t| {
                (t.effect == "NoSchedule" || t.effect == "NoExecute")
                    && !NODE_LOST_TAINTS.contains(&t.key.as_str())
                    && t.key != homelab_kit::failover::fence::SILENT_TAINT
                    && t.key != homelab_api::failover::OUT_OF_SERVICE_TAINT
            })
        })
}

/// Where the gateway's data lives: from the spec for `hostPath` and `nfs`,
/// from the cached claim, its volume and the classes for a claim. `None` for
/// an external gateway, or a claim not there yet.
#[must_use]
pub fn data_storage(sg: &SensorGateway, cluster: &Cluster) -> Option<DataStorage> {
    if sg.spec.external {
        return None;
    }
    match spec_storage(sg) {
        Spec::Known(known) => known,
        Spec::Claim(name) => {
            let claim = cluster.claim.as_ref().filter(|c| c.name_any() == name)?;
            let storage = classify(&ClaimFacts {
                claim,
                volume: cluster.volume.as_ref(),
                classes: &cluster.classes,
                drivers: &cluster.drivers,
            });
            Some((format!("the data's claim {name}"), storage))
        }
    }
}

/// The claim the gateway's data is on (named or made by the operator), if any.
#[must_use]
pub fn data_claim(sg: &SensorGateway) -> Option<String> {
    if sg.spec.external {
        return None;
    }
    match spec_storage(sg) {
        Spec::Claim(name) => Some(name),
        Spec::Known(_) => None,
    }
}

/// What the spec alone says of the data.
enum Spec {
    /// Judged from the spec.
    Known(Option<DataStorage>),
    /// A claim, to be read.
    Claim(String),
}

fn spec_storage(sg: &SensorGateway) -> Spec {
    let data = &sg.spec.data;
    let subject = "the data".to_owned();
    if let Some(h) = &data.host_path {
        let why = format!("is in hostPath {} of node {}", h.path, h.node);
        return Spec::Known(Some((subject, Storage::NodeLocal { why })));
    }
    if let Some(nfs) = &data.nfs {
        let why = format!(
            "is on NFS {}:{}, which every node can mount at once",
            nfs.server, nfs.path
        );
        let storage = Storage::Shared {
            why,
            attached_volume: None,
        };
        return Spec::Known(Some((subject, storage)));
    }
    match (&data.existing_claim, &data.volume_claim) {
        (Some(existing), _) => Spec::Claim(existing.clone()),
        (None, Some(_)) => Spec::Claim(names::data_claim(&sg.name_any())),
        (None, None) => Spec::Known(None),
    }
}

/// What a second copy of the gateway would share with the first.
fn holds(
    sg: &SensorGateway,
    data: Option<&DataStorage>,
    attachments: &[VolumeAttachment],
) -> Vec<Holds> {
    let Some((subject, storage)) = data else {
        return Vec::new();
    };
    let what = match storage {
        Storage::NodeLocal { .. } => format!("{subject} of {}", sg.name_any()),
        _ => format!("{subject} (network key, coordinator backup)"),
    };
    storage.holds(&what, attachments).into_iter().collect()
}

/// What FailoverReady says while no node is lost: which case of storage
/// applies and what happens on a node loss. `None` when the gateway has no
/// pod, or its claim is not there yet.
#[must_use]
pub fn readiness(
    sg: &SensorGateway,
    data: Option<&DataStorage>,
    fencing_allowed: bool,
) -> Option<Readiness> {
    let (subject, storage) = data?;
    let verdict = readiness::of_state(subject, storage, &sg.spec.failover, fencing_allowed);
    // A gateway on a USB stick follows the stick (the UsbDevicePin controller
    // moves it): only data that cannot follow is this controller's to report.
    if !applies(sg) && verdict.reason != reasons::NODE_LOCAL_STORAGE {
        return None;
    }
    if verdict.reason != reasons::NODE_LOCAL_STORAGE
        && sg.spec.failover.mode != FailoverMode::Automatic
    {
        return Some(Readiness {
            possible: false,
            reason: reasons::FAILOVER_NOT_AUTOMATIC,
            message: format!(
                "failover.mode is {:?}: the operator does not move the gateway off a lost node; set it to Automatic to let it",
                sg.spec.failover.mode
            ),
        });
    }
    Some(verdict)
}

/// Whether node-loss failover applies: not for external gateways (no pod) nor
/// for one on a USB stick (the UsbDevicePin controller moves those).
#[must_use]
pub fn applies(sg: &SensorGateway) -> bool {
    !sg.spec.external
        && sg
            .spec
            .radio
            .as_ref()
            .is_none_or(|r| r.usb_device_pin.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::gateway;
    use serde_json::json;

    fn node(name: &str, taint: Option<(&str, &str)>) -> Node {
        let mut n: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        if let Some((key, effect)) = taint {
            n.spec = Some(
                serde_json::from_value(json!({"taints": [{"key": key, "effect": effect}]}))
                    .unwrap(),
            );
        }
        n
    }

    #[test]
    fn control_plane_is_not_eligible_but_a_lost_node_is() {
        let nodes = [
            node(
                "cp-1",
                Some(("node-role.kubernetes.io/control-plane", "NoSchedule")),
            ),
            node(
                "pi4-1",
                Some(("node.kubernetes.io/unreachable", "NoExecute")),
            ),
            node("pi4-2", None),
        ];
        let sg = gateway("z", json!({"preset": "Zigbee2MQTT"}));
        assert_eq!(eligible(&sg, &nodes), ["pi4-1", "pi4-2"]);
        let sg = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "failover": {"allowedNodes": ["pi4-2"]}}),
        );
        assert_eq!(eligible(&sg, &nodes), ["pi4-2"]);
    }

    fn known(sg: &SensorGateway) -> Option<DataStorage> {
        match spec_storage(sg) {
            Spec::Known(k) => k,
            Spec::Claim(c) => panic!("claim {c}"),
        }
    }

    #[test]
    fn host_path_data_pins_and_nfs_needs_fencing() {
        let sg = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "data": {"hostPath": {"node": "pi4-1", "path": "/srv/z2m"}}}),
        );
        let data = known(&sg);
        assert!(matches!(
            holds(&sg, data.as_ref(), &[])[0],
            Holds::NodeLocalVolume { .. }
        ));
        let r = readiness(&sg, data.as_ref(), false).unwrap();
        assert_eq!((r.possible, r.reason), (false, reasons::NODE_LOCAL_STORAGE));
        assert!(r.message.contains("/srv/z2m"), "{}", r.message);

        let sg = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "data": {"nfs": {"server": "nas", "path": "/z2m"}}}),
        );
        let data = known(&sg);
        assert!(matches!(
            holds(&sg, data.as_ref(), &[])[0],
            Holds::SharedStorage {
                attached_to: None,
                ..
            }
        ));
        let r = readiness(&sg, data.as_ref(), false).unwrap();
        assert_eq!(r.reason, reasons::SHARED_STORAGE_NEEDS_FENCING);

        // The default: a claim the operator makes, judged once read.
        let sg = gateway("z", json!({"preset": "Zigbee2MQTT"}));
        assert!(matches!(spec_storage(&sg), Spec::Claim(c) if c == "z-data"));
        assert!(holds(&sg, None, &[]).is_empty());
        assert_eq!(readiness(&sg, None, false), None);
    }

    #[test]
    fn a_local_path_claim_does_not_fail_over_and_an_attached_one_does() {
        let sg = gateway("z", json!({"preset": "Zigbee2MQTT"}));
        let local = (
            "the data's claim z-data".to_owned(),
            Storage::NodeLocal {
                why: "uses StorageClass local-path (rancher.io/local-path, the cluster's default class)".into(),
            },
        );
        let r = readiness(&sg, Some(&local), false).unwrap();
        assert_eq!((r.possible, r.reason), (false, reasons::NODE_LOCAL_STORAGE));
        assert!(r.message.contains("storageClassName"), "{}", r.message);
        assert!(matches!(
            holds(&sg, Some(&local), &[])[0],
            Holds::NodeLocalVolume { .. }
        ));

        let block = (
            "the data's claim z-data".to_owned(),
            Storage::SingleAttach {
                why: "is on longhorn".into(),
            },
        );
        let r = readiness(&sg, Some(&block), false).unwrap();
        assert_eq!((r.possible, r.reason), (true, reasons::ATTACHMENT_ENFORCED));
        assert!(holds(&sg, Some(&block), &[]).is_empty());

        // Manual mode says so; node-local data is the bigger news.
        let manual = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "failover": {"mode": "Manual"}}),
        );
        let r = readiness(&manual, Some(&block), false).unwrap();
        assert_eq!(r.reason, reasons::FAILOVER_NOT_AUTOMATIC);
        let r = readiness(&manual, Some(&local), false).unwrap();
        assert_eq!(r.reason, reasons::NODE_LOCAL_STORAGE);

        // A stick's gateway follows the stick: only node-local data is reported.
        let stick = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "radio": {"usbDevicePin": {"name": "stick"}}}),
        );
        assert_eq!(readiness(&stick, Some(&block), false), None);
        assert!(readiness(&stick, Some(&local), false).is_some());
    }

    #[test]
    fn sticks_and_external_gateways_are_left_alone() {
        assert!(applies(&gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "radio": {"networkAddress": "tcp://10.0.0.5:6638"}})
        )));
        assert!(!applies(&gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "radio": {"usbDevicePin": {"name": "stick"}}})
        )));
        assert!(!applies(&gateway(
            "z",
            json!({"preset": "ESPHome", "external": true, "topicPrefix": "x"})
        )));
    }
}
