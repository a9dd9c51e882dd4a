//! Real-shaped sysfs and /dev trees for tests: the files and symlinks a Raspberry Pi 4
//! kernel and udev create for the sticks homelabs use, written to a temporary
//! directory so the agent reads them exactly as it reads the host's.
//!
//! Attribute values, driver layouts (usb-serial `ttyUSB0/tty/ttyUSB0`, cdc_acm
//! `tty/ttyACM0`) and by-id names follow what these devices show on a real host.

use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::sysfs::Roots;

/// Where a Raspberry Pi 4's VL805 USB controller sits in sysfs.
const PI4_CONTROLLER: &str =
    "devices/platform/scb/fd500000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0";

/// How the kernel exposes a device's serial port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// usb-serial bridges (cp210x, ftdi_sio): `ttyUSB<n>`, by-id `…-if00-port0`.
    UsbSerial(&'static str),
    /// CDC ACM modems (Z-Wave 700/800 sticks, ConBee II): `ttyACM<n>`, by-id `…-if00`.
    CdcAcm,
    /// A hub: no node of its own.
    Hub,
}

/// A USB device model as sysfs shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stick {
    /// idVendor.
    pub vendor_id: &'static str,
    /// idProduct.
    pub product_id: &'static str,
    /// bcdDevice.
    pub bcd_device: &'static str,
    /// The serial string, if the device has one.
    pub serial: Option<&'static str>,
    /// The manufacturer string.
    pub manufacturer: Option<&'static str>,
    /// The product string.
    pub product: Option<&'static str>,
    /// The driver that binds to interface 0.
    pub driver: Driver,
    /// The name udev gives its `/dev/serial/by-id/` link.
    pub by_id: &'static str,
}

/// ITead Sonoff Zigbee 3.0 USB Dongle Plus: a CP2102N bridge (cp210x).
pub const SONOFF_ZIGBEE: Stick = Stick {
    vendor_id: "10c4",
    product_id: "ea60",
    bcd_device: "0100",
    serial: Some("a4c13808f2e6ed11b6b5d5a6c7a3f3b1"),
    manufacturer: Some("ITead"),
    product: Some("Sonoff Zigbee 3.0 USB Dongle Plus"),
    driver: Driver::UsbSerial("cp210x"),
    by_id: "usb-ITead_Sonoff_Zigbee_3.0_USB_Dongle_Plus_a4c13808f2e6ed11b6b5d5a6c7a3f3b1-if00-port0",
};

/// Aeotec Z-Stick 7 (Silicon Labs 700 series, Sigma Designs ids): CDC ACM, and no
/// manufacturer, product or serial strings, so udev names it by its ids.
pub const AEOTEC_ZSTICK_7: Stick = Stick {
    vendor_id: "0658",
    product_id: "0200",
    bcd_device: "0000",
    serial: None,
    manufacturer: None,
    product: None,
    driver: Driver::CdcAcm,
    by_id: "usb-0658_0200-if00",
};

/// dresden elektronik ConBee II: CDC ACM with a serial.
pub const CONBEE_II: Stick = Stick {
    vendor_id: "1cf1",
    product_id: "0030",
    bcd_device: "0100",
    serial: Some("DE2417301"),
    manufacturer: Some("dresden elektronik ingenieurtechnik GmbH"),
    product: Some("ConBee II"),
    driver: Driver::CdcAcm,
    by_id: "usb-dresden_elektronik_ingenieurtechnik_GmbH_ConBee_II_DE2417301-if00",
};

/// FTDI FT232R: a smart-meter P1 cable (ftdi_sio).
pub const FTDI_FT232R: Stick = Stick {
    vendor_id: "0403",
    product_id: "6001",
    bcd_device: "0600",
    serial: Some("A50285BI"),
    manufacturer: Some("FTDI"),
    product: Some("FT232R USB UART"),
    driver: Driver::UsbSerial("ftdi_sio"),
    by_id: "usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0",
};

/// Genesys Logic GL850G four-port hub.
pub const GENESYS_HUB: Stick = Stick {
    vendor_id: "05e3",
    product_id: "0610",
    bcd_device: "8832",
    serial: None,
    manufacturer: None,
    product: Some("USB2.0 Hub"),
    driver: Driver::Hub,
    by_id: "",
};

/// A node's `/sys` and `/dev`, under one temporary directory.
#[derive(Debug)]
pub struct Tree {
    root: PathBuf,
    /// Device numbers handed out on bus 1, as the kernel does: never reused.
    next_devnum: u32,
}

impl Tree {
    /// A Raspberry Pi 4 with nothing plugged in: the root hubs and the VL805's
    /// internal hub at `1-1`, under `root` (created; emptied first).
    ///
    /// # Errors
    /// Any I/O error writing the tree.
    pub fn raspberry_pi4(root: &Path) -> io::Result<Self> {
        if root.exists() {
            std::fs::remove_dir_all(root)?;
        }
        let controller = root.join("sys").join(PI4_CONTROLLER);
        std::fs::create_dir_all(root.join("sys/bus/usb/devices"))?;
        std::fs::create_dir_all(root.join("dev/serial/by-id"))?;
        let mut tree = Tree {
            root: root.to_path_buf(),
            next_devnum: 1,
        };
        let root_hub = Stick {
            vendor_id: "1d6b",
            product_id: "0002",
            bcd_device: "0612",
            serial: Some("0000:01:00.0"),
            manufacturer: Some("Linux 6.12.47+rpt-rpi-v8 xhci-hcd"),
            product: Some("xHCI Host Controller"),
            driver: Driver::Hub,
            by_id: "",
        };
        tree.write_device(&controller.join("usb1"), "usb1", &root_hub, "")?;
        let vl805 = Stick {
            vendor_id: "2109",
            product_id: "3431",
            bcd_device: "0421",
            serial: None,
            manufacturer: None,
            product: Some("USB2.0 Hub"),
            driver: Driver::Hub,
            by_id: "",
        };
        tree.plug("1-1", &vl805, "")?;
        Ok(tree)
    }

    /// The roots to give the agent.
    pub fn roots(&self) -> Roots {
        Roots {
            sysfs: self.root.join("sys"),
            dev: self.root.join("dev"),
        }
    }

    /// The directory holding `sys/` and `dev/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Plugs `stick` into `port` (such as `1-1.2`, or `1-1.4.1` behind a hub at
    /// `1-1.4`); its serial port appears as `/dev/<tty>` (ignored for hubs).
    ///
    /// # Errors
    /// `NotFound` when the parent port has nothing plugged in; any I/O error.
    pub fn plug(&mut self, port: &str, stick: &Stick, tty: &str) -> io::Result<()> {
        let parent = parent_port(port);
        let parent_dir = std::fs::canonicalize(self.bus_link(&parent))?;
        self.write_device(&parent_dir.join(port), port, stick, tty)
    }

    /// Takes the next device number without plugging anything, as a device that
    /// came and went would have: the kernel never hands a number out twice, so
    /// a tree laid anew keeps each stick's number only if the gaps stay.
    pub fn skip_devnum(&mut self) {
        self.next_devnum += 1;
    }

    /// Unplugs whatever is in `port` (and behind it): its sysfs directory, its links
    /// in `bus/usb/devices`, its /dev nodes and by-id links disappear.
    ///
    /// # Errors
    /// Any I/O error; unplugging an empty port is not one.
    pub fn unplug(&mut self, port: &str) -> io::Result<()> {
        let link = self.bus_link(port);
        let Ok(dir) = std::fs::canonicalize(&link) else {
            return Ok(());
        };
        let devices = self.root.join("sys/bus/usb/devices");
        let mut nodes = Vec::new();
        for entry in std::fs::read_dir(&devices)?.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == port
                || name.starts_with(&format!("{port}."))
                || name.starts_with(&format!("{port}:"))
            {
                std::fs::remove_file(entry.path())?;
            }
        }
        collect_devnames(&dir, &mut nodes);
        std::fs::remove_dir_all(&dir)?;
        let by_id = self.root.join("dev/serial/by-id");
        for entry in std::fs::read_dir(&by_id)?.filter_map(Result::ok) {
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            if nodes.iter().any(|n| target.ends_with(n)) {
                std::fs::remove_file(entry.path())?;
            }
        }
        for node in nodes {
            let path = self.root.join("dev").join(node);
            if path.exists() {
                std::fs::remove_file(path)?;
            }
        }
        Ok(())
    }

    fn bus_link(&self, port: &str) -> PathBuf {
        self.root.join("sys/bus/usb/devices").join(port)
    }

    fn write_device(&mut self, dir: &Path, port: &str, stick: &Stick, tty: &str) -> io::Result<()> {
        let devnum = self.next_devnum;
        self.next_devnum += 1;
        let class = match stick.driver {
            Driver::Hub => "09",
            Driver::CdcAcm => "02",
            Driver::UsbSerial(_) => "00",
        };
        let usbfs = format!("bus/usb/001/{devnum:03}");
        let product_env = format!(
            "{}/{}/{}",
            stick.vendor_id.trim_start_matches('0'),
            stick.product_id.trim_start_matches('0'),
            stick.bcd_device.trim_start_matches('0'),
        );
        let mut attrs = vec![
            ("idVendor", stick.vendor_id.to_owned()),
            ("idProduct", stick.product_id.to_owned()),
            ("bcdDevice", stick.bcd_device.to_owned()),
            ("bDeviceClass", class.to_owned()),
            ("bNumConfigurations", "1".to_owned()),
            ("busnum", "1".to_owned()),
            ("devnum", devnum.to_string()),
            (
                "devpath",
                port.split_once('-').map_or("0", |(_, p)| p).to_owned(),
            ),
            ("speed", "12".to_owned()),
            ("version", " 2.00".to_owned()),
            ("dev", format!("189:{}", devnum - 1)),
            (
                "uevent",
                format!(
                    "MAJOR=189\nMINOR={}\nDEVNAME={usbfs}\nDEVTYPE=usb_device\nDRIVER=usb\nPRODUCT={product_env}\nTYPE={}/0/0\nBUSNUM=001\nDEVNUM={devnum:03}\n",
                    devnum - 1,
                    class.trim_start_matches('0').max("0"),
                ),
            ),
        ];
        for (name, value) in [
            ("serial", stick.serial),
            ("manufacturer", stick.manufacturer),
            ("product", stick.product),
        ] {
            if let Some(value) = value {
                attrs.push((name, value.to_owned()));
            }
        }
        write_attrs(dir, &attrs)?;
        std::fs::create_dir_all(dir.join("power"))?;
        std::fs::write(dir.join("power/control"), "on\n")?;
        self.link_into_bus(port, dir)?;
        self.write_dev_file(&usbfs)?;

        // Root hubs name their interface after bus and port 0 (`1-0:1.0`).
        let interface_name = match port.strip_prefix("usb") {
            Some(bus) => format!("{bus}-0:1.0"),
            None => format!("{port}:1.0"),
        };
        let interface = dir.join(&interface_name);
        match stick.driver {
            Driver::Hub => {
                write_attrs(
                    &interface,
                    &[
                        ("bInterfaceClass", "09".into()),
                        ("bInterfaceNumber", "00".into()),
                    ],
                )?;
            }
            Driver::UsbSerial(driver) => {
                write_interface(&interface, "ff", driver, &product_env)?;
                let port_dir = interface.join(tty);
                write_attrs(
                    &port_dir,
                    &[
                        ("port_number", "0".into()),
                        ("uevent", format!("DRIVER={driver}\n")),
                    ],
                )?;
                write_tty(&port_dir.join("tty").join(tty), tty, 188)?;
                self.write_node(tty, stick.by_id)?;
            }
            Driver::CdcAcm => {
                write_interface(&interface, "02", "cdc_acm", &product_env)?;
                write_tty(&interface.join("tty").join(tty), tty, 166)?;
                let data = dir.join(format!("{port}:1.1"));
                write_interface(&data, "0a", "cdc_acm", &product_env)?;
                self.link_into_bus(&format!("{port}:1.1"), &data)?;
                self.write_node(tty, stick.by_id)?;
            }
        }
        self.link_into_bus(&interface_name, &interface)?;
        Ok(())
    }

    /// `bus/usb/devices/<name>` → the device directory, relative as the kernel makes it.
    fn link_into_bus(&self, name: &str, dir: &Path) -> io::Result<()> {
        let sys = self.root.join("sys");
        let relative = dir.strip_prefix(&sys).map_err(io::Error::other)?;
        let link = sys.join("bus/usb/devices").join(name);
        if link.exists() || link.symlink_metadata().is_ok() {
            std::fs::remove_file(&link)?;
        }
        symlink(Path::new("../../..").join(relative), link)
    }

    fn write_dev_file(&self, name: &str) -> io::Result<()> {
        let path = self.root.join("dev").join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, "")
    }

    /// The device node (a plain file standing in for the character device) and its
    /// by-id link.
    fn write_node(&self, tty: &str, by_id: &str) -> io::Result<()> {
        self.write_dev_file(tty)?;
        if !by_id.is_empty() {
            let link = self.root.join("dev/serial/by-id").join(by_id);
            if link.symlink_metadata().is_ok() {
                std::fs::remove_file(&link)?;
            }
            symlink(format!("../../{tty}"), link)?;
        }
        Ok(())
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A fresh path under the system's temporary directory, unique to this process and
/// `name`.
pub fn temp_root(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("homelab-{}-{name}", std::process::id()))
}

fn write_attrs(dir: &Path, attrs: &[(&str, String)]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, value) in attrs {
        std::fs::write(dir.join(name), format!("{value}\n"))?;
    }
    Ok(())
}

fn write_interface(dir: &Path, class: &str, driver: &str, product: &str) -> io::Result<()> {
    write_attrs(
        dir,
        &[
            ("bInterfaceClass", class.into()),
            ("bInterfaceNumber", "00".into()),
            ("bNumEndpoints", "02".into()),
            (
                "uevent",
                format!(
                    "DEVTYPE=usb_interface\nDRIVER={driver}\nPRODUCT={product}\nINTERFACE={}/0/0\n",
                    u8::from_str_radix(class, 16).unwrap_or(0)
                ),
            ),
        ],
    )?;
    // Links back up the tree, as sysfs has: the scanner must not follow them.
    symlink(
        "../../../../../../../../../bus/usb/drivers",
        dir.join("driver"),
    )?;
    write_attrs(
        &dir.join("ep_81"),
        &[
            ("bEndpointAddress", "81".into()),
            ("uevent", "DEVTYPE=usb_endpoint\n".into()),
        ],
    )
}

fn write_tty(dir: &Path, name: &str, major: u32) -> io::Result<()> {
    let minor: u32 = name
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or(0);
    write_attrs(
        dir,
        &[
            ("dev", format!("{major}:{minor}")),
            (
                "uevent",
                format!("MAJOR={major}\nMINOR={minor}\nDEVNAME={name}\n"),
            ),
        ],
    )?;
    symlink(
        "../../../../../../../../../../../../class/tty",
        dir.join("subsystem"),
    )
}

/// `DEVNAME`s of every node under a device directory.
fn collect_devnames(dir: &Path, out: &mut Vec<String>) {
    if let Ok(uevent) = std::fs::read_to_string(dir.join("uevent"))
        && let Some(name) = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))
    {
        out.push(name.to_owned());
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_devnames(&entry.path(), out);
            }
        }
    }
}

/// The port a device hangs off: `1-1.4.1` → `1-1.4`, `1-1` → `usb1`.
fn parent_port(port: &str) -> String {
    match port.rsplit_once('.') {
        Some((parent, _)) => parent.to_owned(),
        None => format!("usb{}", port.split('-').next().unwrap_or("1")),
    }
}
