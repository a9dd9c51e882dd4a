//! The gateway container's environment: where the broker is, the credentials
//! (as references to their Secret, never as values), the base topic and the
//! radio, in the preset's own variables and in `HOMELAB_*` ones that a Generic
//! image can read.

use homelab_api::SensorGateway;
use homelab_api::references::SecretKeyRef;
use homelab_api::sensorgateway::GatewayPreset;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};

use crate::preset;

/// Where a CA from `mqtt.tls.caSecretRef` is mounted.
pub const CA_FILE: &str = "/etc/homelab/mqtt-ca/ca.crt";
/// Where a client certificate Secret is mounted.
pub const CLIENT_CERT_DIR: &str = "/etc/homelab/mqtt-client";

/// The environment of `sg`'s container; `radio` is the coordinator's address or
/// device path. The user's `env` comes last and wins over a variable of ours of
/// the same name.
#[must_use]
pub fn env(sg: &SensorGateway, radio: Option<&str>) -> Vec<EnvVar> {
    let mqtt = &sg.spec.mqtt;
    let prefix = preset::topic_prefix(sg);
    let mut vars = vec![value("HOMELAB_MQTT_URL", &mqtt.url)];
    if let Some(p) = &prefix {
        vars.push(value("HOMELAB_MQTT_TOPIC_PREFIX", p));
    }
    if let Some(r) = &mqtt.username_secret_ref {
        vars.push(secret("HOMELAB_MQTT_USERNAME", r));
    }
    if let Some(r) = &mqtt.password_secret_ref {
        vars.push(secret("HOMELAB_MQTT_PASSWORD", r));
    }
    if let Some(name) = preset::client_name(sg) {
        vars.push(value("HOMELAB_MQTT_CLIENT_NAME", &name));
    }
    if let Some(r) = radio {
        vars.push(value("HOMELAB_RADIO", r));
    }
    if let Some(adapter) = adapter(sg) {
        vars.push(value("HOMELAB_RADIO_ADAPTER", adapter));
    }
    match sg.spec.preset {
        GatewayPreset::Zigbee2Mqtt => zigbee2mqtt(sg, prefix.as_deref(), radio, &mut vars),
        GatewayPreset::ZwaveJsUi => vars.extend(super::zwave::container_env(sg)),
        GatewayPreset::Esphome | GatewayPreset::Generic => {}
    }
    for user in &sg.spec.env {
        vars.retain(|v| v.name != user.name);
        vars.push(user.clone());
    }
    vars
}

fn adapter(sg: &SensorGateway) -> Option<&'static str> {
    sg.spec.radio.as_ref()?.adapter.map(|a| a.as_str())
}

/// zigbee2mqtt reads any setting from `ZIGBEE2MQTT_CONFIG_<PATH>`.
fn zigbee2mqtt(
    sg: &SensorGateway,
    prefix: Option<&str>,
    radio: Option<&str>,
    vars: &mut Vec<EnvVar>,
) {
    let mqtt = &sg.spec.mqtt;
    vars.push(value("ZIGBEE2MQTT_CONFIG_MQTT_SERVER", &mqtt.url));
    if let Some(p) = prefix {
        vars.push(value("ZIGBEE2MQTT_CONFIG_MQTT_BASE_TOPIC", p));
    }
    if let Some(id) = &mqtt.client_name {
        vars.push(value("ZIGBEE2MQTT_CONFIG_MQTT_CLIENT_ID", id));
    }
    if let Some(r) = &mqtt.username_secret_ref {
        vars.push(secret("ZIGBEE2MQTT_CONFIG_MQTT_USER", r));
    }
    if let Some(r) = &mqtt.password_secret_ref {
        vars.push(secret("ZIGBEE2MQTT_CONFIG_MQTT_PASSWORD", r));
    }
    if let Some(tls) = &mqtt.tls {
        if tls.ca_secret_ref.is_some() {
            vars.push(value("ZIGBEE2MQTT_CONFIG_MQTT_CA", CA_FILE));
        }
        if tls.client_certificate_secret_name.is_some() {
            vars.push(value(
                "ZIGBEE2MQTT_CONFIG_MQTT_CERT",
                &format!("{CLIENT_CERT_DIR}/tls.crt"),
            ));
            vars.push(value(
                "ZIGBEE2MQTT_CONFIG_MQTT_KEY",
                &format!("{CLIENT_CERT_DIR}/tls.key"),
            ));
        }
    }
    if let Some(r) = radio {
        vars.push(value("ZIGBEE2MQTT_CONFIG_SERIAL_PORT", r));
    }
    // zigbee-herdsman probes a USB stick for its type, but cannot probe one
    // behind tcp://: without the type, zigbee2mqtt does not start.
    if let Some(a) = adapter(sg) {
        vars.push(value("ZIGBEE2MQTT_CONFIG_SERIAL_ADAPTER", a));
    }
    vars.push(value("ZIGBEE2MQTT_CONFIG_FRONTEND_ENABLED", "true"));
    if let Some(port) = preset::preset(sg.spec.preset).port {
        vars.push(value("ZIGBEE2MQTT_CONFIG_FRONTEND_PORT", &port.to_string()));
    }
}

pub(super) fn value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

pub(super) fn secret(name: &str, r: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::gateway;
    use serde_json::json;

    fn z2m() -> SensorGateway {
        gateway(
            "z",
            json!({
                "preset": "Zigbee2MQTT",
                "mqtt": {
                    "url": "mqtt://mosquitto:1883",
                    "usernameSecretRef": {"name": "mqtt", "key": "user"},
                    "passwordSecretRef": {"name": "mqtt", "key": "password"},
                },
                "env": [{"name": "TZ", "value": "Europe/Berlin"}, {"name": "ZIGBEE2MQTT_CONFIG_FRONTEND_ENABLED", "value": "false"}],
            }),
        )
    }

    #[test]
    fn credentials_are_references_never_values() {
        let vars = env(&z2m(), Some("tcp://192.168.1.40:6638"));
        let password = vars
            .iter()
            .find(|v| v.name == "ZIGBEE2MQTT_CONFIG_MQTT_PASSWORD")
            .unwrap();
        assert!(password.value.is_none());
        let sel = password
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!((sel.name.as_str(), sel.key.as_str()), ("mqtt", "password"));
        assert!(
            vars.iter()
                .any(|v| v.name == "HOMELAB_MQTT_PASSWORD" && v.value.is_none())
        );
    }

    #[test]
    fn zigbee2mqtt_gets_its_radio_and_topic() {
        let vars = env(&z2m(), Some("tcp://192.168.1.40:6638"));
        let get = |n: &str| {
            vars.iter()
                .find(|v| v.name == n)
                .and_then(|v| v.value.clone())
        };
        assert_eq!(
            get("ZIGBEE2MQTT_CONFIG_SERIAL_PORT").as_deref(),
            Some("tcp://192.168.1.40:6638")
        );
        assert_eq!(
            get("ZIGBEE2MQTT_CONFIG_MQTT_BASE_TOPIC").as_deref(),
            Some("zigbee2mqtt")
        );
        assert_eq!(get("TZ").as_deref(), Some("Europe/Berlin"));
    }

    #[test]
    fn a_network_coordinator_gets_its_adapter_type() {
        let sg = gateway(
            "z",
            json!({
                "preset": "Zigbee2MQTT",
                "mqtt": {"url": "mqtt://mosquitto:1883", "clientName": "z2m-attic"},
                "radio": {"networkAddress": "tcp://192.168.1.40:6638", "adapter": "ember"},
            }),
        );
        let vars = env(&sg, Some("tcp://192.168.1.40:6638"));
        let get = |n: &str| {
            vars.iter()
                .find(|v| v.name == n)
                .and_then(|v| v.value.clone())
        };
        assert_eq!(
            get("ZIGBEE2MQTT_CONFIG_SERIAL_ADAPTER").as_deref(),
            Some("ember")
        );
        assert_eq!(get("HOMELAB_RADIO_ADAPTER").as_deref(), Some("ember"));
        assert_eq!(
            get("ZIGBEE2MQTT_CONFIG_MQTT_CLIENT_ID").as_deref(),
            Some("z2m-attic")
        );
        assert!(
            env(&z2m(), None)
                .iter()
                .all(|v| v.name != "ZIGBEE2MQTT_CONFIG_SERIAL_ADAPTER")
        );
    }

    #[test]
    fn zwave_js_ui_gets_its_client_name() {
        let sg = gateway("attic", json!({"preset": "ZWaveJSUI"}));
        let vars = env(&sg, None);
        let name = vars.iter().find(|v| v.name == "MQTT_NAME").unwrap();
        assert_eq!(name.value.as_deref(), Some("zwave-js-ui"));
        assert!(vars.iter().all(|v| !v.name.starts_with("ZIGBEE2MQTT_")));
    }

    #[test]
    fn the_users_variable_wins_and_appears_once() {
        let vars = env(&z2m(), None);
        let frontend: Vec<_> = vars
            .iter()
            .filter(|v| v.name == "ZIGBEE2MQTT_CONFIG_FRONTEND_ENABLED")
            .collect();
        assert_eq!(frontend.len(), 1);
        assert_eq!(frontend[0].value.as_deref(), Some("false"));
    }
}
