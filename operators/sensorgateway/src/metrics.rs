//! The SensorGateway controller's own metrics. Labels are bounded by what the
//! user configured (one series per gateway, per listed sensor, per broker),
//! never by message text; a deleted gateway's series are removed.
//!
//! [`SensorGauges`] reads the sensors' freshness from the controller's cache at
//! each scrape, so every replica says the same and a deleted gateway's series go
//! with it.

use homelab_api::SensorGateway;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

type Object = [(&'static str, String); 2];
type SensorLabels = [(&'static str, String); 3];

/// Gauges and counters, cheap to clone (clones share the series).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    online: Family<Object, Gauge>,
    last_seen: Family<SensorLabels, Gauge>,
    restarts: Family<[(&'static str, &'static str); 1], Counter>,
    writes: Family<[(&'static str, &'static str); 1], Counter>,
}

impl Metrics {
    /// Registers the metrics in the controller's sub-registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sensorgateway_online",
            "Whether the gateway's availability topic says online (1), offline (0); absent while unknown",
            self.online.clone(),
        );
        registry.register(
            "sensorgateway_sensor_last_seen_timestamp_seconds",
            "Unix time of the last message on a listed sensor's topic",
            self.last_seen.clone(),
        );
        registry.register(
            "sensorgateway_restarts",
            "Gateway pods restarted by the operator, by reason",
            self.restarts.clone(),
        );
        registry.register(
            "sensorgateway_writes",
            "Writes to the API server (server-side applies and status writes), by kind",
            self.writes.clone(),
        );
    }

    /// Records what the availability topic says; `None` removes the series.
    pub fn set_online(&self, namespace: &str, name: &str, online: Option<bool>) {
        let labels = object(namespace, name);
        match online {
            Some(o) => {
                self.online.get_or_create(&labels).set(i64::from(o));
            }
            None => {
                self.online.remove(&labels);
            }
        }
    }

    /// Records when a sensor was last heard.
    pub fn set_last_seen(&self, namespace: &str, name: &str, sensor: &str, unix: i64) {
        let [a, b] = object(namespace, name);
        self.last_seen
            .get_or_create(&[a, b, ("sensor", sensor.to_owned())])
            .set(unix);
    }

    /// Counts a restart.
    pub fn restarted(&self, reason: &'static str) {
        self.restarts.get_or_create(&[("reason", reason)]).inc();
    }

    /// Counts a write of `kind`.
    pub fn wrote(&self, kind: &'static str) {
        self.writes.get_or_create(&[("kind", kind)]).inc();
    }

    /// Writes so far, all kinds.
    #[must_use]
    pub fn writes(&self) -> u64 {
        [
            "Deployment",
            "Service",
            "PersistentVolumeClaim",
            "SensorGatewayStatus",
        ]
        .iter()
        .map(|k| self.writes.get_or_create(&[("kind", k)]).get())
        .sum()
    }

    /// Restarts so far.
    #[must_use]
    pub fn restarts(&self) -> u64 {
        self.restarts.get_or_create(&[("reason", "offline")]).get()
    }

    /// Drops the series of a deleted gateway.
    pub fn forget(&self, namespace: &str, name: &str, sensors: &[String]) {
        let labels = object(namespace, name);
        self.online.remove(&labels);
        for s in sensors {
            let [a, b] = labels.clone();
            self.last_seen.remove(&[a, b, ("sensor", s.clone())]);
        }
    }
}

fn object(namespace: &str, name: &str) -> Object {
    [
        ("namespace", namespace.to_owned()),
        ("name", name.to_owned()),
    ]
}

/// `homelab_sensorgateway_sensor_stale{namespace,name,sensor}`: 1 while the
/// status says a listed sensor sent nothing for longer than its staleAfter, else
/// 0. One series per sensor in the status (the spec's list), none per message.
#[derive(Debug)]
pub struct SensorGauges {
    /// The controller's cache of gateways.
    store: Store<SensorGateway>,
}

impl SensorGauges {
    /// Gauges over the gateways in `store`.
    #[must_use]
    pub fn new(store: Store<SensorGateway>) -> Self {
        Self { store }
    }
}

impl Collector for SensorGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut metric = encoder.encode_descriptor(
            "sensorgateway_sensor_stale",
            "1 while a listed sensor has sent nothing for longer than its staleAfter, else 0",
            None,
            MetricType::Gauge,
        )?;
        for gateway in self.store.state() {
            let Some(status) = gateway.status.as_ref() else {
                continue;
            };
            let (namespace, name) = (gateway.namespace().unwrap_or_default(), gateway.name_any());
            for sensor in &status.sensors {
                let labels = [
                    ("namespace", namespace.as_str()),
                    ("name", name.as_str()),
                    ("sensor", sensor.name.as_str()),
                ];
                ConstGauge::new(i64::from(sensor.stale)).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use homelab_api::sensorgateway::SensorStatus;
    use kube::runtime::{reflector, watcher};
    use prometheus_client::registry::Registry;

    fn gateway(name: &str, sensors: &[(&str, bool)]) -> SensorGateway {
        let mut sg = crate::fixtures::gateway(name, serde_json::json!({"preset": "ESPHome"}));
        sg.status = Some(homelab_api::SensorGatewayStatus {
            sensors: sensors
                .iter()
                .map(|(sensor, stale)| SensorStatus {
                    name: (*sensor).to_owned(),
                    last_seen: None,
                    stale: *stale,
                })
                .collect(),
            ..Default::default()
        });
        sg
    }

    fn render(registry: &Registry) -> String {
        homelab_kit::metrics::render(registry).unwrap()
    }

    #[test]
    fn stale_sensors_follow_the_cache() {
        let (store, mut writer) = reflector::store::<SensorGateway>();
        writer.apply_watcher_event(&watcher::Event::Apply(gateway(
            "garden-hub",
            &[("tomato-bed", true), ("lawn", false)],
        )));
        let mut registry = Registry::with_prefix("homelab");
        registry.register_collector(Box::new(SensorGauges::new(store)));
        let text = render(&registry);
        for line in [
            r#"homelab_sensorgateway_sensor_stale{namespace="home",name="garden-hub",sensor="tomato-bed"} 1"#,
            r#"homelab_sensorgateway_sensor_stale{namespace="home",name="garden-hub",sensor="lawn"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        writer.apply_watcher_event(&watcher::Event::Delete(gateway("garden-hub", &[])));
        let text = render(&registry);
        assert!(!text.contains("garden-hub"), "{text}");
        assert!(
            text.contains("# TYPE homelab_sensorgateway_sensor_stale gauge"),
            "{text}"
        );
    }
}
