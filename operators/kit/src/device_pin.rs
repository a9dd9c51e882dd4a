//! Consuming a UsbDevicePin: what a controller adds to its workload's pod spec so the
//! pod runs where the device is and gets it inside its container.
//!
//! ```no_run
//! # async fn f(client: kube::Client, spec: &mut k8s_openapi::api::core::v1::PodSpec) {
//! use homelab_api::UsbDevicePinRef;
//! use homelab_kit::device_pin;
//! let reference = UsbDevicePinRef { name: "zwave".into() };
//! match device_pin::resolve(&client, "home", &reference).await {
//!     Ok(pin) => device_pin::PodAdditions::for_pin(&pin).apply(spec, "zwave-js-ui"),
//!     Err(err) => { let _outcome = err.outcome(); /* Stalled, naming the pin */ }
//! }
//! # }
//! ```
//!
//! With `access: DevicePlugin` (the default) the pod requests one unit of the pin's
//! extended resource: the scheduler places it only on a node whose agent advertises
//! the device, only one pod holds it, and the kubelet hands the device node to the
//! container at the pin's `containerPath`, without privileges. With the opt-in
//! `PrivilegedHostPath` the pod instead requires the node label the controller puts
//! on nodes holding the device, and mounts the host's /dev into a privileged
//! container.

use std::collections::BTreeMap;

use homelab_api::conditions::reasons;
use homelab_api::usbdevicepin::DeviceAccess;
use homelab_api::{UsbDevicePin, UsbDevicePinRef};
use k8s_openapi::api::core::v1::{
    Affinity, Container, EnvVar, HostPathVolumeSource, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, PodSpec, ResourceRequirements, SecurityContext,
    Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{Api, Client, ResourceExt};

use homelab_api::conditions::Outcome;

/// Prefix of the environment variable that tells a container where its device is.
pub const ENV_PREFIX: &str = "HOMELAB_DEVICE_";
/// Node taints a device consumer tolerates for `failover.unreachableAfter`, so a
/// short blip does not evict it while the device is still there.
pub const UNREACHABLE_TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];
/// Name of the host /dev volume in `PrivilegedHostPath` mode.
const HOST_DEV_VOLUME: &str = "homelab-host-dev";

/// The environment variable holding the device path of pin `pin_name`:
/// `HOMELAB_DEVICE_<NAME>` with the name upper-cased and `-`/`.` as `_`
/// (`zwave-stick` → `HOMELAB_DEVICE_ZWAVE_STICK`).
#[must_use]
pub fn env_name(pin_name: &str) -> String {
    let suffix: String = pin_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{ENV_PREFIX}{suffix}")
}

/// The order in which pins claim a device two of them match (one by vendor and
/// product, another also by serial), and a resource name two namespaces' pins share:
/// oldest first, then namespace, then name. The node agent hands the device to the
/// first; the controller marks the others `Conflict`.
#[must_use]
pub fn claim_order(a: &UsbDevicePin, b: &UsbDevicePin) -> std::cmp::Ordering {
    let key = |p: &UsbDevicePin| {
        (
            p.creation_timestamp().map(|t| t.0),
            p.namespace().unwrap_or_default(),
            p.name_any(),
        )
    };
    key(a).cmp(&key(b))
}

/// Why a pin reference cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DevicePinError {
    /// No UsbDevicePin of that name in the namespace.
    #[error("UsbDevicePin {name} not found in namespace {namespace}")]
    NotFound {
        /// The namespace looked in.
        namespace: String,
        /// The pin's name.
        name: String,
    },
    /// The pin could not be read.
    #[error("could not read UsbDevicePin {namespace}/{name}")]
    Read {
        /// The namespace.
        namespace: String,
        /// The pin's name.
        name: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
}

impl DevicePinError {
    /// What the consumer's status should say: `Stalled` with a message naming the
    /// pin for a missing one (a person must create it or fix the reference);
    /// `Progressing` for a read that may work next time.
    #[must_use]
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::NotFound { namespace, name } => Outcome::stalled(
                reasons::REFERENCE_NOT_FOUND,
                format!(
                    "UsbDevicePin {name} not found in namespace {namespace}: create it, or fix usbDevicePin.name"
                ),
            ),
            Self::Read { .. } => {
                Outcome::progressing(reasons::PROGRESSING, crate::error::report(self))
            }
        }
    }

    /// A fixed metric label per variant.
    #[must_use]
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "device_pin_not_found",
            Self::Read { source, .. } => crate::error::kube_error_label(source),
        }
    }
}

/// Reads the pin `reference` names in `namespace`.
///
/// # Errors
/// [`DevicePinError::NotFound`] when it does not exist, [`DevicePinError::Read`] on
/// any other failure.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    reference: &UsbDevicePinRef,
) -> Result<UsbDevicePin, DevicePinError> {
    let api: Api<UsbDevicePin> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(&reference.name).await {
        Ok(Some(pin)) => Ok(pin),
        Ok(None) => Err(DevicePinError::NotFound {
            namespace: namespace.to_owned(),
            name: reference.name.clone(),
        }),
        Err(source) => Err(DevicePinError::Read {
            namespace: namespace.to_owned(),
            name: reference.name.clone(),
            source,
        }),
    }
}

/// What a pod spec needs to consume a pin.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodAdditions {
    /// Limits for the consuming container (one unit of the pin's resource).
    pub limits: BTreeMap<String, Quantity>,
    /// Environment of the consuming container.
    pub env: Vec<EnvVar>,
    /// Tolerations of the pod.
    pub tolerations: Vec<Toleration>,
    /// Required node affinity term: a node the pin's controller labelled as
    /// holding the device. With the device plugin too: when a stick moves, the
    /// node it left still advertises the resource until its kubelet's next
    /// status update, and a replacement pod placed there is refused by that
    /// kubelet (`UnexpectedAdmissionError`) over and over.
    pub node_selector_term: Option<NodeSelectorTerm>,
    /// Volumes of the pod (PrivilegedHostPath only).
    pub volumes: Vec<Volume>,
    /// Mounts of the consuming container (PrivilegedHostPath only).
    pub volume_mounts: Vec<VolumeMount>,
    /// Whether the consuming container must be privileged (PrivilegedHostPath only).
    pub privileged: bool,
    /// The device's path inside the container.
    pub device_path: String,
}

impl PodAdditions {
    /// The additions for a consumer of `pin`.
    #[must_use]
    pub fn for_pin(pin: &UsbDevicePin) -> Self {
        let tolerate_for = pin
            .spec
            .failover
            .unreachable_after
            .to_std()
            .ok()
            .and_then(|d| i64::try_from(d.as_secs()).ok());
        let tolerations = UNREACHABLE_TAINTS
            .iter()
            .map(|key| Toleration {
                key: Some((*key).to_owned()),
                operator: Some("Exists".to_owned()),
                effect: Some("NoExecute".to_owned()),
                toleration_seconds: tolerate_for,
                ..Toleration::default()
            })
            .collect();
        let mut additions = Self {
            tolerations,
            node_selector_term: Some(NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: pin.resource_name(),
                    operator: "Exists".to_owned(),
                    values: None,
                }]),
                match_fields: None,
            }),
            ..Self::default()
        };
        match pin.spec.access {
            DeviceAccess::DevicePlugin => {
                additions.device_path = pin.container_path();
                additions
                    .limits
                    .insert(pin.resource_name(), Quantity("1".to_owned()));
            }
            DeviceAccess::PrivilegedHostPath => {
                // The container sees the host's /dev: the stable by-id path is the one
                // to open, as reported; the pin's containerPath until it is known.
                additions.device_path = pin
                    .status
                    .as_ref()
                    .and_then(|s| s.by_id_path.clone())
                    .unwrap_or_else(|| pin.container_path());
                additions.volumes.push(Volume {
                    name: HOST_DEV_VOLUME.to_owned(),
                    host_path: Some(HostPathVolumeSource {
                        path: "/dev".to_owned(),
                        type_: Some("Directory".to_owned()),
                    }),
                    ..Volume::default()
                });
                additions.volume_mounts.push(VolumeMount {
                    name: HOST_DEV_VOLUME.to_owned(),
                    mount_path: "/dev".to_owned(),
                    ..VolumeMount::default()
                });
                additions.privileged = true;
            }
        }
        additions.env.push(EnvVar {
            name: env_name(&pin.name_any()),
            value: Some(additions.device_path.clone()),
            value_from: None,
        });
        additions
    }

    /// Adds everything to `spec`, the container-level parts to the container named
    /// `container` (nothing happens to containers of other names). Idempotent:
    /// applying twice adds nothing more.
    pub fn apply(&self, spec: &mut PodSpec, container: &str) {
        if let Some(c) = spec.containers.iter_mut().find(|c| c.name == container) {
            self.apply_to_container(c);
        }
        let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
        for t in &self.tolerations {
            tolerations.retain(|have| have.key != t.key || have.effect != t.effect);
            tolerations.push(t.clone());
        }
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        for v in &self.volumes {
            if !volumes.iter().any(|have| have.name == v.name) {
                volumes.push(v.clone());
            }
        }
        if spec.volumes.as_ref().is_some_and(Vec::is_empty) {
            spec.volumes = None;
        }
        if let Some(term) = &self.node_selector_term {
            add_required_term(spec, term);
        }
    }

    fn apply_to_container(&self, c: &mut Container) {
        let resources = c
            .resources
            .get_or_insert_with(ResourceRequirements::default);
        for (name, quantity) in &self.limits {
            resources
                .limits
                .get_or_insert_with(BTreeMap::new)
                .insert(name.clone(), quantity.clone());
            // Extended resources cannot be overcommitted: request equals limit.
            resources
                .requests
                .get_or_insert_with(BTreeMap::new)
                .insert(name.clone(), quantity.clone());
        }
        let env = c.env.get_or_insert_with(Vec::new);
        for e in &self.env {
            env.retain(|have| have.name != e.name);
            env.push(e.clone());
        }
        for m in &self.volume_mounts {
            let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
            if !mounts.iter().any(|have| have.name == m.name) {
                mounts.push(m.clone());
            }
        }
        if self.privileged {
            c.security_context
                .get_or_insert_with(SecurityContext::default)
                .privileged = Some(true);
        }
    }
}

/// ANDs `term` into every required node-affinity term (or makes it the only one).
fn add_required_term(spec: &mut PodSpec, term: &NodeSelectorTerm) {
    let required = spec
        .affinity
        .get_or_insert_with(Affinity::default)
        .node_affinity
        .get_or_insert_with(NodeAffinity::default)
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(|| NodeSelector {
            node_selector_terms: Vec::new(),
        });
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    let wanted = term.match_expressions.clone().unwrap_or_default();
    for existing in &mut required.node_selector_terms {
        let exprs = existing.match_expressions.get_or_insert_with(Vec::new);
        for w in &wanted {
            if !exprs.contains(w) {
                exprs.push(w.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use homelab_api::conditions::Outcome;

    fn pin(spec: serde_json::Value) -> UsbDevicePin {
        let mut pin = UsbDevicePin::new("zwave-stick", serde_json::from_value(spec).unwrap());
        pin.metadata.namespace = Some("home".into());
        pin
    }

    fn pod() -> PodSpec {
        serde_json::from_value(serde_json::json!({
            "containers": [
                {"name": "zwave-js-ui", "image": "zwavejs/zwave-js-ui:9"},
                {"name": "sidecar", "image": "busybox"}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn env_names_are_shell_safe() {
        assert_eq!(env_name("zwave-stick"), "HOMELAB_DEVICE_ZWAVE_STICK");
        assert_eq!(env_name("sonoff.v2"), "HOMELAB_DEVICE_SONOFF_V2");
    }

    /// The pod's required node affinity terms.
    fn required_terms(spec: &PodSpec) -> Vec<NodeSelectorTerm> {
        spec.affinity
            .clone()
            .and_then(|a| a.node_affinity)
            .and_then(|n| n.required_during_scheduling_ignored_during_execution)
            .map(|r| r.node_selector_terms)
            .unwrap_or_default()
    }

    #[test]
    fn device_plugin_consumer_requests_one_unit() {
        let pin = pin(
            serde_json::json!({"vendorId": "0658", "productId": "0200", "containerPath": "/dev/zwave"}),
        );
        let mut spec = pod();
        let additions = PodAdditions::for_pin(&pin);
        additions.apply(&mut spec, "zwave-js-ui");
        additions.apply(&mut spec, "zwave-js-ui");
        let c = &spec.containers[0];
        let resources = c.resources.as_ref().unwrap();
        let key = "home.devices.homelab.home.arpa/zwave-stick";
        assert_eq!(resources.limits.as_ref().unwrap()[key].0, "1");
        assert_eq!(resources.requests.as_ref().unwrap()[key].0, "1");
        let env = c.env.as_ref().unwrap();
        assert_eq!(env.len(), 1);
        assert_eq!(env[0].name, "HOMELAB_DEVICE_ZWAVE_STICK");
        assert_eq!(env[0].value.as_deref(), Some("/dev/zwave"));
        assert!(c.security_context.is_none(), "no privileges by default");
        assert!(spec.containers[1].resources.is_none());
        let tolerations = spec.tolerations.clone().unwrap();
        assert_eq!(tolerations.len(), 2);
        assert!(tolerations.iter().all(|t| t.toleration_seconds == Some(20)));
        assert!(spec.volumes.is_none());
        // Only where the pin's controller labelled the device's node, and once
        // however often applied.
        let terms = required_terms(&spec);
        assert_eq!(terms.len(), 1);
        let requirements = terms[0].match_expressions.as_ref().unwrap();
        assert_eq!(requirements.len(), 1);
        assert_eq!(
            (
                requirements[0].key.as_str(),
                requirements[0].operator.as_str()
            ),
            (key, "Exists")
        );
    }

    #[test]
    fn privileged_host_path_is_opt_in_and_pins_by_label() {
        let mut pin = pin(
            serde_json::json!({"vendorId": "10c4", "productId": "ea60", "access": "PrivilegedHostPath"}),
        );
        pin.status = Some(homelab_api::UsbDevicePinStatus {
            by_id_path: Some("/dev/serial/by-id/usb-ITead-if00-port0".into()),
            ..Default::default()
        });
        let mut spec = pod();
        PodAdditions::for_pin(&pin).apply(&mut spec, "zwave-js-ui");
        let c = &spec.containers[0];
        assert_eq!(c.security_context.as_ref().unwrap().privileged, Some(true));
        assert_eq!(
            c.env.as_ref().unwrap()[0].value.as_deref(),
            Some("/dev/serial/by-id/usb-ITead-if00-port0")
        );
        assert!(c.resources.as_ref().unwrap().limits.is_none());
        let terms = required_terms(&spec);
        assert_eq!(
            terms[0].match_expressions.as_ref().unwrap()[0].key,
            "home.devices.homelab.home.arpa/zwave-stick"
        );
    }

    #[test]
    fn a_missing_pin_stalls_naming_it() {
        let err = DevicePinError::NotFound {
            namespace: "home".into(),
            name: "zwave".into(),
        };
        match err.outcome() {
            Outcome::Stalled { reason, message } => {
                assert_eq!(reason, "ReferenceNotFound");
                assert!(
                    message.contains("UsbDevicePin zwave not found in namespace home"),
                    "{message}"
                );
            }
            other => panic!("expected Stalled, got {other:?}"),
        }
    }
}
