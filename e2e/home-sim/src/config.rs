//! What one simulated gateway is, read from its environment the way the real one
//! reads it: zigbee2mqtt from the `ZIGBEE2MQTT_CONFIG_*` variables the
//! SensorGateway operator injects, zwave-js-ui and ESPHome from the operator's
//! `HOMELAB_MQTT_*` ones.

use std::collections::BTreeMap;
use std::time::Duration;

/// The gateway being simulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// zigbee2mqtt 2.x.
    Zigbee2Mqtt,
    /// zwave-js-ui with its MQTT gateway.
    ZwaveJsUi,
    /// An ESPHome device on the network (no pod: a process beside the cluster).
    Esphome,
}

impl Kind {
    /// From the command line's first argument.
    ///
    /// # Errors
    /// A message naming the kinds there are.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "zigbee2mqtt" => Ok(Self::Zigbee2Mqtt),
            "zwave-js-ui" => Ok(Self::ZwaveJsUi),
            "esphome" => Ok(Self::Esphome),
            other => Err(format!(
                "unknown gateway {other:?}: zigbee2mqtt, zwave-js-ui or esphome"
            )),
        }
    }
}

/// Everything one simulated gateway needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Which gateway.
    pub kind: Kind,
    /// Broker host and port.
    pub broker: (String, u16),
    /// Broker user name and password.
    pub credentials: Option<(String, String)>,
    /// The MQTT client id.
    pub client_id: String,
    /// The base topic (zigbee2mqtt's base_topic, zwave-js-ui's prefix, ESPHome's node name).
    pub prefix: String,
    /// zwave-js-ui's MQTT client name (its `_CLIENTS/ZWAVE_GATEWAY-<name>`).
    pub client_name: String,
    /// The radio's device path, checked before the gateway says it is online.
    pub radio: Option<String>,
    /// The web UI's port, answered so that the pod's readiness probe passes.
    pub web_port: Option<u16>,
    /// The devices that report, by name under the base topic.
    pub devices: Vec<String>,
    /// How often each device reports.
    pub interval: Duration,
    /// Where `e2e/demo silence` publishes the topics to keep quiet.
    pub control_prefix: String,
}

/// The environment, as a map (so that tests need no process environment).
pub type Env = BTreeMap<String, String>;

/// The simulated gateway's settings.
///
/// # Errors
/// A message naming the variable that is missing or wrong.
pub fn from_env(kind: Kind, env: &Env) -> Result<Config, String> {
    let get = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
    let (url, user, password, prefix, radio, web_port) = match kind {
        Kind::Zigbee2Mqtt => (
            get("ZIGBEE2MQTT_CONFIG_MQTT_SERVER"),
            get("ZIGBEE2MQTT_CONFIG_MQTT_USER"),
            get("ZIGBEE2MQTT_CONFIG_MQTT_PASSWORD"),
            get("ZIGBEE2MQTT_CONFIG_MQTT_BASE_TOPIC").unwrap_or_else(|| "zigbee2mqtt".into()),
            get("ZIGBEE2MQTT_CONFIG_SERIAL_PORT"),
            Some(get("ZIGBEE2MQTT_CONFIG_FRONTEND_PORT").unwrap_or_else(|| "8080".into())),
        ),
        Kind::ZwaveJsUi => (
            get("HOMELAB_MQTT_URL"),
            get("HOMELAB_MQTT_USERNAME"),
            get("HOMELAB_MQTT_PASSWORD"),
            get("HOMELAB_MQTT_TOPIC_PREFIX").unwrap_or_else(|| "zwave".into()),
            get("HOMELAB_RADIO"),
            Some(get("HOME_SIM_PORT").unwrap_or_else(|| "8091".into())),
        ),
        Kind::Esphome => (
            get("HOMELAB_MQTT_URL"),
            get("HOMELAB_MQTT_USERNAME"),
            get("HOMELAB_MQTT_PASSWORD"),
            get("HOMELAB_MQTT_TOPIC_PREFIX")
                .ok_or("HOMELAB_MQTT_TOPIC_PREFIX (the ESPHome node name) is not set")?,
            None,
            None,
        ),
    };
    let url = url.ok_or("no broker: the MQTT server variable is not set")?;
    let broker = parse_broker(&url)?;
    let web_port = match web_port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("web port {p:?} is not a port"))?,
        ),
    };
    let interval = match get("HOME_SIM_INTERVAL") {
        None => Duration::from_secs(10),
        Some(s) => Duration::from_secs(
            s.trim_end_matches('s')
                .parse::<u64>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| format!("HOME_SIM_INTERVAL {s:?} is not a number of seconds"))?,
        ),
    };
    let devices = get("HOME_SIM_DEVICES")
        .map(|d| {
            d.split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let client_name = get("HOME_SIM_CLIENT_NAME").unwrap_or_else(|| "zwave-js-ui".into());
    let client_id = match kind {
        Kind::Zigbee2Mqtt => format!("zigbee2mqtt_{:x}", std::process::id()),
        Kind::ZwaveJsUi => format!("ZWAVE_GATEWAY-{client_name}"),
        Kind::Esphome => prefix.clone(),
    };
    Ok(Config {
        kind,
        broker,
        credentials: user.map(|u| (u, password.unwrap_or_default())),
        client_id,
        prefix,
        client_name,
        radio,
        web_port,
        devices,
        interval,
        control_prefix: get("HOME_SIM_CONTROL_TOPIC").unwrap_or_else(|| "homelab-demo".into()),
    })
}

/// `mqtt://host[:port]` → host and port (the demo's broker speaks plain MQTT).
fn parse_broker(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("mqtt://")
        .ok_or_else(|| format!("broker URL {url:?}: only mqtt:// is simulated"))?
        .trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((host, port)) => Ok((
            host.to_owned(),
            port.parse()
                .map_err(|_| format!("broker URL {url:?}: bad port"))?,
        )),
        None => Ok((rest.to_owned(), 1883)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn zigbee2mqtt_reads_what_the_operator_injects() {
        let c = from_env(
            Kind::Zigbee2Mqtt,
            &env(&[
                ("ZIGBEE2MQTT_CONFIG_MQTT_SERVER", "mqtt://mosquitto:1883"),
                ("ZIGBEE2MQTT_CONFIG_MQTT_USER", "zigbee2mqtt"),
                ("ZIGBEE2MQTT_CONFIG_MQTT_PASSWORD", "pw"),
                ("ZIGBEE2MQTT_CONFIG_SERIAL_PORT", "/dev/zigbee"),
                ("HOME_SIM_DEVICES", "garage-freezer-temperature, "),
            ]),
        );
        let c = c.as_ref().map_err(String::as_str);
        assert_eq!(c.map(|c| c.broker.clone()), Ok(("mosquitto".into(), 1883)));
        assert_eq!(c.map(|c| c.prefix.as_str()), Ok("zigbee2mqtt"));
        assert_eq!(c.map(|c| c.radio.as_deref()), Ok(Some("/dev/zigbee")));
        assert_eq!(c.map(|c| c.web_port), Ok(Some(8080)));
        assert_eq!(
            c.map(|c| c.devices.clone()),
            Ok(vec!["garage-freezer-temperature".to_owned()])
        );
    }

    #[test]
    fn zwave_js_ui_names_its_client() {
        let c = from_env(
            Kind::ZwaveJsUi,
            &env(&[
                ("HOMELAB_MQTT_URL", "mqtt://10.0.0.2"),
                ("HOME_SIM_INTERVAL", "5s"),
            ]),
        );
        let c = c.as_ref().map_err(String::as_str);
        assert_eq!(
            c.map(|c| c.client_id.as_str()),
            Ok("ZWAVE_GATEWAY-zwave-js-ui")
        );
        assert_eq!(c.map(|c| c.broker.1), Ok(1883));
        assert_eq!(c.map(|c| c.interval), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn what_is_missing_is_named() {
        let e = from_env(Kind::Esphome, &env(&[("HOMELAB_MQTT_URL", "mqtt://b:1")]));
        assert!(e.is_err_and(|e| e.contains("HOMELAB_MQTT_TOPIC_PREFIX")));
        let e = from_env(Kind::Zigbee2Mqtt, &env(&[]));
        assert!(e.is_err_and(|e| e.contains("no broker")));
        assert!(Kind::parse("hue").is_err());
    }
}
