//! Node-loss failover for a gateway, through the kit: what its pod holds and
//! which nodes could run it, then [`homelab_kit::failover::workload::handle`]
//! decides and acts.
//!
//! A gateway with a USB stick is left to the UsbDevicePin controller, which
//! moves a device's consumers to wherever the stick is reported. A gateway on a
//! network coordinator (or without a radio) can run on any eligible node.

use homelab_api::ConditionedStatus;
use homelab_api::SensorGateway;
use homelab_api::conditions::types;
use homelab_api::failover::FailoverStatus;
use homelab_kit::Context;
use homelab_kit::failover::Holds;
use homelab_kit::failover::tolerations::NODE_LOST_TAINTS;
use homelab_kit::failover::workload::{self, Actor, Outcome, Workload};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;

use crate::CONTROLLER_NAME;
use crate::controller::State;
use crate::error::Error;

/// Handles a lost node under the gateway's pods.
///
/// # Errors
/// When marking a node or deleting a pod fails.
pub async fn handle(
    sg: &SensorGateway,
    ctx: &Context<State>,
    pods: &[Pod],
    nodes: &[Node],
) -> Result<Outcome, Error> {
    let status = sg.status.as_ref();
    let eligible = eligible(sg, nodes);
    let holds = holds(sg);
    workload::handle(
        Workload {
            object: sg,
            policy: &sg.spec.failover,
            last_failover: status.and_then(|s| s.last_failover()),
            shown_block: status
                .and_then(|s| s.condition(types::FAILOVER_READY))
                .map(|c| c.message.as_str()),
            pods,
            nodes,
            eligible: &eligible,
            holds: &holds,
        },
        Actor {
            client: &ctx.client,
            events: &ctx.events,
            metrics: &ctx.state.failover,
            controller: CONTROLLER_NAME,
            manager: &ctx.manager,
            fencing_allowed: ctx.fencing_allowed,
        },
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

/// What a second copy of the gateway would share with the first.
fn holds(sg: &SensorGateway) -> Vec<Holds> {
    let data = &sg.spec.data;
    let mut holds = Vec::new();
    if let Some(h) = &data.host_path {
        holds.push(Holds::NodeLocalVolume {
            what: format!("its data in {} on {}", h.path, h.node),
        });
    }
    if let Some(nfs) = &data.nfs {
        holds.push(Holds::SharedStorage {
            what: format!(
                "its data (network key, coordinator backup) on NFS {}:{}",
                nfs.server, nfs.path
            ),
        });
    }
    holds
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

    #[test]
    fn host_path_data_pins_and_nfs_needs_fencing() {
        let sg = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "data": {"hostPath": {"node": "pi4-1", "path": "/srv/z2m"}}}),
        );
        assert!(matches!(holds(&sg)[0], Holds::NodeLocalVolume { .. }));
        let sg = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "data": {"nfs": {"server": "nas", "path": "/z2m"}}}),
        );
        assert!(matches!(holds(&sg)[0], Holds::SharedStorage { .. }));
        let sg = gateway("z", json!({"preset": "Zigbee2MQTT"}));
        assert!(holds(&sg).is_empty());
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
