//! USB devices as the kernel shows them under `/sys/bus/usb/devices`.
//!
//! Every entry without a `:` in its name is a device (`1-1.2`, a port path); entries
//! with one are its interfaces (`1-1.2:1.0`), under which drivers create the device
//! nodes (`ttyUSB0/tty/ttyUSB0` for usb-serial, `tty/ttyACM0` for cdc_acm). The
//! stable `/dev/serial/by-id/` names come from udev and are read from the /dev tree.
//!
//! A malformed entry (an unreadable or non-hex id) is skipped with a warning: one
//! odd device must never stop the agent from reporting the others.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// `bDeviceClass` of a hub: never a device anyone pins.
const HUB_CLASS: &str = "09";
/// How deep under an interface a device node may sit (`ttyUSB0/tty/ttyUSB0`).
const MAX_NODE_DEPTH: usize = 3;

/// One USB device plugged into this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsbDevice {
    /// The port path, such as `1-1.2`: where it is plugged in.
    pub port: String,
    /// Vendor id, four lowercase hex digits.
    pub vendor_id: String,
    /// Product id, four lowercase hex digits.
    pub product_id: String,
    /// Serial number string, when the device has one.
    pub serial: Option<String>,
    /// Manufacturer string.
    pub manufacturer: Option<String>,
    /// Product string.
    pub product: Option<String>,
    /// Bus number and device number: a new pair each time the device enumerates.
    pub enumeration: Option<(u32, u32)>,
    /// Device nodes its interfaces created, as host paths (`/dev/ttyUSB0`), sorted.
    pub dev_nodes: Vec<String>,
    /// The node consumers get: the first tty, else the first node.
    pub dev_node: Option<String>,
    /// The stable `/dev/serial/by-id/...` link to `dev_node`.
    pub by_id_path: Option<String>,
}

/// Where the agent looks: the host's `/sys` and `/dev`, or a test tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roots {
    /// Mount point of sysfs (`/sys`).
    pub sysfs: PathBuf,
    /// The device directory (`/dev`).
    pub dev: PathBuf,
}

impl Roots {
    /// Every USB device under the roots, hubs left out, sorted by port.
    pub fn scan(&self) -> Vec<UsbDevice> {
        let by_id = read_by_id(&self.dev);
        let dir = self.sysfs.join("bus/usb/devices");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) => {
                tracing::warn!(path = %dir.display(), error = %err, "cannot list USB devices");
                return Vec::new();
            }
        };
        let mut devices: Vec<UsbDevice> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let port = entry.file_name().into_string().ok()?;
                if port.contains(':') {
                    return None;
                }
                match read_device(&entry.path(), &port, &by_id) {
                    Ok(device) => device,
                    Err(why) => {
                        tracing::warn!(port, %why, "skipping malformed USB device entry");
                        None
                    }
                }
            })
            .collect();
        devices.sort_by(|a, b| a.port.cmp(&b.port));
        devices
    }
}

/// Reads one device directory. `Ok(None)` for hubs; `Err` says why an entry is
/// malformed.
fn read_device(
    dir: &Path,
    port: &str,
    by_id: &BTreeMap<String, Vec<String>>,
) -> Result<Option<UsbDevice>, String> {
    let vendor_id = read_hex4(dir, "idVendor")?;
    let product_id = read_hex4(dir, "idProduct")?;
    if read_attr(dir, "bDeviceClass").as_deref() == Some(HUB_CLASS) {
        return Ok(None);
    }
    let enumeration = match (read_attr(dir, "busnum"), read_attr(dir, "devnum")) {
        (Some(bus), Some(dev)) => Some((
            bus.parse()
                .map_err(|_| format!("busnum {bus:?} is not a number"))?,
            dev.parse()
                .map_err(|_| format!("devnum {dev:?} is not a number"))?,
        )),
        _ => None,
    };
    let mut dev_nodes = Vec::new();
    for interface in child_dirs(dir)
        .into_iter()
        .filter(|d| is_interface(d, port))
    {
        collect_dev_nodes(&interface, MAX_NODE_DEPTH, &mut dev_nodes);
    }
    // No driver made a node (a libusb device such as an SDR): hand out the raw
    // usbfs node instead.
    if dev_nodes.is_empty()
        && let Some(name) = devname(dir)
    {
        dev_nodes.push(format!("/dev/{name}"));
    }
    dev_nodes.sort();
    dev_nodes.dedup();
    let dev_node = dev_nodes
        .iter()
        .find(|n| n.starts_with("/dev/tty"))
        .or_else(|| dev_nodes.first())
        .cloned();
    // udev may create several links (if00, if01); the sorted first is stable.
    let by_id_path = dev_node
        .as_deref()
        .and_then(|node| node.strip_prefix("/dev/"))
        .and_then(|name| by_id.get(name))
        .and_then(|links| links.iter().min().cloned());
    Ok(Some(UsbDevice {
        port: port.to_owned(),
        vendor_id,
        product_id,
        serial: read_attr(dir, "serial"),
        manufacturer: read_attr(dir, "manufacturer"),
        product: read_attr(dir, "product"),
        enumeration,
        dev_nodes,
        dev_node,
        by_id_path,
    }))
}

/// An interface of the device on `port` (`1-1.2:1.0`), not a child device.
fn is_interface(dir: &Path, port: &str) -> bool {
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(port))
        .is_some_and(|rest| rest.starts_with(':'))
}

/// Device nodes (`DEVNAME=` in `uevent` beside a `dev` file) under `dir`, without
/// following symlinks: sysfs links back up (`driver`, `subsystem`, `port`).
fn collect_dev_nodes(dir: &Path, depth: usize, out: &mut Vec<String>) {
    if dir.join("dev").is_file()
        && let Some(name) = devname(dir)
    {
        out.push(format!("/dev/{name}"));
    }
    if depth == 0 {
        return;
    }
    for child in child_dirs(dir) {
        collect_dev_nodes(&child, depth - 1, out);
    }
}

/// Real subdirectories (not symlinks) of `dir`.
fn child_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// `DEVNAME` from a `uevent` file, if it is a plain relative name.
fn devname(dir: &Path) -> Option<String> {
    let uevent = fs::read_to_string(dir.join("uevent")).ok()?;
    let name = uevent
        .lines()
        .find_map(|line| line.strip_prefix("DEVNAME="))?
        .trim();
    let safe = !name.is_empty()
        && !name.starts_with('/')
        && name.split('/').all(|part| !part.is_empty() && part != "..");
    safe.then(|| name.to_owned())
}

/// A sysfs attribute, trimmed; `None` when absent, unreadable or empty.
fn read_attr(dir: &Path, name: &str) -> Option<String> {
    let text = fs::read_to_string(dir.join(name)).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// A four-digit hex id, lowercased.
fn read_hex4(dir: &Path, name: &str) -> Result<String, String> {
    let value = read_attr(dir, name).ok_or_else(|| format!("{name} is missing or unreadable"))?;
    if value.len() == 4 && value.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(format!("{name} {value:?} is not four hex digits"))
    }
}

/// `/dev/serial/by-id` links by the device name they point to (`ttyUSB0`).
fn read_by_id(dev: &Path) -> BTreeMap<String, Vec<String>> {
    let mut links: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let dir = dev.join("serial/by-id");
    let Ok(entries) = fs::read_dir(&dir) else {
        return links;
    };
    for entry in entries.filter_map(Result::ok) {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Ok(target) = fs::read_link(entry.path()) else {
            tracing::warn!(link = %entry.path().display(), "skipping by-id entry that is not a symlink");
            continue;
        };
        // udev writes ../../ttyUSB0; resolve it against /dev/serial/by-id.
        let Some(node) = resolve_in_dev(&target) else {
            tracing::warn!(link = %entry.path().display(), target = %target.display(), "skipping by-id link that leaves /dev");
            continue;
        };
        links
            .entry(node)
            .or_default()
            .push(format!("/dev/serial/by-id/{name}"));
    }
    links
}

/// The name under /dev a by-id link target points to (`../../ttyUSB0` → `ttyUSB0`).
fn resolve_in_dev(target: &Path) -> Option<String> {
    if target.is_absolute() {
        let rest = target.strip_prefix("/dev").ok()?;
        return rest.to_str().map(str::to_owned).filter(|s| !s.is_empty());
    }
    let mut parts: Vec<String> = vec!["serial".into(), "by-id".into()];
    for component in target.components() {
        match component {
            std::path::Component::ParentDir => {
                parts.pop()?;
            }
            std::path::Component::Normal(part) => parts.push(part.to_str()?.to_owned()),
            _ => {}
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::fixtures::{
        AEOTEC_ZSTICK_7, CONBEE_II, FTDI_FT232R, GENESYS_HUB, SONOFF_ZIGBEE, Tree, temp_root,
    };

    fn pi(name: &str) -> Tree {
        Tree::raspberry_pi4(&temp_root(&format!("sysfs-{name}"))).unwrap()
    }

    #[test]
    fn a_bare_pi_has_only_hubs() {
        let tree = pi("bare");
        assert_eq!(tree.roots().scan(), vec![]);
    }

    #[test]
    fn cp210x_zigbee_dongle() {
        let mut tree = pi("cp210x");
        tree.plug("1-1.2", &SONOFF_ZIGBEE, "ttyUSB0").unwrap();
        let devices = tree.roots().scan();
        assert_eq!(devices.len(), 1);
        let d = &devices[0];
        assert_eq!(d.port, "1-1.2");
        assert_eq!(
            (d.vendor_id.as_str(), d.product_id.as_str()),
            ("10c4", "ea60")
        );
        assert_eq!(d.serial.as_deref(), SONOFF_ZIGBEE.serial);
        assert_eq!(d.manufacturer.as_deref(), Some("ITead"));
        assert_eq!(
            d.product.as_deref(),
            Some("Sonoff Zigbee 3.0 USB Dongle Plus")
        );
        assert_eq!(d.dev_nodes, ["/dev/ttyUSB0"]);
        assert_eq!(d.dev_node.as_deref(), Some("/dev/ttyUSB0"));
        assert_eq!(
            d.by_id_path.as_deref(),
            Some(
                "/dev/serial/by-id/usb-ITead_Sonoff_Zigbee_3.0_USB_Dongle_Plus_a4c13808f2e6ed11b6b5d5a6c7a3f3b1-if00-port0"
            )
        );
        assert_eq!(d.enumeration, Some((1, 3)));
    }

    #[test]
    fn aeotec_z_stick_7_without_strings() {
        let mut tree = pi("zstick");
        tree.plug("1-1.3", &AEOTEC_ZSTICK_7, "ttyACM0").unwrap();
        let devices = tree.roots().scan();
        assert_eq!(devices.len(), 1);
        let d = &devices[0];
        assert_eq!(
            (d.vendor_id.as_str(), d.product_id.as_str()),
            ("0658", "0200")
        );
        assert_eq!(
            (d.serial.as_deref(), d.manufacturer.as_deref()),
            (None, None)
        );
        // The CDC data interface has no node of its own.
        assert_eq!(d.dev_nodes, ["/dev/ttyACM0"]);
        assert_eq!(
            d.by_id_path.as_deref(),
            Some("/dev/serial/by-id/usb-0658_0200-if00")
        );
    }

    #[test]
    fn a_hub_with_several_devices() {
        let mut tree = pi("hub");
        tree.plug("1-1.4", &GENESYS_HUB, "").unwrap();
        tree.plug("1-1.4.1", &SONOFF_ZIGBEE, "ttyUSB0").unwrap();
        tree.plug("1-1.4.2", &FTDI_FT232R, "ttyUSB1").unwrap();
        tree.plug("1-1.4.3", &CONBEE_II, "ttyACM0").unwrap();
        tree.plug("1-1.2", &AEOTEC_ZSTICK_7, "ttyACM1").unwrap();
        let devices = tree.roots().scan();
        let summary: Vec<(&str, &str, Option<&str>)> = devices
            .iter()
            .map(|d| {
                (
                    d.port.as_str(),
                    d.product_id.as_str(),
                    d.dev_node.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("1-1.2", "0200", Some("/dev/ttyACM1")),
                ("1-1.4.1", "ea60", Some("/dev/ttyUSB0")),
                ("1-1.4.2", "6001", Some("/dev/ttyUSB1")),
                ("1-1.4.3", "0030", Some("/dev/ttyACM0")),
            ]
        );
        // A child's node is its own, not its hub's.
        assert!(devices.iter().all(|d| d.dev_nodes.len() == 1));
        assert_eq!(
            devices[2].by_id_path.as_deref(),
            Some("/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0")
        );
    }

    #[test]
    fn unplug_and_replug_re_enumerates() {
        let mut tree = pi("replug");
        tree.plug("1-1.2", &SONOFF_ZIGBEE, "ttyUSB0").unwrap();
        let before = tree.roots().scan()[0].enumeration;
        tree.unplug("1-1.2").unwrap();
        assert_eq!(tree.roots().scan(), vec![]);
        assert!(!tree.roots().dev.join("ttyUSB0").exists());
        tree.plug("1-1.2", &SONOFF_ZIGBEE, "ttyUSB0").unwrap();
        let after = tree.roots().scan()[0].enumeration;
        assert_ne!(before, after);
    }

    #[test]
    fn malformed_entries_are_skipped() {
        let mut tree = pi("malformed");
        tree.plug("1-1.2", &SONOFF_ZIGBEE, "ttyUSB0").unwrap();
        tree.plug("1-1.3", &CONBEE_II, "ttyACM0").unwrap();
        let devices = tree.roots().sysfs.join("bus/usb/devices");
        // A vendor id that is not hex, a missing product id, a devnum that is not a
        // number, a device whose files vanished (a dangling link).
        std::fs::write(devices.join("1-1.2/idVendor"), "zz!!\n").unwrap();
        std::fs::remove_file(devices.join("1-1.3/idProduct")).unwrap();
        tree.plug("1-1.4", &FTDI_FT232R, "ttyUSB1").unwrap();
        std::fs::write(devices.join("1-1.4/devnum"), "many\n").unwrap();
        std::os::unix::fs::symlink("../../../devices/gone", devices.join("1-1.5")).unwrap();
        // A by-id link that points outside /dev.
        std::os::unix::fs::symlink(
            "../../../../etc/passwd",
            tree.roots().dev.join("serial/by-id/evil"),
        )
        .unwrap();
        tree.plug("1-1.1", &AEOTEC_ZSTICK_7, "ttyACM1").unwrap();
        let found = tree.roots().scan();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].port, "1-1.1");
    }

    #[test]
    fn a_missing_tree_finds_nothing() {
        let roots = Roots {
            sysfs: temp_root("nowhere/sys"),
            dev: temp_root("nowhere/dev"),
        };
        assert_eq!(roots.scan(), vec![]);
    }

    #[test]
    fn by_id_targets_resolve_inside_dev() {
        assert_eq!(
            resolve_in_dev(Path::new("../../ttyUSB0")).as_deref(),
            Some("ttyUSB0")
        );
        assert_eq!(
            resolve_in_dev(Path::new("/dev/ttyACM0")).as_deref(),
            Some("ttyACM0")
        );
        assert_eq!(resolve_in_dev(Path::new("../../../../etc/passwd")), None);
    }
}
