//! The topics and payloads each gateway publishes, as the real ones do:
//! zigbee2mqtt 2.x's `bridge/state` JSON and device state objects, zwave-js-ui's
//! client status and node `lastActive` values, ESPHome's `status` and plain
//! sensor states (retained, as ESPHome retains them).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{Config, Kind};

/// One message to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: String,
    /// Whether the broker keeps it for later subscribers.
    pub retain: bool,
}

/// Where the gateway says whether it is online, and its two payloads: the online
/// one published on connect, the offline one as its Last Will and on shutdown.
#[must_use]
pub fn availability(c: &Config, online: bool) -> Message {
    let (topic, payload) = match c.kind {
        Kind::Zigbee2Mqtt => (
            format!("{}/bridge/state", c.prefix),
            format!(
                r#"{{"state":"{}"}}"#,
                if online { "online" } else { "offline" }
            ),
        ),
        Kind::ZwaveJsUi => (
            format!(
                "{}/_CLIENTS/ZWAVE_GATEWAY-{}/status",
                c.prefix, c.client_name
            ),
            format!(r#"{{"value":{online},"time":{}}}"#, now_ms()),
        ),
        Kind::Esphome => (
            format!("{}/status", c.prefix),
            if online { "online" } else { "offline" }.to_owned(),
        ),
    };
    Message {
        topic,
        payload,
        retain: true,
    }
}

/// What `device` reports on its `tick`-th round.
#[must_use]
pub fn report(c: &Config, device: &str, tick: u64) -> Message {
    // A value that moves a little each round, without a random source.
    let wobble = f64::from(u32::try_from(tick % 7).unwrap_or(0)) / 10.0 - 0.3;
    match c.kind {
        Kind::Zigbee2Mqtt => Message {
            topic: format!("{}/{device}", c.prefix),
            payload: format!(
                r#"{{"temperature":{:.1},"humidity":{:.0},"battery":{},"linkquality":{}}}"#,
                -18.5 + wobble,
                62.0 + wobble * 10.0,
                97 - (tick / 500).min(90),
                120 + tick % 13,
            ),
            retain: false,
        },
        Kind::ZwaveJsUi => {
            let ms = now_ms();
            Message {
                topic: format!("{}/{device}/lastActive", c.prefix),
                payload: format!(r#"{{"time":{ms},"value":{ms}}}"#),
                retain: false,
            }
        }
        Kind::Esphome => Message {
            topic: format!("{}/sensor/{device}/state", c.prefix),
            payload: format!("{:.1}", 41.0 + wobble * 5.0),
            retain: true,
        },
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Whether `topic` matches the MQTT subscription filter `filter` (`+` one level,
/// `#` the rest).
#[must_use]
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match (level, topic_levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (l, Some(t)) if l == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, from_env};

    fn config(kind: Kind, prefix: &str) -> Config {
        let env: Env = [
            ("HOMELAB_MQTT_URL", "mqtt://b"),
            ("ZIGBEE2MQTT_CONFIG_MQTT_SERVER", "mqtt://b"),
            ("HOMELAB_MQTT_TOPIC_PREFIX", prefix),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        match from_env(kind, &env) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn each_gateway_announces_where_the_operator_looks() {
        let z = availability(&config(Kind::Zigbee2Mqtt, "x"), false);
        assert_eq!(z.topic, "zigbee2mqtt/bridge/state");
        assert_eq!(z.payload, r#"{"state":"offline"}"#);
        let zw = availability(&config(Kind::ZwaveJsUi, "zwave"), true);
        assert_eq!(zw.topic, "zwave/_CLIENTS/ZWAVE_GATEWAY-zwave-js-ui/status");
        assert!(zw.payload.starts_with(r#"{"value":true,"#));
        let e = availability(&config(Kind::Esphome, "garden-hub"), true);
        assert_eq!(
            (e.topic.as_str(), e.payload.as_str()),
            ("garden-hub/status", "online")
        );
    }

    #[test]
    fn reports_land_under_the_watched_topics() {
        let r = report(&config(Kind::Esphome, "garden-hub"), "lawn_moisture", 3);
        assert_eq!(r.topic, "garden-hub/sensor/lawn_moisture/state");
        assert!(r.payload.parse::<f64>().is_ok());
        let r = report(
            &config(Kind::ZwaveJsUi, "zwave"),
            "basement/water_leak_sensor",
            0,
        );
        assert!(matches("zwave/basement/water_leak_sensor/+", &r.topic));
    }

    #[test]
    fn filters_match_as_mqtt_does() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/#", "a/b/c"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        assert!(matches("a/b", "a/b"));
    }
}
