//! The SensorGateway controller against a real mosquitto and the real API
//! server: availability with zigbee2mqtt's retained state and Last Will, a
//! restart of a gateway that stays offline, sensors going stale and fresh, a
//! broker taken away and brought back, credentials kept out of logs and
//! status, bad input refused without touching the other gateways, and
//! zwave-js-ui configured from the spec and watched under its client name.

use homelab_kit::Operator as _;
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use homelab_api::conditions::{reasons, types};
use homelab_api::{ConditionedStatus, SensorGateway};
use homelab_sensorgateway::build::names::GATEWAY_LABEL;
use homelab_sensorgateway::references::{SECRET_KEY_NOT_FOUND, SECRET_NOT_FOUND};
use homelab_sensorgateway::{CONTROLLER_NAME, Controller, Hub, Metrics};
use homelab_test_support::mosquitto::Mosquitto;
use homelab_test_support::mqtt::{FakeGateway, mqtt_spec, publish};
use homelab_test_support::pods::pod_spec;
use homelab_test_support::status::said as condition;
use homelab_test_support::tools::kubectl;
use homelab_test_support::{
    Objects, TestNamespace, controller, create, events_about, wait_exists, wait_for,
    wait_for_event_reasons, wait_for_list,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);
const USER: &str = "homelab";
/// Looked for in every log line, Event and status: it must never appear.
const PASSWORD: &str = "s3cret-Zigbee-Pa55word";

/// Everything the controllers in this binary log, to look for secrets in.
fn captured_logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| Mutex::new(Vec::new()))
}

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut logs) = captured_logs().lock() {
            logs.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
        .with_writer(|| Capture)
        .with_ansi(false)
        .try_init();
}

/// The controller, running in this test's runtime until dropped.
struct Running {
    metrics: Metrics,
    hub: Hub,
    _task: controller::Running,
}

async fn setup(prefix: &str) -> (Client, TestNamespace, Objects<SensorGateway>, Running) {
    capture_logs();
    let ns = TestNamespace::with_crds(prefix).await.unwrap();
    let client = ns.client().clone();
    let running = Controller::new(
        client.clone(),
        controller::settings(CONTROLLER_NAME, ns.name()),
    );
    let (metrics, hub) = (running.metrics(), running.hub());
    let running = Running {
        metrics,
        hub,
        _task: controller::spawn(|shutdown| running.run_until(shutdown)),
    };
    let gateways = Objects::new(&ns, WAIT);
    (client, ns, gateways, running)
}

/// A broker that wants the test's credentials, the controller, and the Secret
/// that holds the credentials.
async fn setup_with_broker(
    prefix: &str,
) -> (
    Mosquitto,
    Client,
    TestNamespace,
    Objects<SensorGateway>,
    Running,
) {
    let broker = Mosquitto::start(Some((USER, PASSWORD))).unwrap();
    let (client, ns, gateways, running) = setup(prefix).await;
    credentials_secret(&ns).await;
    (broker, client, ns, gateways, running)
}

/// Publishes `payload` on `topic` as the test's user.
async fn say(broker: &Mosquitto, topic: &str, payload: &str, retain: bool) {
    publish(broker, (USER, PASSWORD), topic, payload, retain).await;
}

async fn credentials_secret(ns: &TestNamespace) {
    homelab_test_support::mqtt::credentials_secret(ns, (USER, PASSWORD))
        .await
        .unwrap();
}

/// Inline NFS for the gateway's data: the kwok cluster has no provisioner.
fn nfs_data() -> Value {
    json!({"nfs": {"server": "nas.home.arpa", "path": "/export/zigbee2mqtt"}})
}

async fn gateway_pods(ns: &TestNamespace, name: &str) -> Vec<Pod> {
    ns.api::<Pod>()
        .list(&ListParams::default().labels(&format!("{GATEWAY_LABEL}={name}")))
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn zigbee2mqtt_goes_offline_by_its_last_will_and_is_restarted() {
    let (broker, _client, ns, gateways, running) = setup_with_broker("sgw-lastwill").await;
    let gateway = FakeGateway::start(
        &broker,
        (USER, PASSWORD),
        "z2m-attic",
        "zigbee2mqtt/bridge/state",
    );
    gateways
        .apply(
            "attic",
            json!({
                "preset": "Zigbee2MQTT",
                "mqtt": mqtt_spec(&broker.url()),
                "radio": {"networkAddress": "tcp://192.168.1.40:6638", "adapter": "zstack"},
                "data": nfs_data(),
                "availability": {"restartAfter": "10s"},
            }),
        )
        .await;

    let sg = gateways.wait_condition("attic", types::READY, "True").await;
    let status = sg.status.as_ref().unwrap();
    assert_eq!(status.online, Some(true));
    assert!(status.is_condition_true(types::BROKER_CONNECTED));
    let first_pod = status.pod.clone().unwrap();

    // The Secret reaches the pod as a reference, never as a value.
    let deployment = ns.api::<Deployment>().get("attic").await.unwrap();
    let env = serde_json::to_value(&pod_spec(&deployment).containers[0].env).unwrap();
    let password_var = env
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "ZIGBEE2MQTT_CONFIG_MQTT_PASSWORD")
        .unwrap();
    assert_eq!(
        password_var["valueFrom"]["secretKeyRef"],
        json!({"name": "mqtt", "key": "password", "optional": false})
    );
    assert!(
        !serde_json::to_string(&deployment)
            .unwrap()
            .contains(PASSWORD)
    );

    // The gateway crashes: the broker sends its Last Will.
    let crashed = Instant::now();
    gateway.crash();
    let sg = gateways
        .wait_condition("attic", types::GATEWAY_ONLINE, "False")
        .await;
    let offline_seen = crashed.elapsed();
    assert_eq!(sg.status.as_ref().unwrap().online, Some(false));
    assert_eq!(condition(&sg, types::READY).0, reasons::OFFLINE);

    // Offline for restartAfter with a ready pod: the operator restarts it.
    let sg = gateways
        .wait_for("attic", |sg| {
            sg.status.as_ref().is_some_and(|s| s.last_restart.is_some())
        })
        .await;
    let restarted = crashed.elapsed();
    let record = sg.status.as_ref().unwrap().last_restart.clone().unwrap();
    assert_eq!(record.count, 1);
    assert!(
        record.reason.contains("offline over MQTT"),
        "{}",
        record.reason
    );
    let pods = wait_for_list(
        &ns.api::<Pod>(),
        &ListParams::default().labels(&format!("{GATEWAY_LABEL}=attic")),
        WAIT,
        move |pods: &[Pod]| {
            pods.iter()
                .any(|p| p.name_any() != first_pod && p.metadata.deletion_timestamp.is_none())
        },
    )
    .await
    .unwrap();
    assert!(!pods.is_empty());
    assert_eq!(running.metrics.restarts(), 1);
    wait_for_event_reasons(&ns, "attic", &["RestartedOffline"], WAIT)
        .await
        .unwrap();
    println!(
        "figure: Last Will -> GatewayOnline=False {:.1}s; Last Will -> pod restarted {:.1}s (restartAfter 10s)",
        offline_seen.as_secs_f64(),
        restarted.as_secs_f64()
    );

    // The password appears in no status, Event or log line.
    let all = serde_json::to_string(&gateways.api().get("attic").await.unwrap()).unwrap();
    assert!(!all.contains(PASSWORD));
    for e in events_about(&ns, "attic").await.unwrap() {
        assert!(!serde_json::to_string(&e).unwrap().contains(PASSWORD));
    }
    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    assert!(
        logs.contains("connected to the MQTT broker"),
        "the log capture works"
    );
    assert!(!logs.contains(PASSWORD), "the password is in a log line");
    drop(running);
}

#[tokio::test]
async fn a_silent_sensor_goes_stale_and_fresh_again() {
    let (broker, _client, ns, gateways, _running) = setup_with_broker("sgw-stale").await;
    say(&broker, "garden-hub/status", "online", true).await;
    gateways
        .apply(
            "garden-hub",
            json!({
                "preset": "ESPHome",
                "external": true,
                "topicPrefix": "garden-hub",
                "mqtt": mqtt_spec(&broker.url()),
                "sensors": [
                    {"name": "tomato-bed", "topic": "garden-hub/sensor/+/moisture", "staleAfter": "6s"},
                ],
            }),
        )
        .await;
    gateways
        .wait_condition("garden-hub", types::READY, "True")
        .await;
    say(
        &broker,
        "garden-hub/sensor/tomato-bed/moisture",
        "41",
        false,
    )
    .await;
    let last_message = Instant::now();
    let sg = gateways
        .wait_for("garden-hub", |sg| {
            sg.status.as_ref().is_some_and(|s| {
                s.is_condition_true(types::SENSORS_FRESH)
                    && s.sensors.first().is_some_and(|x| x.last_seen.is_some())
            })
        })
        .await;
    let sensor = &sg.status.as_ref().unwrap().sensors[0];
    assert_eq!(sensor.name, "tomato-bed");
    assert!(sensor.last_seen.is_some());

    // No more messages: stale after 6 s, named in the condition.
    let sg = gateways
        .wait_condition("garden-hub", types::SENSORS_FRESH, "False")
        .await;
    let deadline_to_condition = last_message
        .elapsed()
        .saturating_sub(Duration::from_secs(6));
    let (reason, message) = condition(&sg, types::SENSORS_FRESH);
    assert_eq!(reason, reasons::SENSOR_STALE);
    assert!(message.contains("tomato-bed"), "{message}");
    assert!(sg.status.as_ref().unwrap().sensors[0].stale);
    assert!(
        sg.status.as_ref().unwrap().is_condition_true(types::READY),
        "a stale sensor does not make the gateway unready"
    );
    // ...but it shows where users look: kubectl get's Stale column.
    assert_eq!(sg.status.as_ref().unwrap().stale_sensors, Some(1));
    for kind in ["sensorgateway", "homelab"] {
        let table = kubectl(&["get", kind, "-n", ns.name()]).unwrap();
        println!("kubectl get {kind}:\n{table}");
        // Columns are cut by the header's offsets: an empty cell (NODE, for an
        // external gateway) leaves no word behind.
        let header = table.lines().next().unwrap_or_default();
        let row = table
            .lines()
            .find(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|n| n.ends_with("garden-hub"))
            })
            .unwrap_or_default();
        let stale = header
            .find("STALE")
            .and_then(|at| row.get(at..))
            .and_then(|cell| cell.split_whitespace().next());
        assert_eq!(stale, Some("1"), "{table}");
    }
    println!(
        "figure: stale sensor deadline -> SensorsFresh=False {:.1}s",
        deadline_to_condition.as_secs_f64()
    );

    // It reports again: fresh.
    say(
        &broker,
        "garden-hub/sensor/tomato-bed/moisture",
        "38",
        false,
    )
    .await;
    let sg = gateways
        .wait_condition("garden-hub", types::SENSORS_FRESH, "True")
        .await;
    assert!(!sg.status.as_ref().unwrap().sensors[0].stale);
    wait_for_event_reasons(&ns, "garden-hub", &["SensorStale", "SensorsFresh"], WAIT)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_broker_restart_is_reported_and_restarts_no_gateway() {
    let (mut broker, _client, ns, gateways, running) = setup_with_broker("sgw-broker").await;
    let _gateway = FakeGateway::start(&broker, (USER, PASSWORD), "z2m-shed", "shed/bridge/state");
    gateways
        .apply(
            "shed",
            json!({
                "preset": "Zigbee2MQTT",
                "topicPrefix": "shed",
                "mqtt": mqtt_spec(&broker.url()),
                "data": nfs_data(),
                "availability": {"restartAfter": "5s"},
            }),
        )
        .await;
    let sg = gateways.wait_condition("shed", types::READY, "True").await;
    let pod = sg.status.as_ref().unwrap().pod.clone().unwrap();

    broker.stop();
    let sg = gateways
        .wait_condition("shed", types::BROKER_CONNECTED, "False")
        .await;
    let (reason, message) = condition(&sg, types::BROKER_CONNECTED);
    assert_eq!(reason, reasons::BROKER_UNREACHABLE);
    assert!(message.contains(&broker.port().to_string()), "{message}");
    assert_eq!(
        sg.status
            .as_ref()
            .unwrap()
            .condition(types::GATEWAY_ONLINE)
            .unwrap()
            .status,
        "Unknown"
    );
    // Longer than restartAfter (5 s) with the broker away must not count as the
    // gateway being offline: no restart within 8 s.
    let restarted = wait_for(
        &ns.api::<SensorGateway>(),
        "shed",
        Duration::from_secs(8),
        |sg: &SensorGateway| sg.status.as_ref().is_some_and(|s| s.last_restart.is_some()),
    )
    .await;
    assert!(
        restarted.is_err(),
        "restarted while the broker was away: {restarted:?}"
    );
    let down = Instant::now();
    broker.resume().unwrap();
    let sg = gateways.wait_condition("shed", types::READY, "True").await;
    println!(
        "figure: broker back -> Ready again {:.1}s",
        down.elapsed().as_secs_f64()
    );
    let status = sg.status.as_ref().unwrap();
    assert!(status.is_condition_true(types::BROKER_CONNECTED));
    assert!(status.last_restart.is_none(), "{:?}", status.last_restart);
    assert_eq!(status.pod.as_deref(), Some(pod.as_str()));
    assert_eq!(running.metrics.restarts(), 0);
    let names: Vec<String> = gateway_pods(&ns, "shed")
        .await
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(names, vec![pod]);
    wait_for_event_reasons(&ns, "shed", &["BrokerUnreachable", "BrokerConnected"], WAIT)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_deleted_gateway_leaves_no_broker_connection_behind() {
    let (broker, _client, _ns, gateways, running) = setup_with_broker("sgw-deleted").await;
    say(&broker, "attic/status", "online", true).await;
    gateways
        .apply(
            "attic",
            json!({"preset": "ESPHome", "external": true, "topicPrefix": "attic",
                   "mqtt": mqtt_spec(&broker.url())}),
        )
        .await;
    gateways.wait_condition("attic", types::READY, "True").await;
    assert_eq!(running.hub.connections(), 1);

    // A deleted object is never reconciled again: the controller notices it
    // gone from its cache and closes what it held for it.
    gateways
        .api()
        .delete("attic", &Default::default())
        .await
        .unwrap();
    homelab_test_support::poll_until(
        "the broker connection of the deleted gateway to close",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || async {
            match running.hub.connections() {
                0 => Ok(()),
                open => Err(format!("{open} open")),
            }
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn bad_input_is_refused_and_other_gateways_carry_on() {
    let (broker, _client, ns, gateways, running) = setup_with_broker("sgw-bad").await;
    say(&broker, "porch/status", "online", true).await;
    say(&broker, "hall/status", "online", true).await;
    let mqtt = mqtt_spec(&broker.url());
    for name in ["porch", "hall"] {
        gateways
            .apply(
                name,
                json!({"preset": "ESPHome", "external": true, "topicPrefix": name, "mqtt": mqtt}),
            )
            .await;
    }
    gateways.wait_condition("porch", types::READY, "True").await;
    gateways.wait_condition("hall", types::READY, "True").await;
    assert_eq!(
        running.hub.connections(),
        1,
        "gateways on one broker share one connection"
    );

    // A user name from a Secret that does not exist, and from a key the
    // Secret lacks.
    let user_from = |topic_prefix: &str, name: &str, key: &str| {
        json!({"preset": "ESPHome", "external": true, "topicPrefix": topic_prefix, "mqtt": {
            "url": broker.url(),
            "usernameSecretRef": {"name": name, "key": key},
            "allowPlaintextCredentials": true,
        }})
    };
    gateways
        .apply("no-secret", user_from("x", "mqtt-typo", "username"))
        .await;
    let sg = gateways
        .wait_condition("no-secret", types::STALLED, "True")
        .await;
    let (reason, message) = condition(&sg, types::STALLED);
    assert_eq!(reason, SECRET_NOT_FOUND);
    assert!(
        message.contains("mqtt-typo") && message.contains("mqtt.usernameSecretRef"),
        "{message}"
    );

    gateways
        .apply("no-key", user_from("y", "mqtt", "user"))
        .await;
    let sg = gateways
        .wait_condition("no-key", types::STALLED, "True")
        .await;
    assert_eq!(condition(&sg, types::STALLED).0, SECRET_KEY_NOT_FOUND);
    wait_for_event_reasons(&ns, "no-key", &[SECRET_KEY_NOT_FOUND], WAIT)
        .await
        .unwrap();

    // An unknown preset and an invalid topic filter never get past the API server.
    let err = gateways
        .try_apply(
            "bad-preset",
            json!({"preset": "Zigbee3MQTT", "mqtt": {"url": broker.url()}}),
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("Zigbee2MQTT") && text.contains("supported values"),
        "{text}"
    );
    let err = gateways
        .try_apply(
            "bad-topic",
            json!({"preset": "ESPHome", "external": true, "topicPrefix": "z", "mqtt": {"url": broker.url()},
                   "sensors": [{"name": "attic", "topic": "attic/#/temp", "staleAfter": "5m"}]}),
        )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("must be an MQTT topic filter"),
        "{err}"
    );

    // The good gateways never noticed.
    for name in ["porch", "hall"] {
        let sg = gateways.api().get(name).await.unwrap();
        let status = sg.status.as_ref().unwrap();
        assert!(status.is_condition_true(types::READY), "{name}: {status:?}");
        assert!(status.condition(types::STALLED).is_none());
    }
    assert_eq!(running.hub.connections(), 1);
    // And the stalled ones are not retried in a hot loop: the Secret is
    // looked up again every 30 s, so fixing it heals without a restart.
    let secret = json!({"stringData": {"user": USER}});
    ns.api::<Secret>()
        .patch("mqtt", &PatchParams::default(), &Patch::Merge(&secret))
        .await
        .unwrap();
    let sg = gateways
        .wait_for("no-key", |sg| {
            sg.status.as_ref().is_some_and(|s| {
                s.condition(types::STALLED).is_none()
                    && s.condition(types::BROKER_CONNECTED)
                        .is_some_and(|c| c.status == "False" && c.message.contains("refused"))
            })
        })
        .await;
    // A user name without the password the broker wants: said plainly.
    let (reason, message) = condition(&sg, types::BROKER_CONNECTED);
    assert_eq!(reason, reasons::BROKER_UNREACHABLE);
    assert!(message.contains("refused the connection"), "{message}");
}

#[tokio::test]
async fn a_gateway_that_keeps_failing_on_one_node_is_moved_off_it() {
    const PREFERRED: &str = "pi4-3";
    let (broker, _client, ns, gateways, running) = setup_with_broker("sgw-move").await;
    // Its coordinator is unreachable from that node, say: it never comes online.
    say(
        &broker,
        "cellar/bridge/state",
        r#"{"state":"offline"}"#,
        true,
    )
    .await;
    gateways
        .apply(
            "cellar",
            json!({
                "preset": "Zigbee2MQTT",
                "topicPrefix": "cellar",
                "mqtt": mqtt_spec(&broker.url()),
                "radio": {"networkAddress": "tcp://192.168.1.41:6638", "adapter": "zstack"},
                "data": nfs_data(),
                "availability": {"restartAfter": "5s"},
                "failover": {"preferredNodes": [PREFERRED]},
            }),
        )
        .await;
    let started = Instant::now();
    let sg = wait_for(
        &ns.api::<SensorGateway>(),
        "cellar",
        Duration::from_secs(150),
        |sg: &SensorGateway| {
            sg.status
                .as_ref()
                .and_then(|s| s.last_restart.as_ref())
                .is_some_and(|r| r.avoided_node.is_some())
        },
    )
    .await
    .unwrap();
    let record = sg.status.as_ref().unwrap().last_restart.clone().unwrap();
    assert_eq!(record.count, 3);
    assert_eq!(record.avoided_node.as_deref(), Some(PREFERRED));
    // The next pod runs elsewhere, and the Deployment keeps it off that node.
    let pods = wait_for_list(
        &ns.api::<Pod>(),
        &ListParams::default().labels(&format!("{GATEWAY_LABEL}=cellar")),
        WAIT,
        |pods: &[Pod]| {
            pods.iter().any(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_some_and(|n| n != PREFERRED)
            })
        },
    )
    .await
    .unwrap();
    let moved_to = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .find_map(|p| p.spec.as_ref()?.node_name.clone())
        .unwrap();
    // The avoided node reaches the Deployment one reconcile after the status.
    let avoids = json!({"key": "metadata.name", "operator": "NotIn", "values": [PREFERRED]});
    wait_for(&ns.api::<Deployment>(), "cellar", WAIT, move |d: &Deployment| {
        let affinity = serde_json::to_value(
            d.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .map(|s| &s.affinity),
        )
        .unwrap_or_default();
        affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0]
            == avoids
    })
    .await
    .unwrap();
    assert!(running.metrics.restarts() >= 3);
    println!(
        "figure: 3 restarts on {PREFERRED} then moved to {moved_to} in {:.1}s (restartAfter 5s)",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn a_tls_broker_is_trusted_through_the_ca_in_a_secret_only() {
    let broker = Mosquitto::start_tls(Some((USER, PASSWORD))).unwrap();
    let (tls_url, ca) = broker.tls().unwrap();
    let (_client, ns, gateways, _running) = setup("sgw-tls").await;
    credentials_secret(&ns).await;
    create(
        &ns.api::<Secret>(),
        json!({"metadata": {"name": "broker-ca"}, "stringData": {"ca.crt": ca}}),
    )
    .await
    .unwrap();
    say(&broker, "attic-hub/status", "online", true).await;
    let spec = |ca_ref: Value| {
        json!({
            "preset": "ESPHome",
            "external": true,
            "topicPrefix": "attic-hub",
            "mqtt": {
                "url": tls_url,
                "usernameSecretRef": {"name": "mqtt", "key": "username"},
                "passwordSecretRef": {"name": "mqtt", "key": "password"},
                "tls": ca_ref,
            },
        })
    };
    gateways
        .apply(
            "attic-hub",
            spec(json!({"caSecretRef": {"name": "broker-ca", "key": "ca.crt"}})),
        )
        .await;
    let sg = gateways
        .wait_condition("attic-hub", types::READY, "True")
        .await;
    assert!(
        condition(&sg, types::BROKER_CONNECTED)
            .1
            .contains("connected to 127.0.0.1")
    );

    // Without the CA the system's trust store applies, which does not know it.
    gateways
        .apply(
            "untrusted",
            json!({
                "preset": "ESPHome", "external": true, "topicPrefix": "attic-hub",
                "mqtt": {"url": tls_url, "tls": {}},
            }),
        )
        .await;
    let sg = gateways
        .wait_for("untrusted", |sg| {
            sg.status
                .as_ref()
                .and_then(|s| s.condition(types::BROKER_CONNECTED))
                .is_some_and(|c| c.message.contains("TLS"))
        })
        .await;
    let (reason, message) = condition(&sg, types::BROKER_CONNECTED);
    assert_eq!(reason, reasons::BROKER_UNREACHABLE);
    println!("untrusted broker: {message}");
}

/// zwave-js-ui gets its broker, credentials (by reference), client name, base
/// topic and radio from the spec, its websocket is in the Service, and the
/// operator watches the topic under the client name, not the object's name.
#[tokio::test]
async fn zwave_js_ui_is_configured_from_the_spec_and_watched_under_its_client_name() {
    let (broker, client, ns, gateways, _running) = setup_with_broker("sgw-zwave").await;
    gateways
        .apply(
            "zwave-attic",
            json!({
                "preset": "ZWaveJSUI",
                "mqtt": {
                    "url": broker.url(),
                    "clientName": "zwave-attic-1",
                    "usernameSecretRef": {"name": "mqtt", "key": "username"},
                    "passwordSecretRef": {"name": "mqtt", "key": "password"},
                    "allowPlaintextCredentials": true,
                },
                "radio": {"networkAddress": "tcp://192.168.1.41:4001"},
                "data": nfs_data(),
            }),
        )
        .await;
    let deployment = wait_exists(&ns.api::<Deployment>(), "zwave-attic", WAIT)
        .await
        .unwrap();
    let pod = pod_spec(&deployment);
    let init = &pod.init_containers.as_ref().unwrap()[0];
    let gateway = &pod.containers[0];
    assert_eq!(
        init.image, gateway.image,
        "the merge runs the gateway's own node"
    );
    let env = |c: &k8s_openapi::api::core::v1::Container, name: &str| {
        c.env
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("{} has no {name}", c.name))
    };
    assert_eq!(
        env(gateway, "MQTT_NAME").value.as_deref(),
        Some("zwave-attic-1")
    );
    let settings: Value =
        serde_json::from_str(env(init, "HOMELAB_ZUI_SETTINGS").value.as_deref().unwrap()).unwrap();
    let (host, port) = broker.url()["mqtt://".len()..]
        .rsplit_once(':')
        .map(|(h, p)| (h.to_owned(), p.parse::<u16>().unwrap()))
        .unwrap();
    assert_eq!(settings["set"]["mqtt"]["name"], "zwave-attic-1");
    assert_eq!(settings["set"]["mqtt"]["host"], format!("mqtt://{host}"));
    assert_eq!(settings["set"]["mqtt"]["port"], port);
    assert_eq!(settings["set"]["mqtt"]["prefix"], "zwave");
    assert_eq!(settings["set"]["mqtt"]["auth"], true);
    assert_eq!(settings["set"]["zwave"]["port"], "tcp://192.168.1.41:4001");
    assert_eq!(settings["set"]["zwave"]["serverEnabled"], true);
    // The password reaches the merge from its Secret, and appears nowhere as a value.
    let password = env(init, "HOMELAB_MQTT_PASSWORD");
    assert!(password.value.is_none());
    assert_eq!(
        password.value_from.unwrap().secret_key_ref.unwrap().name,
        "mqtt"
    );
    let rendered = serde_json::to_string(&deployment).unwrap();
    assert!(!rendered.contains(PASSWORD));

    let service = wait_exists(&ns.api::<Service>(), "zwave-attic", WAIT)
        .await
        .unwrap();
    let ports: Vec<(String, i32)> = service
        .spec
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap_or_default(), p.port))
        .collect();
    assert_eq!(
        ports,
        [("http".to_owned(), 8091), ("zwave-ws".to_owned(), 3000)]
    );

    // zwave-js-ui announces itself under its client name, as JSON.
    say(
        &broker,
        "zwave/_CLIENTS/ZWAVE_GATEWAY-zwave-attic-1/status",
        r#"{"value":true,"time":1767225600000}"#,
        true,
    )
    .await;
    let sg = gateways
        .wait_condition("zwave-attic", types::GATEWAY_ONLINE, "True")
        .await;
    let (_, message) = condition(&sg, types::GATEWAY_ONLINE);
    assert!(message.contains("ZWAVE_GATEWAY-zwave-attic-1"), "{message}");

    // What the API server holds, for a person to read.
    let stored = ns.api::<Deployment>().get("zwave-attic").await.unwrap();
    let mut shown = serde_json::to_value(&stored).unwrap();
    if let Some(meta) = shown["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    println!(
        "rendered Deployment:\n{}",
        serde_saphyr::to_string(&shown).unwrap()
    );
    println!(
        "settings merged into settings.json:\n{}",
        serde_json::to_string_pretty(&settings).unwrap()
    );
    drop(client);
}
