//! zwave-js-ui, configured from the spec. It reads its broker, credentials,
//! base topic and serial port only from `settings.json` in its store (the file
//! its UI writes), and its client name also from `MQTT_NAME`. An init container
//! of the same image (it has node) merges the spec's keys into that file before
//! each start, so what the user set in the UI survives, except what the spec
//! decides. Credentials reach the merge as environment variables from their
//! Secret, never as values in the pod spec.

use homelab_api::SensorGateway;
use k8s_openapi::api::core::v1::{Container, EnvVar, ResourceRequirements, VolumeMount};
use serde_json::{Map, Value, json};

use super::env::{self, CA_FILE, CLIENT_CERT_DIR};
use crate::preset::{self, ZWAVE_JS_SERVER_PORT};
use crate::validate::Plan;

/// Name of the init container that writes the settings.
pub const SETTINGS_CONTAINER: &str = "settings";
/// The merge, run by the image's own node.
const MERGE_SCRIPT: &str = include_str!("zwave_settings.js");
/// What the merge writes, as JSON (no secret values: those are named by
/// variable).
pub const SETTINGS_VARIABLE: &str = "HOMELAB_ZUI_SETTINGS";
const STORE_VARIABLE: &str = "HOMELAB_ZUI_STORE";
const USERNAME_VARIABLE: &str = "HOMELAB_MQTT_USERNAME";
const PASSWORD_VARIABLE: &str = "HOMELAB_MQTT_PASSWORD";

/// The settings the operator writes into zwave-js-ui's `settings.json`, in the
/// shape the merge script reads (`defaults`, `set`, `fromEnv`, `fromFiles`).
#[must_use]
pub fn settings(sg: &SensorGateway, plan: &Plan, radio: Option<&str>) -> Value {
    let mqtt = &sg.spec.mqtt;
    let (host, port, tls) = &plan.broker;
    let scheme = if *tls { "mqtts" } else { "mqtt" };
    // zwave-js-ui takes the scheme from the host field and joins host and port
    // itself; an IPv6 address needs its brackets back for that.
    let host = if host.contains(':') {
        format!("{scheme}://[{host}]")
    } else {
        format!("{scheme}://{host}")
    };
    let auth = mqtt.username_secret_ref.is_some();
    let mut set_mqtt = Map::new();
    set_mqtt.insert("disabled".into(), json!(false));
    set_mqtt.insert("host".into(), json!(host));
    set_mqtt.insert("port".into(), json!(port));
    set_mqtt.insert("auth".into(), json!(auth));
    if let Some(name) = preset::client_name(sg) {
        set_mqtt.insert("name".into(), json!(name));
    }
    if let Some(prefix) = preset::topic_prefix(sg) {
        set_mqtt.insert("prefix".into(), json!(prefix));
    }
    let mut env_mqtt = Map::new();
    if mqtt.username_secret_ref.is_some() {
        env_mqtt.insert("username".into(), json!(USERNAME_VARIABLE));
    }
    if mqtt.password_secret_ref.is_some() {
        env_mqtt.insert("password".into(), json!(PASSWORD_VARIABLE));
    }
    let mut file_mqtt = Map::new();
    if let Some(tls) = &mqtt.tls {
        set_mqtt.insert("allowSelfsigned".into(), json!(false));
        if tls.ca_secret_ref.is_some() {
            set_mqtt.insert("ca".into(), json!(CA_FILE));
            file_mqtt.insert("_ca".into(), json!(CA_FILE));
        }
        if tls.client_certificate_secret_name.is_some() {
            let cert = format!("{CLIENT_CERT_DIR}/tls.crt");
            let key = format!("{CLIENT_CERT_DIR}/tls.key");
            set_mqtt.insert("cert".into(), json!(cert));
            set_mqtt.insert("key".into(), json!(key));
            file_mqtt.insert("_cert".into(), json!(cert));
            file_mqtt.insert("_key".into(), json!(key));
        }
    }
    let mut set_zwave = Map::new();
    if let Some(r) = radio {
        set_zwave.insert("port".into(), json!(r));
    }
    // The Service offers the websocket to Home Assistant: it must listen there.
    set_zwave.insert("serverEnabled".into(), json!(true));
    set_zwave.insert("serverPort".into(), json!(ZWAVE_JS_SERVER_PORT));
    json!({
        // zwave-js-ui's own defaults for a new broker connection: a file
        // written before its UI ever saved would otherwise lack them, and
        // without `retain` its status would not outlive a reconnect.
        "defaults": {"mqtt": {"qos": 1, "retain": true, "clean": true, "reconnectPeriod": 3000}},
        "set": {"mqtt": set_mqtt, "zwave": set_zwave},
        "fromEnv": {"mqtt": env_mqtt},
        "fromFiles": {"mqtt": file_mqtt},
    })
}

/// The variables the gateway container itself gets: its documented
/// `MQTT_NAME`, which wins over the file, so the name always matches the
/// watched topic.
#[must_use]
pub fn container_env(sg: &SensorGateway) -> Vec<EnvVar> {
    preset::client_name(sg)
        .map(|name| vec![env::value("MQTT_NAME", &name)])
        .unwrap_or_default()
}

/// The init container that merges [`settings`] into `settings.json`.
#[must_use]
pub fn settings_container(
    sg: &SensorGateway,
    plan: &Plan,
    radio: Option<&str>,
    image: Option<String>,
    resources: ResourceRequirements,
    security_context: Option<k8s_openapi::api::core::v1::SecurityContext>,
    volume_mounts: Option<Vec<VolumeMount>>,
) -> Container {
    let mqtt = &sg.spec.mqtt;
    let mut vars = vec![
        env::value(STORE_VARIABLE, plan.preset.data_path),
        env::value(SETTINGS_VARIABLE, &settings(sg, plan, radio).to_string()),
    ];
    if let Some(r) = &mqtt.username_secret_ref {
        vars.push(env::secret(USERNAME_VARIABLE, r));
    }
    if let Some(r) = &mqtt.password_secret_ref {
        vars.push(env::secret(PASSWORD_VARIABLE, r));
    }
    Container {
        name: SETTINGS_CONTAINER.to_owned(),
        image,
        command: Some(vec![
            "node".to_owned(),
            "-e".to_owned(),
            MERGE_SCRIPT.to_owned(),
        ]),
        env: Some(vars),
        resources: Some(resources),
        security_context,
        volume_mounts,
        ..Container::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::gateway;
    use crate::validate::validate;

    fn zwave(spec: Value) -> (SensorGateway, Plan) {
        let sg = gateway("attic", spec);
        let plan = validate(&sg).unwrap();
        (sg, plan)
    }

    /// The attic's Z-Wave JS UI, logging in to the broker at `url` with a
    /// user name and password from the `mqtt` Secret.
    fn attic_with_credentials(url: &str) -> Value {
        json!({
            "preset": "ZWaveJSUI",
            "mqtt": {
                "url": url,
                "clientName": "zwave-attic",
                "usernameSecretRef": {"name": "mqtt", "key": "user"},
                "passwordSecretRef": {"name": "mqtt", "key": "password"},
                "allowPlaintextCredentials": true,
            },
        })
    }

    #[test]
    fn the_spec_decides_broker_name_topic_and_radio() {
        let mut spec = attic_with_credentials("mqtt://mosquitto.home.svc:1884");
        spec["topicPrefix"] = json!("home/zwave");
        let (sg, plan) = zwave(spec);
        let s = settings(&sg, &plan, Some("/dev/serial/by-id/usb-zwave"));
        assert_eq!(
            s["set"]["mqtt"],
            json!({"disabled": false, "host": "mqtt://mosquitto.home.svc", "port": 1884,
                   "auth": true, "name": "zwave-attic", "prefix": "home/zwave"})
        );
        assert_eq!(
            s["set"]["zwave"],
            json!({"port": "/dev/serial/by-id/usb-zwave", "serverEnabled": true, "serverPort": 3000})
        );
        assert_eq!(
            s["fromEnv"]["mqtt"],
            json!({"username": "HOMELAB_MQTT_USERNAME", "password": "HOMELAB_MQTT_PASSWORD"})
        );
        assert_eq!(s["defaults"]["mqtt"]["retain"], true);
        assert_eq!(container_env(&sg)[0].value.as_deref(), Some("zwave-attic"));
    }

    #[test]
    fn tls_material_is_read_from_its_mounted_files() {
        let (sg, plan) = zwave(json!({
            "preset": "ZWaveJSUI",
            "mqtt": {"url": "mqtts://[fd00::5]", "tls": {"caSecretRef": {"name": "ca", "key": "ca.crt"}}},
        }));
        let s = settings(&sg, &plan, None);
        assert_eq!(s["set"]["mqtt"]["host"], "mqtts://[fd00::5]");
        assert_eq!(s["set"]["mqtt"]["port"], 8883);
        assert_eq!(s["set"]["mqtt"]["auth"], false);
        assert_eq!(s["set"]["mqtt"]["name"], "zwave-js-ui");
        assert_eq!(s["fromFiles"]["mqtt"]["_ca"], CA_FILE);
        assert!(s["set"]["zwave"].get("port").is_none());
    }

    /// Runs the merge script with the machine's node, when it has one: the
    /// user's keys stay, the spec's win, secrets come from the environment.
    #[test]
    fn the_merge_keeps_what_the_user_set() {
        let Ok(out) = std::process::Command::new("node").arg("--version").output() else {
            eprintln!("no node here: the merge script is not run");
            return;
        };
        assert!(out.status.success());
        let (sg, plan) = zwave(attic_with_credentials("mqtt://mosquitto:1883"));
        let store = std::env::temp_dir().join(format!("zui-merge-{}", std::process::id()));
        std::fs::create_dir_all(&store).unwrap();
        let file = store.join("settings.json");
        std::fs::write(
            &file,
            json!({
                "zwave": {"port": "/dev/ttyACM0", "securityKeys": {"S0_Legacy": "ABCD"}},
                "mqtt": {"name": "old", "host": "localhost", "qos": 2},
                "gateway": {"type": 1, "hassDiscovery": true},
            })
            .to_string(),
        )
        .unwrap();
        let run = std::process::Command::new("node")
            .arg("-e")
            .arg(MERGE_SCRIPT)
            .env(STORE_VARIABLE, &store)
            .env(
                SETTINGS_VARIABLE,
                settings(&sg, &plan, Some("/dev/zwave")).to_string(),
            )
            .env(USERNAME_VARIABLE, "zui")
            .env(PASSWORD_VARIABLE, "s3cret")
            .output()
            .unwrap();
        assert!(run.status.success(), "{run:?}");
        let merged: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        std::fs::remove_dir_all(&store).unwrap();
        assert_eq!(merged["zwave"]["securityKeys"]["S0_Legacy"], "ABCD");
        assert_eq!(merged["zwave"]["port"], "/dev/zwave");
        assert_eq!(merged["gateway"]["hassDiscovery"], true);
        assert_eq!(merged["mqtt"]["name"], "zwave-attic");
        assert_eq!(merged["mqtt"]["host"], "mqtt://mosquitto");
        assert_eq!(merged["mqtt"]["qos"], 2, "the user's qos stays");
        assert_eq!(
            merged["mqtt"]["retain"], true,
            "a missing default is filled"
        );
        assert_eq!(merged["mqtt"]["username"], "zui");
        assert_eq!(merged["mqtt"]["password"], "s3cret");
    }

    #[test]
    fn an_unreadable_settings_file_is_left_alone() {
        if std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_err()
        {
            return;
        }
        let (sg, plan) = zwave(json!({"preset": "ZWaveJSUI"}));
        let store = std::env::temp_dir().join(format!("zui-bad-{}", std::process::id()));
        std::fs::create_dir_all(&store).unwrap();
        let file = store.join("settings.json");
        std::fs::write(&file, "{ not json").unwrap();
        let run = std::process::Command::new("node")
            .arg("-e")
            .arg(MERGE_SCRIPT)
            .env(STORE_VARIABLE, &store)
            .env(SETTINGS_VARIABLE, settings(&sg, &plan, None).to_string())
            .output()
            .unwrap();
        let kept = std::fs::read_to_string(&file).unwrap();
        std::fs::remove_dir_all(&store).unwrap();
        assert!(!run.status.success());
        assert!(String::from_utf8_lossy(&run.stderr).contains("is not valid JSON"));
        assert_eq!(kept, "{ not json");
    }
}
