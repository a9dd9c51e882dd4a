//! Lays down a node's USB sysfs tree with the demo's sticks plugged in, for
//! `e2e/demo plug`: the same tree the real-node tests give the node agent (a
//! Raspberry Pi 4's, written by the fixtures), copied into the directory the
//! agent's pod reads as /sys. Prints one line per stick for the demo to make
//! the device node udev would make: `<tty> <major> <minor> <by-id name>`.
//!
//!   demo-usb-sticks SYS_DIR [sonoff-zigbee] [aeotec-zstick7]

use std::path::Path;
use std::process::{Command, ExitCode};

use homelab_node_agent::fixtures::{AEOTEC_ZSTICK_7, SONOFF_ZIGBEE, Stick, Tree, temp_root};

/// The Sonoff dongle of deploy/examples/usbdevicepin-sonoff-zigbee.yaml: its serial.
const DEMO_SONOFF: Stick = Stick {
    serial: Some("c0e8eeaaf4c9eb1180c8d1c3f8e4b1c2"),
    by_id: "usb-ITead_Sonoff_Zigbee_3.0_USB_Dongle_Plus_c0e8eeaaf4c9eb1180c8d1c3f8e4b1c2-if00-port0",
    ..SONOFF_ZIGBEE
};

/// The demo's sticks, each with the port, tty and device number it always gets,
/// so that laying a node's tree anew leaves a stick that stayed unchanged.
const STICKS: [(&str, Stick, &str, &str, u32); 2] = [
    ("sonoff-zigbee", DEMO_SONOFF, "1-1.1", "ttyUSB0", 188),
    ("aeotec-zstick7", AEOTEC_ZSTICK_7, "1-1.2", "ttyACM0", 166),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((sys_dir, names)) = args.split_first() else {
        eprintln!("usage: demo-usb-sticks SYS_DIR [sonoff-zigbee] [aeotec-zstick7]");
        return ExitCode::from(2);
    };
    match lay(Path::new(sys_dir), names) {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo-usb-sticks: {e}");
            ExitCode::FAILURE
        }
    }
}

fn lay(sys_dir: &Path, names: &[String]) -> Result<Vec<String>, String> {
    if let Some(unknown) = names
        .iter()
        .find(|n| !STICKS.iter().any(|s| s.0 == n.as_str()))
    {
        return Err(format!("no demo stick {unknown:?}"));
    }
    let mut tree = Tree::raspberry_pi4(&temp_root("demo-usb"))
        .map_err(|e| format!("writing the tree: {e}"))?;
    let mut lines = Vec::new();
    for (name, stick, port, tty, major) in STICKS {
        if names.iter().any(|n| n == name) {
            tree.plug(port, &stick, tty)
                .map_err(|e| format!("plugging {name}: {e}"))?;
            lines.push(format!("{tty} {major} 0 {}", stick.by_id));
        } else {
            tree.skip_devnum();
        }
    }
    // The agent's pod holds SYS_DIR itself (a hostPath): replace what is inside.
    std::fs::create_dir_all(sys_dir).map_err(|e| format!("{}: {e}", sys_dir.display()))?;
    for entry in std::fs::read_dir(sys_dir)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let path = entry.path();
        let removed = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let copied = Command::new("cp")
        .arg("-a")
        .arg(tree.root().join("sys/."))
        .arg(sys_dir)
        .status()
        .map_err(|e| format!("cp: {e}"))?;
    if !copied.success() {
        return Err(format!(
            "copying the tree into {} failed",
            sys_dir.display()
        ));
    }
    Ok(lines)
}
