//! Builders of plain values for unit tests.

use homelab_api::{MediaServer, MediaServerSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeSpec, NodeStatus, PersistentVolumeClaim, PersistentVolumeClaimSpec, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::ObjectMeta;

use crate::placement::INTEL_GPU;

/// The host paths the unit tests' administrator allows.
pub fn allowed() -> homelab_kit::settings::AllowedHostPaths {
    homelab_kit::settings::AllowedHostPaths::parse("/mnt,/srv").unwrap_or_default()
}

/// A node of architecture `arch` with extra allocatable resources.
pub fn node(name: &str, arch: &str, extra: &[(&str, &str)]) -> Node {
    let mut allocatable: std::collections::BTreeMap<String, Quantity> = [
        ("cpu".to_owned(), Quantity("4".into())),
        ("memory".to_owned(), Quantity("8Gi".into())),
    ]
    .into();
    for (k, v) in extra {
        allocatable.insert((*k).to_owned(), Quantity((*v).to_owned()));
    }
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("kubernetes.io/arch".to_owned(), arch.to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(allocatable),
            ..NodeStatus::default()
        }),
    }
}

/// The e2e home cluster: a tainted control plane, two Pis, the iGPU mini PC
/// and a mini PC without a GPU plugin.
pub fn homelab() -> Vec<Node> {
    let mut cp = node("cp-1", "amd64", &[]);
    cp.spec = Some(NodeSpec {
        taints: Some(vec![Taint {
            key: "node-role.kubernetes.io/control-plane".into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        }]),
        ..NodeSpec::default()
    });
    vec![
        cp,
        node("pi4-1", "arm64", &[]),
        node("pi4-2", "arm64", &[]),
        node("n100-1", "amd64", &[(INTEL_GPU, "1")]),
        node("celeron-1", "amd64", &[]),
    ]
}

/// A stored MediaServer `jellyfin` in namespace `media` with this spec.
pub fn media_server(spec: serde_json::Value) -> MediaServer {
    let spec: MediaServerSpec = match serde_json::from_value(spec) {
        Ok(spec) => spec,
        Err(e) => panic!("fixture spec does not parse: {e}"),
    };
    let mut ms = MediaServer::new("jellyfin", spec);
    ms.metadata.namespace = Some("media".into());
    ms.metadata.uid = Some("uid-1".into());
    ms.metadata.generation = Some(1);
    ms
}

/// A claim with one access mode.
pub fn claim(name: &str, mode: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("media".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![mode.into()]),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}
