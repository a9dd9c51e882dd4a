//! The gateway's Deployment: one replica, `Recreate` (two zigbee2mqtt
//! instances on one radio or one state directory corrupt both), restricted
//! security, the radio from its UsbDevicePin or its network address, and
//! tolerations that let the taint manager evict it after the failover grace.

use std::collections::BTreeMap;

use homelab_api::SensorGateway;
use homelab_api::sensorgateway::GatewayPreset;
use homelab_api::storage::StateVolume;
use homelab_kit::FieldManager;
use homelab_kit::device_pin::PodAdditions;
use homelab_kit::single_replica;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, HostPathVolumeSource,
    KeyToPath, NFSVolumeSource, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PreferredSchedulingTerm, Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource,
    SecurityContext, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::env::{self, CA_FILE, CLIENT_CERT_DIR};
use super::{Inputs, names, zwave};
use crate::validate::Plan;

/// Name of the gateway's container.
pub const CONTAINER: &str = "gateway";
/// The unprivileged user the gateway runs as.
const RUN_AS: i64 = 1000;
/// `dialout`, the group that owns serial devices on Debian-based images.
const DIALOUT_GID: i64 = 20;
const DATA_VOLUME: &str = "data";

/// The Deployment of `sg` (not called for external gateways).
///
/// # Errors
/// [`homelab_kit::Error::OwnerNotPersisted`].
pub fn deployment(
    sg: &SensorGateway,
    plan: &Plan,
    inputs: Inputs<'_>,
    manager: &FieldManager,
) -> Result<Deployment, homelab_kit::Error> {
    let name = sg.name_any();
    let pin = inputs.pin.map(PodAdditions::for_pin);
    let radio = match (&pin, sg.spec.radio.as_ref()) {
        (Some(p), _) => Some(p.device_path.clone()),
        (None, Some(r)) => r.network_address.clone(),
        (None, None) => None,
    };
    let (mut volumes, mounts) = volumes(sg);
    let mut pod = PodSpec {
        affinity: affinity(sg, inputs.avoid_node),
        tolerations: homelab_kit::failover::pod_tolerations(
            &sg.spec.failover,
            &sg.spec.tolerations,
        ),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            fs_group_change_policy: Some("OnRootMismatch".to_owned()),
            supplemental_groups: pin.as_ref().map(|_| vec![DIALOUT_GID]),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        }),
        // One variable per Service in the namespace is noise in a gateway's
        // environment, and zigbee2mqtt reads ZIGBEE2MQTT_* as settings.
        enable_service_links: Some(false),
        automount_service_account_token: Some(false),
        init_containers: init_containers(sg, plan, radio.as_deref(), &mounts),
        containers: vec![container(sg, plan, radio.as_deref(), mounts)],
        volumes: None,
        ..PodSpec::default()
    };
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    pod.volumes = (!volumes.is_empty()).then_some(volumes);
    if let Some(p) = &pin {
        p.apply(&mut pod, CONTAINER);
    }
    single_replica::deployment(
        sg,
        manager,
        names::labels(&name, plan.preset.app, manager.name()),
        names::selector_labels(&name),
        pod,
    )
}

/// zwave-js-ui's settings merge, which needs the same store and TLS files as
/// the gateway itself.
fn init_containers(
    sg: &SensorGateway,
    plan: &Plan,
    radio: Option<&str>,
    mounts: &[VolumeMount],
) -> Option<Vec<Container>> {
    (sg.spec.preset == GatewayPreset::ZwaveJsUi).then(|| {
        vec![zwave::settings_container(
            sg,
            plan,
            radio,
            plan.image.clone(),
            resources(sg),
            Some(security_context()),
            (!mounts.is_empty()).then(|| mounts.to_vec()),
        )]
    })
}

fn resources(sg: &SensorGateway) -> ResourceRequirements {
    sg.spec.resources.clone().unwrap_or_else(default_resources)
}

fn security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

fn container(
    sg: &SensorGateway,
    plan: &Plan,
    radio: Option<&str>,
    volume_mounts: Vec<VolumeMount>,
) -> Container {
    let port = plan.preset.port;
    let probe = port.map(|p| Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(p),
            host: None,
        }),
        period_seconds: Some(10),
        failure_threshold: Some(3),
        ..Probe::default()
    });
    Container {
        name: CONTAINER.to_owned(),
        image: plan.image.clone(),
        env: Some(env::env(sg, radio)),
        ports: port.map(|p| {
            let tcp = |name: &str, container_port: i32| ContainerPort {
                name: Some(name.to_owned()),
                container_port,
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            };
            std::iter::once(tcp(super::service::PORT_NAME, p))
                .chain(plan.preset.extra_ports.iter().map(|(n, p)| tcp(n, *p)))
                .collect()
        }),
        readiness_probe: probe,
        resources: Some(resources(sg)),
        security_context: Some(security_context()),
        volume_mounts: (!volume_mounts.is_empty()).then_some(volume_mounts),
        ..Container::default()
    }
}

/// Enough for zigbee2mqtt with a few dozen devices on a Raspberry Pi.
fn default_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_owned());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), q("20m")),
            ("memory".to_owned(), q("128Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), q("512Mi"))])),
        ..ResourceRequirements::default()
    }
}

/// The data volume and the broker's TLS material.
fn volumes(sg: &SensorGateway) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let data = data_volume(sg, &sg.spec.data).or_else(|| {
        // zwave-js-ui's settings are written by one container and read by
        // another: without a data volume they share a scratch one.
        (sg.spec.preset == GatewayPreset::ZwaveJsUi).then(|| Volume {
            name: DATA_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        })
    });
    if let Some(v) = data {
        volumes.push(v);
        mounts.push(mount(
            DATA_VOLUME,
            crate::preset::preset(sg.spec.preset).data_path,
        ));
    }
    if let Some(tls) = &sg.spec.mqtt.tls {
        if let Some(ca) = &tls.ca_secret_ref {
            volumes.push(secret_volume(
                "mqtt-ca",
                &ca.name,
                Some((&ca.key, "ca.crt")),
            ));
            mounts.push(mount("mqtt-ca", CA_FILE.trim_end_matches("/ca.crt")));
        }
        if let Some(name) = &tls.client_certificate_secret_name {
            volumes.push(secret_volume("mqtt-client", name, None));
            mounts.push(mount("mqtt-client", CLIENT_CERT_DIR));
        }
    }
    (volumes, mounts)
}

fn data_volume(sg: &SensorGateway, data: &StateVolume) -> Option<Volume> {
    let mut v = Volume {
        name: DATA_VOLUME.to_owned(),
        ..Volume::default()
    };
    if let Some(claim) = &data.existing_claim {
        v.persistent_volume_claim = Some(claim_source(claim.clone()));
    } else if data.volume_claim.is_some() {
        v.persistent_volume_claim = Some(claim_source(names::data_claim(&sg.name_any())));
    } else if let Some(h) = &data.host_path {
        v.host_path = Some(HostPathVolumeSource {
            path: h.path.clone(),
            type_: Some("DirectoryOrCreate".to_owned()),
        });
    } else if let Some(n) = &data.nfs {
        v.nfs = Some(NFSVolumeSource {
            server: n.server.clone(),
            path: n.path.clone(),
            read_only: None,
        });
    } else {
        return None;
    }
    Some(v)
}

fn claim_source(claim_name: String) -> PersistentVolumeClaimVolumeSource {
    PersistentVolumeClaimVolumeSource {
        claim_name,
        read_only: None,
    }
}

fn secret_volume(name: &str, secret: &str, item: Option<(&str, &str)>) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items: item.map(|(key, path)| {
                vec![KeyToPath {
                    key: key.to_owned(),
                    path: path.to_owned(),
                    mode: None,
                }]
            }),
            default_mode: Some(0o440),
            optional: Some(false),
        }),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: (name != DATA_VOLUME).then_some(true),
        ..VolumeMount::default()
    }
}

/// Required: the host-path node, or the allowed nodes; never the avoided node.
/// Preferred: `failover.preferredNodes`, first one strongest.
fn affinity(sg: &SensorGateway, avoid: Option<&str>) -> Option<Affinity> {
    let policy = &sg.spec.failover;
    let nodes: Vec<String> = match sg.spec.data.pinned_node() {
        Some(node) => vec![node.to_owned()],
        None => policy.allowed_nodes.clone(),
    };
    let field = |operator: &str, node: &str| NodeSelectorRequirement {
        key: "metadata.name".to_owned(),
        operator: operator.to_owned(),
        values: Some(vec![node.to_owned()]),
    };
    // The API server allows one value per metadata.name requirement: one term
    // (terms are ORed) per allowed node.
    let required: Vec<NodeSelectorTerm> = if nodes.is_empty() {
        avoid
            .map(|n| NodeSelectorTerm {
                match_expressions: None,
                match_fields: Some(vec![field("NotIn", n)]),
            })
            .into_iter()
            .collect()
    } else {
        // Avoiding the only allowed node would lift the restriction altogether.
        let others = nodes.iter().any(|n| Some(n.as_str()) != avoid);
        nodes
            .iter()
            .filter(|n| !others || Some(n.as_str()) != avoid)
            .map(|n| NodeSelectorTerm {
                match_expressions: None,
                match_fields: Some(vec![field("In", n)]),
            })
            .collect()
    };
    let count = i32::try_from(policy.preferred_nodes.len()).unwrap_or(i32::MAX);
    let preferred: Vec<PreferredSchedulingTerm> = policy
        .preferred_nodes
        .iter()
        .zip(0..)
        .map(|(n, i)| PreferredSchedulingTerm {
            weight: (100 - i * 100 / count.max(1)).max(1),
            preference: NodeSelectorTerm {
                match_expressions: None,
                match_fields: Some(vec![field("In", n)]),
            },
        })
        .collect();
    if required.is_empty() && preferred.is_empty() {
        return None;
    }
    Some(Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: (!required.is_empty()).then_some(
                NodeSelector {
                    node_selector_terms: required,
                },
            ),
            preferred_during_scheduling_ignored_during_execution: (!preferred.is_empty())
                .then_some(preferred),
        }),
        ..Affinity::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::Inputs;
    use crate::fixtures::gateway;
    use crate::validate::validate;
    use serde_json::{Value, json};

    fn build(spec: Value, avoid: Option<&str>) -> Value {
        let sg = gateway("z", spec);
        let plan = validate(&sg).unwrap();
        let inputs = Inputs {
            pin: None,
            avoid_node: avoid,
        };
        let d = deployment(
            &sg,
            &plan,
            inputs,
            &FieldManager::new("sensorgateway-controller"),
        )
        .unwrap();
        serde_json::to_value(d).unwrap()
    }

    #[test]
    fn one_replica_recreate_restricted() {
        let d = build(
            json!({"preset": "Zigbee2MQTT", "radio": {"networkAddress": "tcp://192.168.1.40:6638", "adapter": "zstack"}}),
            None,
        );
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let c = &pod["containers"][0];
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
        assert_eq!(c["volumeMounts"][0]["mountPath"], "/app/data");
        assert_eq!(
            pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "z-data"
        );
        assert_eq!(pod["tolerations"][0]["tolerationSeconds"], 20);
        assert!(pod.get("affinity").is_none());
    }

    #[test]
    fn an_avoided_node_is_excluded() {
        let d = build(json!({"preset": "Zigbee2MQTT"}), Some("pi4-1"));
        let term = &d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0];
        assert_eq!(term["matchFields"][0]["operator"], "NotIn");
        assert_eq!(term["matchFields"][0]["values"][0], "pi4-1");
    }

    #[test]
    fn allowed_nodes_minus_the_avoided_one() {
        let d = build(
            json!({"preset": "Zigbee2MQTT", "failover": {"allowedNodes": ["pi4-1", "pi4-2"], "preferredNodes": ["pi4-2"]}}),
            Some("pi4-1"),
        );
        let aff = &d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"];
        let terms = aff["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            .as_array()
            .unwrap();
        assert_eq!(terms.len(), 1);
        assert_eq!(terms[0]["matchFields"][0]["values"][0], "pi4-2");
        assert_eq!(
            aff["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"],
            100
        );
    }

    #[test]
    fn tls_material_is_mounted_read_only() {
        let d = build(
            json!({"preset": "Zigbee2MQTT", "mqtt": {"url": "mqtts://b:8883", "tls": {"caSecretRef": {"name": "ca", "key": "root.pem"}, "clientCertificateSecretName": "client"}}}),
            None,
        );
        let pod = &d["spec"]["template"]["spec"];
        let names: Vec<&str> = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["data", "mqtt-ca", "mqtt-client"]);
        assert_eq!(pod["volumes"][1]["secret"]["items"][0]["path"], "ca.crt");
        let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
        assert!(mounts.iter().skip(1).all(|m| m["readOnly"] == true));
    }
}
