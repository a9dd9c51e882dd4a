//! UsbDevicePin: a USB device (a Zigbee or Z-Wave stick) that is plugged into some node,
//! made a first-class object the cluster follows.
//!
//! Node agents report where a matching device is present into `status.presence`, each
//! node writing only its own entry with its own server-side-apply field manager (the
//! list is a map keyed by `node`, so entries merge). The controller turns that into
//! placement for the pin's consumers: an extended resource
//! `<namespace>.devices.homelab.home.arpa/<pin>` advertised by the agent's device
//! plugin (so the real scheduler places a consumer only where the stick is, and only
//! one consumer holds it) and a node label of the same name. The namespace is part of
//! the name because extended resources are cluster-wide: the chart's admission policy
//! lets a pod request only its own namespace's devices.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::impl_conditioned_status;
use crate::failover::{FailoverPolicy, FailoverRecord, impl_failover};
use crate::formats::{PRINTABLE_WORD_RULE, dot_segment_pattern};

/// The domain of a pin's extended resource and node label, after the pin's namespace:
/// `<namespace>.devices.homelab.home.arpa/<pin>`.
pub const RESOURCE_DOMAIN: &str = "devices.homelab.home.arpa";

const HEX4_RULE: &str = "self.matches('^[0-9a-fA-F]{4}$')";

/// A clean absolute path under /dev: no `.` or `..` segment (which would name a file
/// outside /dev), no empty segment, no trailing slash.
const CONTAINER_PATH_RULE: &str = concat!(
    "self.matches('^/dev(/[A-Za-z0-9._-]+)+$') && !self.matches('",
    dot_segment_pattern!(),
    "')"
);

/// A USB device (vendor and product id, optionally serial) plugged into some node. Its
/// consumers run where it is, and follow it when it moves.
// Each printcolumn(...) repeats keys such as `type_ = "string"`, which clippy takes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "homelab.home.arpa",
    version = "v1alpha1",
    kind = "UsbDevicePin",
    namespaced,
    status = "UsbDevicePinStatus",
    derive = "PartialEq",
    shortname = "usbpin",
    category = "homelab",
    doc = "A USB device (vendor and product id, optionally serial) plugged into some node. Node agents report where it is; its consumers are placed there through an extended resource, without privileged pods, and follow the device when it moves.",
    validation = Rule::new("self.metadata.name.size() <= 63").message("a UsbDevicePin name becomes the extended resource <namespace>.devices.homelab.home.arpa/<name> and must be at most 63 characters"),
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#, description = "Whether the device is present and usable"),
    printcolumn(name = "Node", type_ = "string", json_path = ".status.currentNode", description = "Node the device is plugged into"),
    printcolumn(name = "Holder", type_ = "string", json_path = ".status.holderPod", description = "Pod that holds the device"),
    printcolumn(name = "Since", type_ = "date", json_path = ".status.since", description = "Since when the device is on that node"),
    printcolumn(name = "Vendor", type_ = "string", json_path = ".spec.vendorId", priority = 1, description = "USB vendor id"),
    printcolumn(name = "Product", type_ = "string", json_path = ".spec.productId", priority = 1, description = "USB product id"),
    printcolumn(name = "Reason", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].reason"#, priority = 1, description = "Why it is (not) ready"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.serial) == has(oldSelf.serial)").message("serial cannot be added or removed after creation: consumers would silently follow a different device; create a new UsbDevicePin"))]
pub struct UsbDevicePinSpec {
    /// USB vendor id, four hexadecimal digits as lsusb prints them (10c4 for Silicon
    /// Labs, 0658 for Sigma Designs). Compared case-insensitively. Fixed at creation.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = Rule::new(HEX4_RULE).message("must be exactly four hexadecimal digits, as lsusb prints it, without 0x (such as 10c4)"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("vendorId cannot change: consumers would silently follow a different device; create a new UsbDevicePin"))]
    pub vendor_id: String,

    /// USB product id, four hexadecimal digits as lsusb prints them (ea60 for a CP210x
    /// bridge, 0200 for an Aeotec Z-Stick 7). Compared case-insensitively. Fixed at
    /// creation.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = Rule::new(HEX4_RULE).message("must be exactly four hexadecimal digits, as lsusb prints it, without 0x (such as ea60)"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("productId cannot change: consumers would silently follow a different device; create a new UsbDevicePin"))]
    pub product_id: String,

    /// USB serial number, to tell identical sticks apart (see the serial in
    /// /dev/serial/by-id/). When unset, any device with this vendor and product id
    /// matches. Fixed at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new(PRINTABLE_WORD_RULE).message("must be the device's USB serial number as in /dev/serial/by-id/: printable characters without spaces, such as c0e8eeaaf4c9"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("serial cannot change: consumers would silently follow a different device; create a new UsbDevicePin"))]
    pub serial: Option<String>,

    /// Path at which consumers see the device inside their containers, such as
    /// /dev/zigbee. Defaults to /dev/<pin name>.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 6, max = 128))]
    #[x_kube(validation = Rule::new(CONTAINER_PATH_RULE).message("must be a path under /dev, such as /dev/zigbee or /dev/serial/zigbee: letters, digits, '.', '_' and '-', without . or .. segments, // or a trailing /"))]
    pub container_path: Option<String>,

    /// At most one matching device may be plugged in at a time (default true). When
    /// true, a match on two nodes at once is a Conflict and consumers stay where they
    /// are. Set false when identical spare sticks are intentional (a backup coordinator
    /// stick on another node): consumers then run wherever one is present, preferring
    /// failover.preferredNodes.
    #[serde(default = "default_true")]
    pub exclusive: bool,

    /// How consumers get the device: DevicePlugin (default; the node agent's kubelet
    /// device plugin hands the device to the one pod that requested the pin's extended
    /// resource, no privileges needed) or PrivilegedHostPath (an opt-in fallback that
    /// mounts /dev into a privileged container).
    #[serde(default)]
    pub access: DeviceAccess,

    /// How consumers follow the device. Automatic (default): when the device shows up
    /// on another node (moved, or a spare stick), consumers are moved there, and a
    /// consumer left on a lost node is removed once the device is seen elsewhere.
    /// Manual: report only. Disabled: consumers stay put.
    #[serde(default)]
    pub failover: FailoverPolicy,
}

fn default_true() -> bool {
    true
}

/// How consumers get the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DeviceAccess {
    /// Through the node agent's kubelet device plugin; no privileges.
    #[default]
    DevicePlugin,
    /// A privileged container with the host's /dev mounted (opt-in fallback).
    PrivilegedHostPath,
}

/// Where the device is, as reported by node agents and decided by the controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsbDevicePinStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Reconciling, Stalled, DevicePresent and Conflict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// One entry per node where a matching device is plugged in, written by that node's
    /// agent (its own field manager) and removed by it when the device goes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["node".into()]))]
    pub presence: Vec<DevicePresence>,

    /// The node consumers are placed on: where the device is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_node: Option<String>,

    /// Stable path of the device on that node, under /dev/serial/by-id/.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_id_path: Option<String>,

    /// The pod that holds the device (namespace/name when not in this namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_pod: Option<String>,

    /// Since when the device is on currentNode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,

    /// The last time the device moved to another node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_move: Option<DeviceMove>,

    /// The last time the operator moved the consumers after the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
}

/// A matching device on one node, as its node agent reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DevicePresence {
    /// The node the device is plugged into.
    pub node: String,

    /// Stable path of the device, such as
    /// /dev/serial/by-id/usb-ITead_Sonoff_Zigbee_3.0_USB_Dongle_Plus_4c00...-if00-port0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_id_path: Option<String>,

    /// Kernel device node, such as /dev/ttyUSB0 (changes when the device re-enumerates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_node: Option<String>,

    /// USB serial number of the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,

    /// Manufacturer string of the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,

    /// Product string of the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,

    /// Since when the agent sees the device (reset when it re-enumerates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// The device moving from one node to another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceMove {
    /// The node the device was on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_node: Option<String>,

    /// The node the device is on now.
    pub to_node: String,

    /// When the controller saw the move.
    pub time: Time,
}

impl_conditioned_status!(UsbDevicePinStatus);
impl_failover!(UsbDevicePin => UsbDevicePinStatus);

impl UsbDevicePin {
    /// The extended resource consumers request (one unit), and the node label set on
    /// nodes holding the device: `<namespace>.devices.homelab.home.arpa/<pin name>`.
    pub fn resource_name(&self) -> String {
        resource_name(&self.namespace().unwrap_or_default(), &self.name_any())
    }

    /// Where consumers see the device inside their containers.
    pub fn container_path(&self) -> String {
        self.spec
            .container_path
            .clone()
            .unwrap_or_else(|| format!("/dev/{}", self.name_any()))
    }
}

/// The extended resource (and node label) of the pin `name` in `namespace`.
pub fn resource_name(namespace: &str, name: &str) -> String {
    format!("{namespace}.{RESOURCE_DOMAIN}/{name}")
}

/// The pin a resource or label key names, as (namespace, name); `None` for any other
/// key.
pub fn pin_of_resource(key: &str) -> Option<(&str, &str)> {
    let (domain, name) = key.split_once('/')?;
    let namespace = domain.strip_suffix(RESOURCE_DOMAIN)?.strip_suffix('.')?;
    (!namespace.is_empty() && !namespace.contains('.') && !name.is_empty())
        .then_some((namespace, name))
}

impl UsbDevicePinSpec {
    /// Whether a device with these ids (and serial, if the pin names one) is this pin's.
    pub fn matches(&self, vendor_id: &str, product_id: &str, serial: Option<&str>) -> bool {
        self.vendor_id.eq_ignore_ascii_case(vendor_id)
            && self.product_id.eq_ignore_ascii_case(product_id)
            && match &self.serial {
                Some(wanted) => serial == Some(wanted.as_str()),
                None => true,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin() -> UsbDevicePin {
        UsbDevicePin::new(
            "sonoff-zigbee",
            serde_json::from_value(serde_json::json!({
                "vendorId": "10c4",
                "productId": "ea60",
            }))
            .unwrap(),
        )
    }

    #[test]
    fn defaults_are_safe() {
        let pin = pin();
        assert!(pin.spec.exclusive);
        assert_eq!(pin.spec.access, DeviceAccess::DevicePlugin);
        assert_eq!(pin.spec.failover, FailoverPolicy::default());
    }

    #[test]
    fn names_derive_from_the_pin_and_its_namespace() {
        let mut pin = pin();
        pin.metadata.namespace = Some("home".into());
        assert_eq!(
            pin.resource_name(),
            "home.devices.homelab.home.arpa/sonoff-zigbee"
        );
        assert_eq!(pin.container_path(), "/dev/sonoff-zigbee");
    }

    #[test]
    fn resource_keys_parse_back_into_namespace_and_pin() {
        assert_eq!(
            pin_of_resource("home.devices.homelab.home.arpa/zwave"),
            Some(("home", "zwave"))
        );
        for other in [
            "devices.homelab.home.arpa/zwave",
            "a.b.devices.homelab.home.arpa/zwave",
            "homedevices.homelab.home.arpa/zwave",
            "home.devices.homelab.home.arpa/",
            "nvidia.com/gpu",
            "cpu",
        ] {
            assert_eq!(pin_of_resource(other), None, "{other}");
        }
    }

    #[test]
    fn matching_ignores_hex_case_and_honours_serial() {
        let mut spec = pin().spec;
        assert!(spec.matches("10C4", "EA60", Some("anything")));
        assert!(!spec.matches("0658", "0200", None));
        spec.serial = Some("4c00a1b2".into());
        assert!(spec.matches("10c4", "ea60", Some("4c00a1b2")));
        assert!(!spec.matches("10c4", "ea60", Some("other")));
        assert!(!spec.matches("10c4", "ea60", None));
    }
}
