//! Which kinds of device node a pin may hand to a pod. A serial port or a hidraw
//! node is a radio; the raw usbfs node of a device or a USB disk gives a pod far
//! more (any USB request; a filesystem), so those need an administrator's opt-in
//! (`HOMELAB_DEVICE_CLASSES`, the chart's `nodeAgent.deviceClasses`).

use std::collections::BTreeSet;
use std::fmt;

use crate::sysfs::UsbDevice;

/// A kind of device node, by its path under /dev.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeviceClass {
    /// `/dev/ttyUSB*`, `/dev/ttyACM*`: Zigbee and Z-Wave sticks, serial adapters.
    Serial,
    /// `/dev/hidraw*`: HID devices such as UPS monitors and some sensors.
    Hidraw,
    /// `/dev/video*`: cameras.
    Video,
    /// `/dev/bus/usb/<bus>/<dev>`: the raw device, for libusb (SDR dongles).
    Usbfs,
    /// `/dev/sd*`, `/dev/sr*`: USB disks and drives.
    Block,
}

impl DeviceClass {
    const ALL: [DeviceClass; 5] = [
        DeviceClass::Serial,
        DeviceClass::Hidraw,
        DeviceClass::Video,
        DeviceClass::Usbfs,
        DeviceClass::Block,
    ];

    /// The setting's name of the class.
    pub fn name(self) -> &'static str {
        match self {
            DeviceClass::Serial => "serial",
            DeviceClass::Hidraw => "hidraw",
            DeviceClass::Video => "video",
            DeviceClass::Usbfs => "usbfs",
            DeviceClass::Block => "block",
        }
    }

    /// The class of a host device node path; `None` for anything else.
    pub fn of(path: &str) -> Option<DeviceClass> {
        let name = path.strip_prefix("/dev/")?;
        if name.starts_with("bus/usb/") {
            Some(DeviceClass::Usbfs)
        } else if name.starts_with("tty") {
            Some(DeviceClass::Serial)
        } else if name.starts_with("hidraw") {
            Some(DeviceClass::Hidraw)
        } else if name.starts_with("video") {
            Some(DeviceClass::Video)
        } else if name.starts_with("sd") || name.starts_with("sr") {
            Some(DeviceClass::Block)
        } else {
            None
        }
    }
}

impl fmt::Display for DeviceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The classes a pin may hand out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedClasses(BTreeSet<DeviceClass>);

impl Default for AllowedClasses {
    /// Serial and hidraw: what radios and sensors need.
    fn default() -> Self {
        AllowedClasses([DeviceClass::Serial, DeviceClass::Hidraw].into())
    }
}

impl AllowedClasses {
    /// Parses a comma-separated list such as `serial,hidraw,usbfs`.
    ///
    /// # Errors
    /// The first name that is not a class.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|name| {
                DeviceClass::ALL
                    .into_iter()
                    .find(|c| c.name().eq_ignore_ascii_case(name))
                    .ok_or_else(|| name.to_owned())
            })
            .collect::<Result<BTreeSet<_>, _>>()
            .map(AllowedClasses)
    }

    /// Whether a device node of this path may be handed out.
    pub fn admits(&self, path: &str) -> bool {
        DeviceClass::of(path).is_some_and(|c| self.0.contains(&c))
    }

    /// Keeps only the device's nodes of allowed classes; the node consumers get is
    /// chosen among those (a tty first), and is `None` when none is left, so the
    /// device is reported present but offered to no pod.
    pub fn restrict(&self, device: &mut UsbDevice) {
        device.dev_nodes.retain(|n| self.admits(n));
        let chosen = device
            .dev_nodes
            .iter()
            .find(|n| n.starts_with("/dev/tty"))
            .or_else(|| device.dev_nodes.first())
            .cloned();
        if chosen != device.dev_node {
            device.by_id_path = None;
        }
        device.dev_node = chosen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(nodes: &[&str]) -> UsbDevice {
        UsbDevice {
            port: "1-1.2".into(),
            vendor_id: "10c4".into(),
            product_id: "ea60".into(),
            serial: None,
            manufacturer: None,
            product: None,
            enumeration: Some((1, 5)),
            dev_nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
            dev_node: nodes
                .iter()
                .find(|n| n.starts_with("/dev/tty"))
                .or(nodes.first())
                .map(|n| (*n).to_owned()),
            by_id_path: Some("/dev/serial/by-id/usb-x".into()),
        }
    }

    #[test]
    fn classes_come_from_the_node_path() {
        for (path, class) in [
            ("/dev/ttyUSB0", Some(DeviceClass::Serial)),
            ("/dev/ttyACM1", Some(DeviceClass::Serial)),
            ("/dev/hidraw2", Some(DeviceClass::Hidraw)),
            ("/dev/video0", Some(DeviceClass::Video)),
            ("/dev/bus/usb/001/005", Some(DeviceClass::Usbfs)),
            ("/dev/sda", Some(DeviceClass::Block)),
            ("/dev/snd/pcmC1D0c", None),
            ("ttyUSB0", None),
        ] {
            assert_eq!(DeviceClass::of(path), class, "{path}");
        }
    }

    #[test]
    fn serial_and_hidraw_by_default_raw_usb_and_disks_only_on_purpose() {
        let default = AllowedClasses::default();
        let mut stick = device(&["/dev/ttyUSB0"]);
        default.restrict(&mut stick);
        assert_eq!(stick.dev_node.as_deref(), Some("/dev/ttyUSB0"));
        assert!(stick.by_id_path.is_some());

        let mut sdr = device(&["/dev/bus/usb/001/005"]);
        default.restrict(&mut sdr);
        assert_eq!(sdr.dev_node, None);
        assert!(sdr.dev_nodes.is_empty());

        let opted_in = AllowedClasses::parse("serial, hidraw,usbfs").unwrap();
        let mut sdr = device(&["/dev/bus/usb/001/005"]);
        opted_in.restrict(&mut sdr);
        assert_eq!(sdr.dev_node.as_deref(), Some("/dev/bus/usb/001/005"));

        let mut disk = device(&["/dev/sda"]);
        opted_in.restrict(&mut disk);
        assert_eq!(disk.dev_node, None);
    }

    #[test]
    fn a_device_with_a_serial_port_and_a_disk_offers_the_port() {
        let mut combo = device(&["/dev/sdb", "/dev/ttyACM0"]);
        AllowedClasses::default().restrict(&mut combo);
        assert_eq!(combo.dev_nodes, ["/dev/ttyACM0"]);
        assert_eq!(combo.dev_node.as_deref(), Some("/dev/ttyACM0"));
    }

    #[test]
    fn unknown_class_names_are_refused() {
        assert_eq!(AllowedClasses::parse("serial,gpu"), Err("gpu".to_owned()));
        assert_eq!(
            AllowedClasses::parse("").unwrap(),
            AllowedClasses(BTreeSet::new())
        );
    }
}
