//! Every refusal reaches the person who wrote the spec: when the API server
//! refuses an object a controller builds from a spec, or a spec asks for a
//! host path the administrator does not allow, the object says so in its
//! status (`Ready=False`, `Stalled=True`, the field named) and in a Warning
//! Event, and recovers once the spec is fixed.

use homelab_kit::Operator as _;
use std::time::Duration;

use homelab_api::conditions::reasons::{CHILD_REFUSED, HOST_PATH_NOT_ALLOWED};
use homelab_api::conditions::types;
use homelab_api::{ConditionedStatus, MediaServer, SensorGateway};
use homelab_kit::settings::AllowedHostPaths;
use homelab_test_support::mosquitto::Mosquitto;
use homelab_test_support::mqtt::publish;
use homelab_test_support::pods::pod_spec;
use homelab_test_support::status::condition;
use homelab_test_support::{
    TestNamespace, controller, events_about, nudge, wait_for_event_reasons, wait_settled_async,
    wait_status,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::NamespaceResourceScope;
use serde_json::{Value, json};

/// Long enough for the scheduler and kwok to run a pod.
const WAIT: Duration = Duration::from_secs(120);

/// What the helpers below need of a kind: one of the project's, in a namespace.
trait Kind: homelab_test_support::status::Kind<Scope = NamespaceResourceScope> {}

impl Kind for MediaServer {}
impl Kind for SensorGateway {}

/// Applies `spec` as a user would; returns the stored object.
async fn apply<K: Kind>(ns: &TestNamespace, name: &str, spec: Value) -> K {
    homelab_test_support::apply(&ns.api::<K>(), name, spec)
        .await
        .unwrap()
}

/// Waits until the controller has seen the latest generation and says it is
/// stalled with `reason`; returns the Stalled condition. Also checks that
/// Ready says the same.
async fn wait_stalled<K: Kind>(ns: &TestNamespace, name: &str, reason: &'static str) -> Condition {
    let obj = wait_status(&ns.api::<K>(), name, WAIT, move |s| {
        s.condition(types::STALLED).is_some_and(|c| {
            c.status == "True"
                && c.reason == reason
                && c.observed_generation == s.observed_generation()
        })
    })
    .await
    .unwrap();
    let ready = condition(&obj, types::READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason)
    );
    let conditions = obj.status().unwrap().conditions();
    assert!(
        conditions.iter().all(|c| c.type_ != types::RECONCILING),
        "{conditions:?}"
    );
    condition(&obj, types::STALLED).cloned().unwrap()
}

/// Waits until `name` is no longer stalled at its latest generation and
/// `ready` holds for its Ready condition.
async fn wait_recovered<K: Kind>(
    ns: &TestNamespace,
    name: &str,
    ready: fn(&Condition) -> bool,
) -> K {
    wait_status(&ns.api::<K>(), name, WAIT, move |s| {
        s.condition(types::STALLED).is_none() && s.condition(types::READY).is_some_and(ready)
    })
    .await
    .unwrap()
}

/// The note of the newest Warning Event with `reason` about `name`, waited for.
async fn warning_note(ns: &TestNamespace, name: &str, reason: &str) -> String {
    let events = wait_for_event_reasons(ns, name, &[reason], WAIT)
        .await
        .unwrap();
    let event = events
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .max_by_key(|e| e.event_time.as_ref().map(|t| t.0))
        .unwrap();
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let regarding = event.regarding.unwrap();
    assert_eq!(regarding.name.as_deref(), Some(name));
    assert_eq!(regarding.namespace.as_deref(), Some(ns.name()));
    event.note.unwrap_or_default()
}

/// The reasons and series counts of the Events about `name`, once they have
/// stayed the same for longer than the kit's first retry after a failure
/// (5 s): a controller retrying the refused spec would add one by then.
async fn events_settled(ns: &TestNamespace, name: &str) -> Vec<(String, Option<i32>)> {
    const QUIET: Duration = Duration::from_secs(8);
    let read = || async {
        let mut seen: Vec<(String, Option<i32>)> = events_about(ns, name)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.series.map(|s| s.count)))
            .collect();
        seen.sort();
        seen
    };
    wait_settled_async(
        &format!("the Events about {name}"),
        QUIET,
        WAIT,
        Duration::from_millis(500),
        read,
    )
    .await
    .unwrap()
}

async fn media_controller(ns: &TestNamespace, allowed: &str) -> controller::Running {
    let mut settings = controller::settings(homelab_mediaserver::CONTROLLER_NAME, ns.name());
    settings.allowed_host_paths = AllowedHostPaths::parse(allowed).unwrap();
    let running = homelab_mediaserver::Controller::new(ns.client().clone(), settings);
    controller::spawn(|shutdown| running.run_until(shutdown))
}

fn jellyfin(env: Value) -> Value {
    json!({
        "preset": "Jellyfin",
        "config": {"nfs": {"server": "nas.home.arpa", "path": "/volume1/jellyfin"}},
        "env": env,
    })
}

#[tokio::test]
async fn a_media_server_whose_deployment_is_refused_is_stalled_until_fixed() {
    let ns = TestNamespace::with_crds("refused-ms").await.unwrap();
    let _controller = media_controller(&ns, "").await;

    // The CRD takes any env name; the Deployment's validation does not.
    apply::<MediaServer>(&ns, "jellyfin", jellyfin(json!([{"name": ""}]))).await;
    let stalled = wait_stalled::<MediaServer>(&ns, "jellyfin", CHILD_REFUSED).await;
    assert!(
        stalled
            .message
            .contains("spec.template.spec.containers[0].env[0].name"),
        "{}",
        stalled.message
    );
    assert!(
        stalled.message.contains("Deployment"),
        "{}",
        stalled.message
    );
    let note = warning_note(&ns, "jellyfin", CHILD_REFUSED).await;
    assert!(note.contains("env[0].name"), "{note}");
    eprintln!(
        "refused MediaServer: Stalled {CHILD_REFUSED}: {}",
        stalled.message
    );

    // No retry loop: a reconcile woken without a new spec (an annotation)
    // sends nothing again, so no failure Event follows the one refusal.
    nudge(&ns.api::<MediaServer>(), "jellyfin").await.unwrap();
    let events = events_settled(&ns, "jellyfin").await;
    assert_eq!(
        events,
        [(CHILD_REFUSED.to_owned(), None)],
        "one Event for the refusal, not repeated"
    );

    // Fixed: the server is built and runs.
    apply::<MediaServer>(
        &ns,
        "jellyfin",
        jellyfin(json!([{"name": "TZ", "value": "UTC"}])),
    )
    .await;
    wait_recovered::<MediaServer>(&ns, "jellyfin", |c| c.status == "True").await;
    let deployment = ns.api::<Deployment>().get("jellyfin").await.unwrap();
    let env = &pod_spec(&deployment).containers[0].env;
    assert!(
        env.iter().flatten().any(|e| e.name == "TZ"),
        "the fixed spec was applied: {env:?}"
    );
}

#[tokio::test]
async fn a_resource_that_is_no_quantity_is_named_in_the_spec() {
    let ns = TestNamespace::with_crds("refused-qty").await.unwrap();
    let _controller = media_controller(&ns, "").await;

    // The API server refuses such a Deployment without naming the field (a
    // 500 from server-side apply); the controller names it before applying.
    let mut spec = jellyfin(json!([]));
    spec["resources"] = json!({"limits": {"memory": "lots"}});
    let stored = apply::<MediaServer>(&ns, "jellyfin", spec.clone()).await;
    let memory = stored
        .spec
        .resources
        .as_ref()
        .unwrap()
        .limits
        .as_ref()
        .unwrap()["memory"]
        .0
        .clone();
    assert_eq!(memory, "lots", "the CRD took it");
    let stalled = wait_stalled::<MediaServer>(
        &ns,
        "jellyfin",
        homelab_api::conditions::reasons::INVALID_SPEC,
    )
    .await;
    assert!(
        stalled.message.contains("spec.resources.limits.memory"),
        "{}",
        stalled.message
    );
    let note = warning_note(
        &ns,
        "jellyfin",
        homelab_api::conditions::reasons::INVALID_SPEC,
    )
    .await;
    assert!(note.contains("spec.resources.limits.memory"), "{note}");
    assert!(
        !ns.has::<Deployment>("jellyfin").await.unwrap(),
        "nothing is applied for a refused spec"
    );

    spec["resources"] = json!({"limits": {"memory": "1Gi"}});
    apply::<MediaServer>(&ns, "jellyfin", spec).await;
    wait_recovered::<MediaServer>(&ns, "jellyfin", |c| c.status == "True").await;
}

#[tokio::test]
async fn a_sensor_gateway_whose_deployment_is_refused_is_stalled_until_fixed() {
    let broker = Mosquitto::start(None).unwrap();
    let ns = TestNamespace::with_crds("refused-sgw").await.unwrap();
    let running = homelab_sensorgateway::Controller::new(
        ns.client().clone(),
        controller::settings(homelab_sensorgateway::CONTROLLER_NAME, ns.name()),
    );
    let _controller = controller::spawn(|shutdown| running.run_until(shutdown));
    publish(&broker, ("any", "one"), "porch/status", "online", true).await;
    let gateway = |env: Value| {
        json!({
            "preset": "ESPHome",
            "topicPrefix": "porch",
            "mqtt": {"url": broker.url()},
            "data": {"nfs": {"server": "nas.home.arpa", "path": "/export/porch"}},
            "env": env,
        })
    };

    apply::<SensorGateway>(&ns, "porch", gateway(json!([{"name": ""}]))).await;
    let stalled = wait_stalled::<SensorGateway>(&ns, "porch", CHILD_REFUSED).await;
    // The preset's own variables come first, so the index is the container's.
    let field = "spec.template.spec.containers[0].env[";
    assert!(
        stalled.message.contains(field) && stalled.message.contains("].name: Required value"),
        "{}",
        stalled.message
    );
    let note = warning_note(&ns, "porch", CHILD_REFUSED).await;
    assert!(note.contains(field), "{note}");
    eprintln!(
        "refused SensorGateway: Stalled {CHILD_REFUSED}: {}",
        stalled.message
    );

    apply::<SensorGateway>(
        &ns,
        "porch",
        gateway(json!([{"name": "TZ", "value": "UTC"}])),
    )
    .await;
    let sg = wait_recovered::<SensorGateway>(&ns, "porch", |c| c.status == "True").await;
    assert!(sg.status.unwrap().is_condition_true(types::GATEWAY_ONLINE));
}

#[tokio::test]
async fn a_host_path_the_administrator_does_not_allow_is_refused_and_the_server_left_alone() {
    let ns = TestNamespace::with_crds("refused-host").await.unwrap();
    let navidrome = json!({
        "preset": "Navidrome",
        "config": {"nfs": {"server": "nas.home.arpa", "path": "/volume1/navidrome"}},
        "media": [{"name": "music", "mountPath": "/music",
                   "hostPath": {"node": "pi4-2", "path": "/mnt/usb-music/library"}}],
    });

    // Allowed: it runs.
    let allowing = media_controller(&ns, "/mnt/usb-music").await;
    apply::<MediaServer>(&ns, "navidrome", navidrome).await;
    wait_recovered::<MediaServer>(&ns, "navidrome", |c| c.status == "True").await;
    let before = ns.api::<Deployment>().get("navidrome").await.unwrap();
    drop(allowing);

    // A similar prefix is not a parent directory.
    let _similar = media_controller(&ns, "/mnt/usb").await;
    let stalled = wait_stalled::<MediaServer>(&ns, "navidrome", HOST_PATH_NOT_ALLOWED).await;
    for words in [
        "/mnt/usb-music/library",
        "spec.media[music].hostPath.path",
        "hostPaths.allowed",
    ] {
        assert!(
            stalled.message.contains(words),
            "{words}: {}",
            stalled.message
        );
    }
    let note = warning_note(&ns, "navidrome", HOST_PATH_NOT_ALLOWED).await;
    assert!(
        note.contains("/mnt/usb-music/library") && note.contains("hostPaths.allowed"),
        "{note}"
    );
    // The running server is not torn down: nothing is applied for it at all.
    let after = ns.api::<Deployment>().get("navidrome").await.unwrap();
    assert_eq!(
        (&after.metadata.uid, after.metadata.generation),
        (&before.metadata.uid, before.metadata.generation),
        "the Deployment was left as it was"
    );

    // A new server asking for a host path outside the allowed directories.
    apply::<MediaServer>(
        &ns,
        "jellyfin",
        json!({
            "preset": "Jellyfin",
            "config": {"hostPath": {"node": "n100-1", "path": "/var/lib/kubelet"}},
        }),
    )
    .await;
    let stalled = wait_stalled::<MediaServer>(&ns, "jellyfin", HOST_PATH_NOT_ALLOWED).await;
    assert!(
        stalled.message.contains("spec.config.hostPath.path"),
        "{}",
        stalled.message
    );
    assert!(
        !ns.has::<Deployment>("jellyfin").await.unwrap(),
        "nothing is applied for it"
    );
}
