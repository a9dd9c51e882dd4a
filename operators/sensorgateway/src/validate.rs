//! Pure checks of a spec, turning it into a [`Plan`] or a [`Problem`] that says
//! what to fix. The API server's schema already refuses most bad input (an
//! unknown preset, a malformed topic filter); these checks are the last line
//! for what reaches the controller anyway (a CRD installed without its
//! validation, an object stored under an older schema).

use std::time::Duration;

use homelab_api::SensorGateway;
use homelab_api::conditions::reasons;

use crate::mqtt::payload::Payloads;
use crate::mqtt::{broker, topic};
use crate::preset::{self, Preset};

/// Why a spec cannot be run, for the `Stalled` condition and the Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason.
    pub reason: &'static str,
    /// What to fix.
    pub message: String,
}

impl Problem {
    fn invalid(message: String) -> Self {
        Self {
            reason: reasons::INVALID_SPEC,
            message,
        }
    }
}

/// A sensor to keep an eye on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedSensor {
    /// Its name in `spec.sensors`.
    pub name: String,
    /// Its topic filter.
    pub filter: String,
    /// How long it may stay silent.
    pub stale_after: Duration,
}

/// What a valid spec means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The preset's defaults.
    pub preset: Preset,
    /// Image to run (none for an external gateway).
    pub image: Option<String>,
    /// Broker host, port and whether TLS is used.
    pub broker: (String, u16, bool),
    /// The availability topic.
    pub availability_topic: String,
    /// What online and offline look like there.
    pub payloads: Payloads,
    /// The sensors.
    pub sensors: Vec<PlannedSensor>,
    /// How long the gateway may be offline with a healthy pod before a restart.
    pub restart_after: Duration,
}

/// Checks `sg`'s spec.
///
/// # Errors
/// A [`Problem`] naming the field and what to put there.
pub fn validate(sg: &SensorGateway) -> Result<Plan, Problem> {
    let spec = &sg.spec;
    let broker = broker::parse_url(&spec.mqtt.url)
        .map_err(|e| Problem::invalid(format!("mqtt.url: {e}")))?;
    let image = if spec.external {
        None
    } else {
        Some(preset::image(sg).ok_or_else(|| {
            Problem::invalid("the Generic preset has no default image: set image".to_owned())
        })?)
    };
    let availability_topic = preset::availability_topic(sg).ok_or_else(|| {
        Problem::invalid(
            "no availability topic: set availability.topic (or topicPrefix for ESPHome)".to_owned(),
        )
    })?;
    if !topic::is_valid_topic(&availability_topic) {
        return Err(Problem::invalid(format!(
            "availability topic {availability_topic:?} is not a topic: no + or # wildcards"
        )));
    }
    let mut sensors = Vec::with_capacity(spec.sensors.len());
    for s in &spec.sensors {
        if !topic::is_valid_filter(&s.topic) {
            return Err(Problem::invalid(format!(
                "sensor {}: topic {:?} is not an MQTT topic filter: + only as a whole level, # only as the whole last level (such as garden/+/moisture)",
                s.name, s.topic
            )));
        }
        let stale_after = s
            .stale_after
            .to_std()
            .map_err(|e| Problem::invalid(format!("sensor {}: staleAfter: {e}", s.name)))?;
        if stale_after.is_zero() {
            return Err(Problem::invalid(format!(
                "sensor {}: staleAfter must be longer than 0, such as 10m",
                s.name
            )));
        }
        sensors.push(PlannedSensor {
            name: s.name.clone(),
            filter: s.topic.clone(),
            stale_after,
        });
    }
    let restart_after = spec
        .availability
        .restart_after
        .to_std()
        .map_err(|e| Problem::invalid(format!("availability.restartAfter: {e}")))?;
    Ok(Plan {
        preset: preset::preset(spec.preset),
        image,
        broker,
        availability_topic,
        payloads: preset::payloads(sg),
        sensors,
        restart_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::gateway;
    use serde_json::json;

    #[test]
    fn a_zigbee2mqtt_gateway_with_a_sensor() {
        let sg = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "sensors": [{"name": "tomato-bed", "topic": "zigbee2mqtt/moisture-1", "staleAfter": "10m"}]}),
        );
        let plan = validate(&sg).unwrap();
        assert_eq!(plan.availability_topic, "zigbee2mqtt/bridge/state");
        assert_eq!(plan.broker, ("mosquitto.home.svc".into(), 1883, false));
        assert_eq!(plan.sensors[0].stale_after, Duration::from_secs(600));
        assert_eq!(plan.restart_after, Duration::from_secs(120));
    }

    #[test]
    fn a_bad_sensor_filter_names_the_sensor() {
        let sg = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "sensors": [{"name": "attic", "topic": "attic/#/temp", "staleAfter": "5m"}]}),
        );
        let p = validate(&sg).unwrap_err();
        assert_eq!(p.reason, reasons::INVALID_SPEC);
        assert!(p.message.contains("sensor attic"), "{}", p.message);
        assert!(p.message.contains("topic filter"), "{}", p.message);
    }

    #[test]
    fn a_wildcard_availability_topic_is_refused() {
        let sg = gateway(
            "g",
            json!({"preset": "Generic", "image": "x", "availability": {"topic": "a/+"}}),
        );
        assert!(
            validate(&sg)
                .unwrap_err()
                .message
                .contains("availability topic")
        );
    }

    #[test]
    fn external_gateways_need_no_image() {
        let sg = gateway(
            "hub",
            json!({"preset": "Generic", "external": true, "availability": {"topic": "hub/status"}}),
        );
        assert_eq!(validate(&sg).unwrap().image, None);
        let sg = gateway(
            "g",
            json!({"preset": "Generic", "availability": {"topic": "a"}}),
        );
        assert!(validate(&sg).unwrap_err().message.contains("set image"));
    }

    #[test]
    fn zero_staleness_is_refused() {
        let sg = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "sensors": [{"name": "a", "topic": "a", "staleAfter": "0s"}]}),
        );
        assert!(validate(&sg).unwrap_err().message.contains("longer than 0"));
    }
}
