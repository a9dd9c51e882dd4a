//! The agent's metrics, beside its watch counters: what this node holds. Labels:
//! the agent's own node, and the pins that exist (bounded by the objects, never a
//! device serial or a path).

use std::collections::BTreeSet;
use std::sync::Mutex;

use homelab_kit::metrics::register_family;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type PinLabels = [(&'static str, String); 3];
type NodeLabels = [(&'static str, String); 1];

/// The agent's metrics. Registered once per process.
#[derive(Debug)]
pub struct AgentMetrics {
    /// This node, the `node` label of every series.
    node: String,
    /// `homelab_node_agent_device_present{node,namespace,pin}`: 1 while the pin's
    /// device is plugged into this node.
    present: Family<PinLabels, Gauge>,
    /// The pins exported last pass, to drop the series of deleted pins.
    exported: Mutex<BTreeSet<(String, String)>>,
    /// `homelab_node_agent_usb_devices{node}`: USB devices sysfs lists.
    devices: Family<NodeLabels, Gauge>,
    /// `homelab_node_agent_scans_total{node}`: sysfs passes.
    scans: Family<NodeLabels, Counter>,
    /// `homelab_node_agent_report_failures_total{node}`: presence writes that failed.
    report_failures: Family<NodeLabels, Counter>,
}

impl AgentMetrics {
    /// Metrics of the agent on `node`, registered in `registry`.
    pub fn new(node: &str, registry: &mut Registry) -> Self {
        let metrics = Self {
            node: node.to_owned(),
            present: Family::default(),
            exported: Mutex::default(),
            devices: Family::default(),
            scans: Family::default(),
            report_failures: Family::default(),
        };
        registry.register(
            "node_agent_device_present",
            "1 while the pin's device is plugged into this node, else 0",
            metrics.present.clone(),
        );
        let labels = || [metrics.node_labels()];
        register_family(
            registry,
            "node_agent_usb_devices",
            "USB devices this node's sysfs lists",
            &metrics.devices,
            labels(),
        );
        register_family(
            registry,
            "node_agent_scans",
            "Passes over sysfs",
            &metrics.scans,
            labels(),
        );
        register_family(
            registry,
            "node_agent_report_failures",
            "Presence reports that could not be written (retried next pass)",
            &metrics.report_failures,
            labels(),
        );
        metrics
    }

    fn node_labels(&self) -> NodeLabels {
        [("node", self.node.clone())]
    }

    /// One sysfs pass saw `devices` USB devices.
    pub fn scanned(&self, devices: usize) {
        let labels = self.node_labels();
        self.scans.get_or_create(&labels).inc();
        self.devices
            .get_or_create(&labels)
            .set(i64::try_from(devices).unwrap_or(i64::MAX));
    }

    /// A presence report failed.
    pub fn report_failed(&self) {
        self.report_failures
            .get_or_create(&self.node_labels())
            .inc();
    }

    /// Which pins (namespace, name) have their device here; the others known to
    /// the agent are 0, and pins gone since the last pass lose their series.
    pub fn present(&self, pins: impl IntoIterator<Item = ((String, String), bool)>) {
        let mut now = BTreeSet::new();
        for ((namespace, name), here) in pins {
            let labels = [
                ("node", self.node.clone()),
                ("namespace", namespace.clone()),
                ("pin", name.clone()),
            ];
            self.present.get_or_create(&labels).set(i64::from(here));
            now.insert((namespace, name));
        }
        let mut exported = self
            .exported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (namespace, name) in exported.difference(&now) {
            self.present.remove(&[
                ("node", self.node.clone()),
                ("namespace", namespace.clone()),
                ("pin", name.clone()),
            ]);
        }
        *exported = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_pins_lose_their_series() {
        let mut metrics = homelab_kit::metrics::Metrics::new();
        let m = AgentMetrics::new("pi4-1", metrics.sub_registry("node-agent"));
        m.scanned(3);
        let pin = |name: &str| ("home".to_owned(), name.to_owned());
        m.present([(pin("zigbee"), true), (pin("zwave"), false)]);
        let text = metrics.render().unwrap();
        assert!(text.contains(r#"homelab_node_agent_device_present{controller="node-agent",node="pi4-1",namespace="home",pin="zigbee"} 1"#), "{text}");
        assert!(text.contains(r#"pin="zwave"} 0"#), "{text}");
        assert!(
            text.contains(
                r#"homelab_node_agent_usb_devices{controller="node-agent",node="pi4-1"} 3"#
            ),
            "{text}"
        );
        m.present([(pin("zigbee"), true)]);
        let text = metrics.render().unwrap();
        assert!(!text.contains("zwave"), "{text}");
    }
}
