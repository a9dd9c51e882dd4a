//! Pure checks of a spec, turning it into a [`Plan`] or a [`Problem`] that says
//! what to fix. The API server's schema already refuses most bad input (an
//! unknown preset, a malformed topic filter); these checks are the last line
//! for what reaches the controller anyway (a CRD installed without its
//! validation, an object stored under an older schema).

use std::time::Duration;

use homelab_api::SensorGateway;
use homelab_api::conditions::reasons;
use homelab_api::conditions::reasons::HOST_PATH_NOT_ALLOWED;
use homelab_api::sensorgateway::GatewayPreset;
use homelab_kit::settings::AllowedHostPaths;

use crate::mqtt::payload::Payloads;
use crate::mqtt::{broker, topic};
use crate::preset::{self, Preset};

/// Why a spec cannot be run, for the `Stalled` condition and the Event.
pub use homelab_kit::Problem;

fn invalid(message: String) -> Problem {
    Problem::new(reasons::INVALID_SPEC, message)
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
    let broker =
        broker::parse_url(&spec.mqtt.url).map_err(|e| invalid(format!("mqtt.url: {e}")))?;
    let image = if spec.external {
        None
    } else {
        Some(preset::image(sg).ok_or_else(|| {
            invalid("the Generic preset has no default image: set image".to_owned())
        })?)
    };
    if let Some(resources) = &spec.resources {
        homelab_kit::apply::check_resources("spec.resources", resources).map_err(invalid)?;
    }
    let availability_topic = preset::availability_topic(sg).ok_or_else(|| {
        invalid(
            "no availability topic: set availability.topic (or topicPrefix for ESPHome)".to_owned(),
        )
    })?;
    if !topic::is_valid_topic(&availability_topic) {
        return Err(invalid(format!(
            "availability topic {availability_topic:?} is not a topic: no + or # wildcards"
        )));
    }
    check_radio(sg)?;
    let mut sensors = Vec::with_capacity(spec.sensors.len());
    for s in &spec.sensors {
        if !topic::is_valid_filter(&s.topic) {
            return Err(invalid(format!(
                "sensor {}: topic {:?} is not an MQTT topic filter: + only as a whole level, # only as the whole last level (such as garden/+/moisture)",
                s.name, s.topic
            )));
        }
        let stale_after = s
            .stale_after
            .to_std()
            .map_err(|e| invalid(format!("sensor {}: staleAfter: {e}", s.name)))?;
        if stale_after.is_zero() {
            return Err(invalid(format!(
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
        .map_err(|e| invalid(format!("availability.restartAfter: {e}")))?;
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

/// The schema's radio rules, for an object that reached the controller without
/// them: zigbee2mqtt needs the type of a coordinator on the network, and
/// zwave-js-ui takes none.
fn check_radio(sg: &SensorGateway) -> Result<(), Problem> {
    let Some(radio) = &sg.spec.radio else {
        return Ok(());
    };
    match sg.spec.preset {
        GatewayPreset::Zigbee2Mqtt
            if radio.network_address.is_some() && radio.adapter.is_none() =>
        {
            Err(invalid(
                "zigbee2mqtt cannot detect the type of a coordinator on the network: set radio.adapter (zstack, ember, deconz, zigate, zboss, zoh or ezsp)".to_owned(),
            ))
        }
        GatewayPreset::ZwaveJsUi if radio.adapter.is_some() => Err(invalid(
            "radio.adapter names a Zigbee coordinator's type; zwave-js-ui needs none: remove it"
                .to_owned(),
        )),
        _ => Ok(()),
    }
}

/// Checks that a hostPath data volume lies where the administrator allows
/// host paths: a gateway's pod mounts it read-write.
///
/// # Errors
/// A [`Problem`] naming the path and the setting that allows it.
pub fn check_host_paths(sg: &SensorGateway, allowed: &AllowedHostPaths) -> Result<(), Problem> {
    // An external gateway runs no pod, so mounts nothing.
    if sg.spec.external {
        return Ok(());
    }
    match &sg.spec.data.host_path {
        Some(host) => allowed
            .check("spec.data.hostPath.path", &host.path)
            .map_err(|refused| Problem {
                reason: HOST_PATH_NOT_ALLOWED,
                message: refused.to_string(),
            }),
        None => Ok(()),
    }
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
    fn a_host_path_outside_the_allow_list_is_refused() {
        let sg = |path: &str| {
            gateway(
                "z",
                json!({"preset": "Zigbee2MQTT", "data": {"hostPath": {"node": "pi4-1", "path": path}}}),
            )
        };
        let allowed = AllowedHostPaths::parse("/srv/z2m").unwrap();
        assert_eq!(check_host_paths(&sg("/srv/z2m/data"), &allowed), Ok(()));
        for path in ["/srv/z2m2", "/var/lib/kubelet", "/srv/z2m/../../etc"] {
            let p = check_host_paths(&sg(path), &allowed).unwrap_err();
            assert_eq!(p.reason, HOST_PATH_NOT_ALLOWED);
            assert!(
                p.message.contains(path)
                    && p.message.contains("spec.data.hostPath.path")
                    && p.message.contains("hostPaths.allowed"),
                "{}",
                p.message
            );
        }
        let p = check_host_paths(&sg("/srv/z2m"), &AllowedHostPaths::none()).unwrap_err();
        assert!(p.message.contains("allows no host paths"), "{}", p.message);
        let claim = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "data": {"volumeClaim": {"size": "1Gi"}}}),
        );
        assert_eq!(check_host_paths(&claim, &AllowedHostPaths::none()), Ok(()));
    }

    #[test]
    fn a_resource_that_is_no_quantity_names_its_field() {
        let sg = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "resources": {"requests": {"cpu": "a bit"}}}),
        );
        let p = validate(&sg).unwrap_err();
        assert_eq!(p.reason, reasons::INVALID_SPEC);
        assert!(
            p.message.contains("spec.resources.requests.cpu"),
            "{}",
            p.message
        );
    }

    #[test]
    fn a_network_coordinator_without_its_type_is_refused() {
        let sg = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "radio": {"networkAddress": "tcp://192.168.1.40:6638"}}),
        );
        let p = validate(&sg).unwrap_err();
        assert!(p.message.contains("radio.adapter"), "{}", p.message);
        let sg = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "radio": {"networkAddress": "tcp://192.168.1.40:6638", "adapter": "zstack"}}),
        );
        assert!(validate(&sg).is_ok());
        let sg = gateway(
            "zw",
            json!({"preset": "ZWaveJSUI", "radio": {"networkAddress": "tcp://192.168.1.41:4001", "adapter": "zstack"}}),
        );
        assert!(validate(&sg).unwrap_err().message.contains("zwave-js-ui"));
        let sg = gateway(
            "zw",
            json!({"preset": "ZWaveJSUI", "radio": {"networkAddress": "tcp://192.168.1.41:4001"}}),
        );
        assert!(validate(&sg).is_ok());
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
