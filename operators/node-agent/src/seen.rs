//! Since when each device is plugged in, as this agent has seen it.
//!
//! A device that re-enumerates (replugged, or reset by the kernel) gets a new bus and
//! device number, and so a new `since`: the controller restarts a consumer whose
//! device handle predates it. An agent that restarts must not look like a replug,
//! so devices found on its first scan keep the `since` already reported when the
//! report still names the same node.

use std::collections::BTreeMap;

use homelab_api::usbdevicepin::DevicePresence;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::sysfs::UsbDevice;

/// Identity of one enumeration of a device: its port and bus/device numbers.
type Key = (String, Option<(u32, u32)>);

/// First sightings of the devices plugged in now.
#[derive(Debug, Default)]
pub struct Seen {
    devices: BTreeMap<Key, Sighting>,
    scanned: bool,
}

#[derive(Clone, Copy, Debug)]
struct Sighting {
    at: Timestamp,
    /// Found by the agent's first scan: it may have been there long before.
    on_start: bool,
}

impl Seen {
    /// Records a scan taken at `now`; forgets devices that are gone.
    pub fn observe(&mut self, devices: &[UsbDevice], now: Timestamp) {
        let on_start = !self.scanned;
        self.scanned = true;
        let keys: Vec<Key> = devices.iter().map(key).collect();
        self.devices.retain(|k, _| keys.contains(k));
        for k in keys {
            self.devices
                .entry(k)
                .or_insert(Sighting { at: now, on_start });
        }
    }

    /// Since when `device` is plugged in; `reported` is this node's entry as the API
    /// has it.
    pub fn since(&self, device: &UsbDevice, reported: Option<&DevicePresence>) -> Time {
        let sighting = self.devices.get(&key(device)).copied();
        if let Some(reported) = reported
            && sighting.is_none_or(|s| s.on_start)
            && reported.dev_node == device.dev_node
            && reported.by_id_path == device.by_id_path
            && let Some(since) = &reported.since
        {
            return since.clone();
        }
        Time(sighting.map_or_else(homelab_api::conditions::now, |s| s.at))
    }
}

fn key(device: &UsbDevice) -> Key {
    (device.port.clone(), device.enumeration)
}
