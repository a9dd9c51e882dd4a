//! The controllers do their work with nothing but the credentials the chart
//! gives them: a TokenRequest token of each ServiceAccount the chart created,
//! so a missing or too-narrow RBAC rule fails here, not in a user's home.

use homelab_kit::Operator as _;
use std::time::Duration;

use homelab_api::conditions::types;
use homelab_api::{MediaServer, SensorGateway};
use homelab_test_support::mosquitto::Mosquitto;
use homelab_test_support::mqtt::{FakeGateway, credentials_secret, mqtt_spec};
use homelab_test_support::storage::nfs_claim;
use homelab_test_support::{
    TestNamespace, apply, client, client_as, controller, install_crds, wait_condition, wait_for,
};
use kube::Client;
use serde_json::json;

use crate::chart::{chart_dir, release};

const WAIT: Duration = Duration::from_secs(120);
const CREDENTIALS: (&str, &str) = ("homelab", "tokens-Pa55");

#[tokio::test]
async fn controllers_do_their_work_under_the_charts_service_account_tokens() {
    let admin = client().await.unwrap();
    install_crds(&admin).await.unwrap();
    let (namespace, release) = release(&admin, "chart-tokens").await;
    let home = TestNamespace::new(&admin, "tokens-home").await.unwrap();
    // The chart's Deployments at 0: kwok would run nothing in them. The binaries'
    // code runs here, with the tokens of the chart's ServiceAccounts. The home is
    // named in `namespaces`: Secrets are read and pods deleted only there.
    let namespaces = format!("namespaces={{{}}}", home.name());
    release.install(
        &chart_dir(),
        &[
            "--set",
            &namespaces,
            "--set",
            "crds.install=false",
            "--set",
            "mediaServer.replicas=0",
            "--set",
            "usbDevicePin.replicas=0",
            "--set",
            "sensorGateway.replicas=0",
        ],
    );
    let account = |component: &str| format!("{}-homelab-operators-{component}", release.name);
    let as_mediaserver: Client =
        client_as(&admin, namespace.name(), &account("mediaserver-controller"))
            .await
            .unwrap();
    let as_sensorgateway: Client = client_as(
        &admin,
        namespace.name(),
        &account("sensorgateway-controller"),
    )
    .await
    .unwrap();

    let mediaserver = homelab_mediaserver::Controller::new(
        as_mediaserver,
        controller::settings(homelab_mediaserver::CONTROLLER_NAME, home.name()),
    );
    let sensorgateway = homelab_sensorgateway::Controller::new(
        as_sensorgateway,
        controller::settings(homelab_sensorgateway::CONTROLLER_NAME, home.name()),
    );
    let running = [
        controller::spawn(|shutdown| mediaserver.run_until(shutdown)),
        controller::spawn(|shutdown| sensorgateway.run_until(shutdown)),
    ];

    // A MediaServer: Deployment, Service, pods and nodes read.
    nfs_claim(&home, "navidrome-data").await.unwrap();
    let servers = home.api::<MediaServer>();
    apply(&servers, "navidrome", json!({
        "preset": "Navidrome", "config": {"existingClaim": "navidrome-data"},
        "media": [{"name": "music", "mountPath": "/music", "nfs": {"server": "nas.home.arpa", "path": "/music"}}],
    }))
    .await
    .unwrap();

    // A SensorGateway: its Secret read by name, a restart (pod delete) when it
    // goes offline.
    let broker = Mosquitto::start(Some(CREDENTIALS)).unwrap();
    credentials_secret(&home, CREDENTIALS).await.unwrap();
    let gateway = FakeGateway::start(
        &broker,
        CREDENTIALS,
        "z2m-tokens",
        "zigbee2mqtt/bridge/state",
    );
    let gateways = home.api::<SensorGateway>();
    apply(
        &gateways,
        "zigbee",
        json!({
            "preset": "Zigbee2MQTT",
            "mqtt": mqtt_spec(&broker.url()),
            "radio": {"networkAddress": "tcp://192.168.1.40:6638", "adapter": "zstack"},
            "data": {"nfs": {"server": "nas.home.arpa", "path": "/zigbee2mqtt"}},
            "availability": {"restartAfter": "5s"},
        }),
    )
    .await
    .unwrap();

    wait_condition(&servers, "navidrome", types::READY, "True", WAIT)
        .await
        .unwrap();
    wait_condition(&gateways, "zigbee", types::READY, "True", WAIT)
        .await
        .unwrap();
    gateway.crash();
    wait_for(&gateways, "zigbee", WAIT, |sg: &SensorGateway| {
        sg.status.as_ref().is_some_and(|s| s.last_restart.is_some())
    })
    .await
    .unwrap();
    drop(running);
}
