//! The SensorGateway controller's own metrics. Labels are bounded by what the
//! user configured (one series per gateway, per listed sensor, per broker),
//! never by message text; a deleted gateway's series are removed.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
