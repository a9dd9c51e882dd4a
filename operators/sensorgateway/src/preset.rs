//! What each preset means: image, web UI port, where it keeps its data, and
//! where and how it says that it is online.

use crate::mqtt::payload::Payloads;
use homelab_api::SensorGateway;
use homelab_api::sensorgateway::GatewayPreset;

/// The defaults of one preset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preset {
    /// `app.kubernetes.io/name` of what it runs.
    pub app: &'static str,
    /// Default image; none for Generic.
    pub image: Option<&'static str>,
    /// Web UI port; none for Generic and external gateways.
    pub port: Option<i32>,
    /// Where the container keeps its state.
    pub data_path: &'static str,
    /// Base topic when `topicPrefix` is unset.
    pub default_prefix: Option<&'static str>,
    /// Ports the gateway serves besides its web UI, by name: zwave-js-ui's
    /// Z-Wave JS websocket, which Home Assistant's Z-Wave JS integration uses.
    pub extra_ports: &'static [(&'static str, i32)],
    /// The MQTT client name the gateway uses when `mqtt.clientName` is unset, when
    /// its availability topic carries it.
    pub default_client_name: Option<&'static str>,
}

/// Port of zwave-js-ui's Z-Wave JS websocket server (its own default).
pub const ZWAVE_JS_SERVER_PORT: i32 = 3000;

/// The preset's defaults.
#[must_use]
pub fn preset(p: GatewayPreset) -> Preset {
    match p {
        GatewayPreset::Zigbee2Mqtt => Preset {
            app: "zigbee2mqtt",
            image: Some("ghcr.io/koenkk/zigbee2mqtt:2.6.3"),
            port: Some(8080),
            data_path: "/app/data",
            default_prefix: Some("zigbee2mqtt"),
            extra_ports: &[],
            default_client_name: None,
        },
        GatewayPreset::ZwaveJsUi => Preset {
            app: "zwave-js-ui",
            image: Some("zwavejs/zwave-js-ui:11.5.2"),
            port: Some(8091),
            data_path: "/usr/src/app/store",
            default_prefix: Some("zwave"),
            extra_ports: &[("zwave-ws", ZWAVE_JS_SERVER_PORT)],
            default_client_name: Some("zwave-js-ui"),
        },
        GatewayPreset::Esphome => Preset {
            app: "esphome",
            image: Some("ghcr.io/esphome/esphome:2025.11.1"),
            port: Some(6052),
            data_path: "/config",
            default_prefix: None,
            extra_ports: &[],
            default_client_name: None,
        },
        GatewayPreset::Generic => Preset {
            app: "sensor-gateway",
            image: None,
            port: None,
            data_path: "/data",
            default_prefix: None,
            extra_ports: &[],
            default_client_name: None,
        },
    }
}

/// The gateway's base topic: `topicPrefix`, else the preset's.
#[must_use]
pub fn topic_prefix(sg: &SensorGateway) -> Option<String> {
    sg.spec
        .topic_prefix
        .clone()
        .or_else(|| preset(sg.spec.preset).default_prefix.map(str::to_owned))
}

/// The gateway's MQTT client name: `mqtt.clientName`, else the preset's own
/// default (zwave-js-ui's is `zwave-js-ui`); none when neither says.
#[must_use]
pub fn client_name(sg: &SensorGateway) -> Option<String> {
    sg.spec.mqtt.client_name.clone().or_else(|| {
        preset(sg.spec.preset)
            .default_client_name
            .map(str::to_owned)
    })
}

/// Where the gateway announces its availability: `availability.topic`, else the
/// preset's topic under the base topic (zwave-js-ui's carries its MQTT client
/// name, which the operator sets from the spec).
#[must_use]
pub fn availability_topic(sg: &SensorGateway) -> Option<String> {
    if let Some(topic) = &sg.spec.availability.topic {
        return Some(topic.clone());
    }
    let prefix = topic_prefix(sg)?;
    match sg.spec.preset {
        GatewayPreset::Zigbee2Mqtt => Some(format!("{prefix}/bridge/state")),
        GatewayPreset::ZwaveJsUi => Some(format!(
            "{prefix}/_CLIENTS/ZWAVE_GATEWAY-{}/status",
            client_name(sg)?
        )),
        GatewayPreset::Esphome => Some(format!("{prefix}/status")),
        GatewayPreset::Generic => None,
    }
}

/// The payloads meaning online and offline.
#[must_use]
pub fn payloads(sg: &SensorGateway) -> Payloads {
    let a = &sg.spec.availability;
    Payloads {
        online: a.online_payload.clone().unwrap_or_else(|| "online".into()),
        offline: a
            .offline_payload
            .clone()
            .unwrap_or_else(|| "offline".into()),
    }
}

/// The image to run: `image`, else the preset's.
#[must_use]
pub fn image(sg: &SensorGateway) -> Option<String> {
    sg.spec
        .image
        .clone()
        .or_else(|| preset(sg.spec.preset).image.map(str::to_owned))
}

/// The Service port: `service.port`, else the preset's.
#[must_use]
pub fn port(sg: &SensorGateway) -> Option<i32> {
    sg.spec.service.port.or(preset(sg.spec.preset).port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::gateway;
    use homelab_kit::image::is_pinned;
    use serde_json::json;

    #[test]
    fn every_default_image_is_pinned_to_a_release() {
        for p in [
            GatewayPreset::Zigbee2Mqtt,
            GatewayPreset::ZwaveJsUi,
            GatewayPreset::Esphome,
            GatewayPreset::Generic,
        ] {
            if let Some(image) = preset(p).image {
                assert!(is_pinned(image), "{p:?}: {image}");
            }
        }
    }

    #[test]
    fn zigbee2mqtt_announces_on_bridge_state() {
        let sg = gateway("z", json!({"preset": "Zigbee2MQTT"}));
        assert_eq!(
            availability_topic(&sg).as_deref(),
            Some("zigbee2mqtt/bridge/state")
        );
        let sg = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "topicPrefix": "z2m-attic"}),
        );
        assert_eq!(
            availability_topic(&sg).as_deref(),
            Some("z2m-attic/bridge/state")
        );
    }

    #[test]
    fn zwave_js_ui_announces_under_its_client_name() {
        // Not under the object's name: zwave-js-ui knows nothing of it.
        let sg = gateway("attic", json!({"preset": "ZWaveJSUI"}));
        assert_eq!(client_name(&sg).as_deref(), Some("zwave-js-ui"));
        assert_eq!(
            availability_topic(&sg).as_deref(),
            Some("zwave/_CLIENTS/ZWAVE_GATEWAY-zwave-js-ui/status")
        );
        let sg = gateway(
            "attic",
            json!({"preset": "ZWaveJSUI", "topicPrefix": "home/zwave",
                   "mqtt": {"url": "mqtt://mosquitto:1883", "clientName": "zwave-attic"}}),
        );
        assert_eq!(
            availability_topic(&sg).as_deref(),
            Some("home/zwave/_CLIENTS/ZWAVE_GATEWAY-zwave-attic/status")
        );
        let sg = gateway("z", json!({"preset": "Zigbee2MQTT"}));
        assert_eq!(client_name(&sg), None);
    }

    #[test]
    fn esphome_and_explicit_topics() {
        let sg = gateway(
            "hub",
            json!({"preset": "ESPHome", "topicPrefix": "garden-hub"}),
        );
        assert_eq!(
            availability_topic(&sg).as_deref(),
            Some("garden-hub/status")
        );
        let sg = gateway(
            "g",
            json!({"preset": "Generic", "image": "x", "availability": {"topic": "a/b", "onlinePayload": "UP"}}),
        );
        assert_eq!(availability_topic(&sg).as_deref(), Some("a/b"));
        assert_eq!(payloads(&sg).online, "UP");
        assert_eq!(payloads(&sg).offline, "offline");
    }

    #[test]
    fn images_and_ports() {
        let sg = gateway("z", json!({"preset": "Zigbee2MQTT"}));
        assert!(image(&sg).is_some_and(|i| i.starts_with("ghcr.io/koenkk/zigbee2mqtt:")));
        assert_eq!(port(&sg), Some(8080));
        let sg = gateway(
            "g",
            json!({"preset": "Generic", "image": "me/gw:1", "availability": {"topic": "a"}}),
        );
        assert_eq!(image(&sg).as_deref(), Some("me/gw:1"));
        assert_eq!(port(&sg), None);
    }
}
