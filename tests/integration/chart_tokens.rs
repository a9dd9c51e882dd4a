//! The controllers do their work with nothing but the credentials the chart
//! gives them: a TokenRequest token of each ServiceAccount the chart created,
//! so a missing or too-narrow RBAC rule fails here, not in a user's home.

use std::time::Duration;

use homelab_api::conditions::types;
use homelab_api::{ConditionedStatus, MediaServer, SensorGateway};
use homelab_test_support::mosquitto::Mosquitto;
use homelab_test_support::mqtt::FakeGateway;
use homelab_test_support::storage::{delete_volumes, nfs_claim};
use homelab_test_support::{TestNamespace, client, client_as, controller, install_crds, wait_for};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::chart::{chart_dir, release};

const WAIT: Duration = Duration::from_secs(120);
const CREDENTIALS: (&str, &str) = ("homelab", "tokens-Pa55");

async fn apply<K>(home: &TestNamespace, name: &str, body: serde_json::Value)
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + serde::Serialize,
{
    home.api::<K>()
        .patch(
            name,
            &PatchParams::apply("homelab-tests"),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();
}

fn ready<K: ConditionedStatus>(
    status: Option<&K>,
    generation: Option<i64>,
    observed: Option<i64>,
) -> bool {
    status.is_some_and(|s| s.is_condition_true(types::READY)) && generation == observed
}

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
    let volume = nfs_claim(&home, "navidrome-data").await.unwrap();
    apply::<MediaServer>(&home, "navidrome", json!({
        "apiVersion": "homelab.home.arpa/v1alpha1", "kind": "MediaServer",
        "metadata": {"name": "navidrome"},
        "spec": {"preset": "Navidrome", "config": {"existingClaim": "navidrome-data"},
                 "media": [{"name": "music", "mountPath": "/music", "nfs": {"server": "nas.home.arpa", "path": "/music"}}]},
    }))
    .await;

    // A SensorGateway: its Secret read by name, a restart (pod delete) when it
    // goes offline.
    let broker = Mosquitto::start(Some(CREDENTIALS)).unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "mqtt"},
        "stringData": {"username": CREDENTIALS.0, "password": CREDENTIALS.1},
    }))
    .unwrap();
    home.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let gateway = FakeGateway::start(
        &broker,
        CREDENTIALS,
        "z2m-tokens",
        "zigbee2mqtt/bridge/state",
    );
    apply::<SensorGateway>(
        &home,
        "zigbee",
        json!({
            "apiVersion": "homelab.home.arpa/v1alpha1", "kind": "SensorGateway",
            "metadata": {"name": "zigbee"},
            "spec": {
                "preset": "Zigbee2MQTT",
                "mqtt": {"url": broker.url(),
                         "usernameSecretRef": {"name": "mqtt", "key": "username"},
                         "passwordSecretRef": {"name": "mqtt", "key": "password"},
                         "allowPlaintextCredentials": true},
                "radio": {"networkAddress": "tcp://192.168.1.40:6638", "adapter": "zstack"},
                "data": {"nfs": {"server": "nas.home.arpa", "path": "/zigbee2mqtt"}},
                "availability": {"restartAfter": "5s"},
            },
        }),
    )
    .await;

    wait_for(
        &home.api::<MediaServer>(),
        "navidrome",
        WAIT,
        |ms: &MediaServer| {
            ready(
                ms.status.as_ref(),
                ms.metadata.generation,
                ms.status.as_ref().and_then(|s| s.observed_generation),
            )
        },
    )
    .await
    .unwrap();
    wait_for(
        &home.api::<SensorGateway>(),
        "zigbee",
        WAIT,
        |sg: &SensorGateway| {
            ready(
                sg.status.as_ref(),
                sg.metadata.generation,
                sg.status.as_ref().and_then(|s| s.observed_generation),
            )
        },
    )
    .await
    .unwrap();
    gateway.crash();
    wait_for(
        &home.api::<SensorGateway>(),
        "zigbee",
        WAIT,
        |sg: &SensorGateway| sg.status.as_ref().is_some_and(|s| s.last_restart.is_some()),
    )
    .await
    .unwrap();
    drop(running);
    delete_volumes(&home, &[volume]).await;
}
