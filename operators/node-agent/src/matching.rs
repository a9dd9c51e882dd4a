//! Which pin each device on this node belongs to, and what the agent reports.
//!
//! Pure: pins and devices in, assignments out. A device goes to one pin only: when
//! several pins match it (one by vendor and product, another also by serial), the
//! oldest pin wins (then namespace, then name), the same rule the controller uses to
//! report the other pins' `Conflict`, so two consumers never get one device.

use std::collections::BTreeMap;
use std::sync::Arc;

use homelab_api::UsbDevicePin;
use homelab_api::usbdevicepin::DevicePresence;
use kube::ResourceExt;

use crate::seen::Seen;
use crate::sysfs::UsbDevice;

/// A pin as the agent keys it: (namespace, name).
pub type PinKey = (String, String);

/// The key of a pin.
pub fn pin_key(pin: &UsbDevicePin) -> PinKey {
    (pin.namespace().unwrap_or_default(), pin.name_any())
}

pub use homelab_kit::device_pin::claim_order;

/// The devices each pin gets, by port order; pins without a device are absent.
pub fn assign<'d>(
    pins: &[Arc<UsbDevicePin>],
    devices: &'d [UsbDevice],
) -> BTreeMap<PinKey, Vec<&'d UsbDevice>> {
    let mut ordered: Vec<&Arc<UsbDevicePin>> = pins
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    ordered.sort_by(|a, b| claim_order(a, b));
    let mut out: BTreeMap<PinKey, Vec<&UsbDevice>> = BTreeMap::new();
    for device in devices {
        let owner = ordered.iter().find(|pin| {
            pin.spec.matches(
                &device.vendor_id,
                &device.product_id,
                device.serial.as_deref(),
            )
        });
        if let Some(pin) = owner {
            out.entry(pin_key(pin)).or_default().push(device);
        }
    }
    out
}

/// This node's presence entry for a pin whose first device is `device`.
pub fn presence(
    node: &str,
    device: &UsbDevice,
    reported: Option<&DevicePresence>,
    seen: &Seen,
) -> DevicePresence {
    DevicePresence {
        node: node.to_owned(),
        by_id_path: device.by_id_path.clone(),
        dev_node: device.dev_node.clone(),
        serial: device.serial.clone(),
        manufacturer: device.manufacturer.clone(),
        product: device.product.clone(),
        since: Some(seen.since(device, reported)),
    }
}

/// This node's entry in a pin's status, as the API has it.
pub fn reported<'p>(pin: &'p UsbDevicePin, node: &str) -> Option<&'p DevicePresence> {
    pin.status
        .as_ref()
        .and_then(|s| s.presence.iter().find(|p| p.node == node))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::fixtures::{AEOTEC_ZSTICK_7, SONOFF_ZIGBEE, Tree, temp_root};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn pin(name: &str, created: i64, spec: serde_json::Value) -> Arc<UsbDevicePin> {
        let mut pin = UsbDevicePin::new(name, serde_json::from_value(spec).unwrap());
        pin.metadata.namespace = Some("home".into());
        pin.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        Arc::new(pin)
    }

    fn devices(name: &str) -> (Tree, Vec<UsbDevice>) {
        let mut tree = Tree::raspberry_pi4(&temp_root(&format!("matching-{name}"))).unwrap();
        tree.plug("1-1.2", &SONOFF_ZIGBEE, "ttyUSB0").unwrap();
        tree.plug("1-1.3", &AEOTEC_ZSTICK_7, "ttyACM0").unwrap();
        let found = tree.roots().scan();
        (tree, found)
    }

    #[test]
    fn each_pin_gets_its_device() {
        let (_tree, found) = devices("each");
        let pins = [
            pin(
                "zigbee",
                10,
                serde_json::json!({"vendorId": "10C4", "productId": "EA60"}),
            ),
            pin(
                "zwave",
                20,
                serde_json::json!({"vendorId": "0658", "productId": "0200"}),
            ),
            pin(
                "absent",
                30,
                serde_json::json!({"vendorId": "1cf1", "productId": "0030"}),
            ),
        ];
        let assigned = assign(&pins, &found);
        assert_eq!(assigned[&("home".into(), "zigbee".into())][0].port, "1-1.2");
        assert_eq!(assigned[&("home".into(), "zwave".into())][0].port, "1-1.3");
        assert!(!assigned.contains_key(&("home".into(), "absent".into())));
    }

    #[test]
    fn the_oldest_pin_wins_a_device_two_pins_match() {
        let (_tree, found) = devices("oldest");
        let serial = SONOFF_ZIGBEE.serial.unwrap();
        let pins = [
            pin(
                "newer",
                20,
                serde_json::json!({"vendorId": "10c4", "productId": "ea60", "serial": serial}),
            ),
            pin(
                "older",
                10,
                serde_json::json!({"vendorId": "10c4", "productId": "ea60"}),
            ),
        ];
        let assigned = assign(&pins, &found);
        assert!(assigned.contains_key(&("home".into(), "older".into())));
        assert!(!assigned.contains_key(&("home".into(), "newer".into())));
    }

    #[test]
    fn a_serial_pin_ignores_other_sticks() {
        let (_tree, found) = devices("serial");
        let pins = [pin(
            "other",
            1,
            serde_json::json!({"vendorId": "10c4", "productId": "ea60", "serial": "nope"}),
        )];
        assert!(assign(&pins, &found).is_empty());
    }

    #[test]
    fn since_survives_an_agent_restart_but_not_a_replug() {
        let (mut tree, found) = devices("since");
        let zigbee = &found[0];
        let t0 = Timestamp::from_second(1_000).unwrap();
        let earlier = DevicePresence {
            since: Some(Time(Timestamp::from_second(500).unwrap())),
            ..presence("pi4-1", zigbee, None, &Seen::default())
        };
        // A new agent finds the device on its first scan: it keeps the reported since.
        let mut seen = Seen::default();
        seen.observe(&found, t0);
        assert_eq!(
            presence("pi4-1", zigbee, Some(&earlier), &seen).since,
            earlier.since
        );

        // Replugged while the agent runs: new enumeration, new since.
        tree.unplug("1-1.2").unwrap();
        tree.plug("1-1.2", &SONOFF_ZIGBEE, "ttyUSB0").unwrap();
        let again = tree.roots().scan();
        let t1 = Timestamp::from_second(2_000).unwrap();
        seen.observe(&again, t1);
        let entry = presence("pi4-1", &again[0], Some(&earlier), &seen);
        assert_eq!(entry.since, Some(Time(t1)));
        assert_eq!(entry.dev_node.as_deref(), Some("/dev/ttyUSB0"));
    }
}
