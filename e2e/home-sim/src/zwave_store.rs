//! zwave-js-ui reads its broker, credentials, client name, prefix and radio from
//! `settings.json` in its store, which the SensorGateway operator's init container
//! merges from the spec before each start. The simulation reads the same file, so
//! the demo shows that merge working: a gateway whose file says nothing useful
//! does not come online, as a real zwave-js-ui would not.

use serde_json::Value;

use crate::config::Env;

/// Where zwave-js-ui keeps its store.
pub const STORE: &str = "/usr/src/app/store";

/// The settings file's values as the variables `config::from_env` reads, over
/// `env`; `MQTT_NAME` still wins for the client name, as in zwave-js-ui.
#[must_use]
pub fn overlay(env: &Env, settings: &Value) -> Env {
    let mut out = env.clone();
    let text = |path: &[&str]| {
        path.iter()
            .try_fold(settings, |v, k| v.get(*k))
            .and_then(|v| match v {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
    };
    if let Some(host) = text(&["mqtt", "host"]) {
        // zwave-js-ui's host carries the scheme; the port is a field of its own.
        let url = match text(&["mqtt", "port"]) {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        out.insert("HOMELAB_MQTT_URL".into(), url);
    }
    let auth = settings
        .pointer("/mqtt/auth")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for (key, var) in [
        ("username", "HOMELAB_MQTT_USERNAME"),
        ("password", "HOMELAB_MQTT_PASSWORD"),
    ] {
        match text(&["mqtt", key]).filter(|_| auth) {
            Some(v) => out.insert(var.into(), v),
            None => out.remove(var),
        };
    }
    let mut set = |path: &[&str], var: &str| {
        if let Some(v) = text(path) {
            out.insert(var.into(), v);
        }
    };
    set(&["mqtt", "prefix"], "HOMELAB_MQTT_TOPIC_PREFIX");
    set(&["mqtt", "name"], "HOME_SIM_CLIENT_NAME");
    set(&["zwave", "port"], "HOMELAB_RADIO");
    if let Some(name) = env.get("MQTT_NAME").filter(|n| !n.is_empty()) {
        out.insert("HOME_SIM_CLIENT_NAME".into(), name.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_merged_settings_decide_broker_name_prefix_and_radio() {
        let env = Env::from([
            (
                "HOMELAB_MQTT_URL".to_owned(),
                "mqtt://elsewhere:1".to_owned(),
            ),
            ("MQTT_NAME".to_owned(), "zwave-basement".to_owned()),
        ]);
        let settings = serde_json::json!({
            "mqtt": {"host": "mqtt://mosquitto", "port": 1883, "name": "old", "prefix": "zw",
                     "auth": true, "username": "zui", "password": "pw"},
            "zwave": {"port": "/dev/zwave"},
        });
        let out = overlay(&env, &settings);
        assert_eq!(out["HOMELAB_MQTT_URL"], "mqtt://mosquitto:1883");
        assert_eq!(out["HOMELAB_MQTT_USERNAME"], "zui");
        assert_eq!(out["HOMELAB_MQTT_TOPIC_PREFIX"], "zw");
        assert_eq!(out["HOME_SIM_CLIENT_NAME"], "zwave-basement");
        assert_eq!(out["HOMELAB_RADIO"], "/dev/zwave");
    }

    #[test]
    fn credentials_count_only_with_auth_on() {
        let env = Env::from([("HOMELAB_MQTT_USERNAME".to_owned(), "env".to_owned())]);
        let settings = serde_json::json!({"mqtt": {"auth": false, "username": "zui"}});
        assert!(!overlay(&env, &settings).contains_key("HOMELAB_MQTT_USERNAME"));
    }
}
