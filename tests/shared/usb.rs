//! UsbDevicePin test fakes shared by the `integration` and `disruptive` binaries
//! (each includes this file as a module): a fake node (its agent on its own
//! real-shaped sysfs and /dev tree, a kubelet stand-in on real device-plugin
//! sockets), the controller in-process, a consumer Deployment, and the clean-up of
//! what a test changes outside its namespace.
//!
//! Pin names carry the test namespace's suffix: the pin's extended resource and node
//! label are cluster-wide, and tests run side by side.

// Each binary uses a part of it.
#![allow(dead_code)]

use homelab_kit::Operator as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use homelab_api::UsbDevicePin;
use homelab_api::usbdevicepin::resource_name;
use homelab_kit::Settings;
use homelab_kit::device_pin::PodAdditions;
use homelab_node_agent::fake_kubelet::{Advertised, FakeKubelet};
use homelab_node_agent::fixtures::{Stick, Tree, temp_root};
use homelab_test_support::{TestNamespace, client};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// The consumer Deployment's name and container.
pub const APP: &str = "zigbee2mqtt";

pub const WAIT: Duration = Duration::from_secs(60);

/// A pin name unique to this test's namespace.
pub fn pin_name(ns: &TestNamespace, base: &str) -> String {
    let suffix = ns.name().rsplit('-').next().unwrap_or("x");
    format!("{base}-{suffix}")
}

pub async fn create_pin(
    ns: &TestNamespace,
    name: &str,
    stick: &Stick,
    extra: serde_json::Value,
) -> UsbDevicePin {
    let mut spec = json!({ "vendorId": stick.vendor_id, "productId": stick.product_id });
    if let (Some(map), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        map.extend(extra.clone());
    }
    let pin: UsbDevicePin = serde_json::from_value(json!({
        "apiVersion": homelab_api::API_VERSION, "kind": "UsbDevicePin",
        "metadata": { "name": name }, "spec": spec,
    }))
    .unwrap();
    ns.api::<UsbDevicePin>()
        .create(&PostParams::default(), &pin)
        .await
        .unwrap()
}

/// One fake node: its sysfs/dev tree, its kubelet stand-in, its agent task.
pub struct FakeNode {
    pub name: String,
    /// The namespace whose pins the agent watches.
    pub namespace: String,
    pub tree: Tree,
    pub kubelet: FakeKubelet,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    dir: PathBuf,
}

impl FakeNode {
    /// Starts the agent of `node` watching `namespace`.
    pub async fn start(client: &Client, namespace: &str, node: &str) -> FakeNode {
        let dir = temp_root(&format!("{namespace}-{node}"));
        let tree = Tree::raspberry_pi4(&dir.join("host")).unwrap();
        let plugins = dir.join("device-plugins");
        let kubelet = FakeKubelet::start(&plugins).unwrap();
        let mut settings = homelab_node_agent::Settings::new(node);
        settings.roots = tree.roots();
        settings.device_plugin_dir = plugins;
        settings.namespace = Some(namespace.to_owned());
        let (stop, stopped) = oneshot::channel::<()>();
        let client = client.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(err) = homelab_node_agent::agent::run(client, settings, shutdown).await {
                panic!("agent failed: {}", homelab_kit::error::report(&err));
            }
        });
        FakeNode {
            name: node.to_owned(),
            namespace: namespace.to_owned(),
            tree,
            kubelet,
            stop: Some(stop),
            task: Some(task),
            dir,
        }
    }

    /// The node loses power: its agent stops at once, as a dead node's would, so it
    /// withdraws nothing (its presence entry stays); its plugin sockets go with it.
    pub async fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.stop.take();
        self.kubelet.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    pub fn advertised(&self, pin: &str) -> watch::Receiver<Advertised> {
        self.kubelet.watch(&resource_name(&self.namespace, pin))
    }

    /// Stops the agent (its plugins remove their sockets), then the kubelet.
    pub async fn stop(self) {
        let FakeNode {
            stop,
            task,
            kubelet,
            dir,
            ..
        } = self;
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        if let Some(task) = task {
            task.await.unwrap();
        }
        kubelet.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The controller, watching only the test's namespace, without leader election.
pub struct ControllerTask {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ControllerTask {
    pub fn start(client: &Client, namespace: &str) -> ControllerTask {
        let mut settings = Settings::new(homelab_usbdevicepin::CONTROLLER_NAME);
        settings.namespace = Some(namespace.to_owned());
        settings.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        settings.error_backoff_base = Duration::from_secs(1);
        let (stop, stopped) = oneshot::channel::<()>();
        let client = client.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(err) = homelab_usbdevicepin::Controller::new(client, settings)
                .run_until(shutdown)
                .await
            {
                panic!("controller failed: {}", homelab_kit::error::report(&err));
            }
        });
        ControllerTask {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Kills the controller as a SIGKILL would: wherever it is, no clean-up.
    pub async fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

pub fn condition<'a>(
    pin: &'a UsbDevicePin,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    pin.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn condition_is(pin: &UsbDevicePin, type_: &str, status: &str, reason: &str) -> bool {
    condition(pin, type_).is_some_and(|c| c.status == status && c.reason == reason)
}

/// Copies the healthy device count the node's plugin advertises into the Node's
/// capacity and allocatable, on every change, as the kubelet does.
pub fn follow_plugin(client: &Client, node: &FakeNode, pin: &str) -> JoinHandle<()> {
    let mut advertised = node.advertised(pin);
    let nodes = Api::<Node>::all(client.clone());
    let name = node.name.clone();
    let key = resource_name(&node.namespace, pin);
    tokio::spawn(async move {
        loop {
            let count = advertised.borrow_and_update().healthy().to_string();
            let patch =
                json!({"status": {"capacity": {&key: &count}, "allocatable": {&key: &count}}});
            nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
            if advertised.changed().await.is_err() {
                return;
            }
        }
    })
}

pub fn running_on(pod: &Pod) -> Option<String> {
    let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    running.then(|| {
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default()
    })
}

pub fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Creates the pin for `stick` (see [`create_pin`]) and waits until its device is
/// found on a node.
pub async fn found_pin(
    ns: &TestNamespace,
    name: &str,
    stick: &Stick,
    extra: serde_json::Value,
) -> UsbDevicePin {
    create_pin(ns, name, stick, extra).await;
    homelab_test_support::wait_for(&ns.api::<UsbDevicePin>(), name, WAIT, |p| {
        condition_is(p, "Ready", "True", "DeviceFound")
    })
    .await
    .unwrap()
}

/// Starts the [`consumer`] Deployment of `pin` in the test's namespace.
pub async fn start_consumer(ns: &TestNamespace, pin: &UsbDevicePin) {
    ns.api::<Deployment>()
        .create(&PostParams::default(), &consumer(pin).await)
        .await
        .unwrap();
}

pub async fn consumer(pin: &UsbDevicePin) -> Deployment {
    let mut deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": APP},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app": APP}},
            "template": {
                "metadata": {"labels": {"app": APP}},
                "spec": {"containers": [{"name": APP, "image": "koenkk/zigbee2mqtt:2.1.1"}]}
            }
        }
    }))
    .unwrap();
    let spec = deployment
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .unwrap();
    PodAdditions::for_pin(pin).apply(spec, APP);
    deployment
}

/// Puts back what a test changed outside its namespace, pass or fail: the pins'
/// extended resource in the nodes' status and their labels. It also drops the pins'
/// finalizers, so a test that failed with its controller stopped still lets its
/// namespace go.
pub struct ClusterCleanup {
    pub namespace: String,
    pub pins: Vec<String>,
    pub nodes: Vec<String>,
}

impl Drop for ClusterCleanup {
    fn drop(&mut self) {
        let namespace = self.namespace.clone();
        let pins = self.pins.clone();
        let nodes = self.nodes.clone();
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let client = client().await.unwrap();
                let node_api = Api::<Node>::all(client.clone());
                let pin_api = Api::<UsbDevicePin>::namespaced(client, &namespace);
                let merge = kube::api::PatchParams::default();
                for pin in &pins {
                    let key = resource_name(&namespace, pin);
                    for node in &nodes {
                        let status = json!({"status": {"capacity": {&key: null}, "allocatable": {&key: null}}});
                        let _ = node_api.patch_status(node, &merge, &kube::api::Patch::Merge(&status)).await;
                        let label = json!({"metadata": {"labels": {&key: null}}});
                        let _ = node_api.patch(node, &merge, &kube::api::Patch::Merge(&label)).await;
                    }
                    let finalizers = json!({"metadata": {"finalizers": null}});
                    let _ = pin_api.patch(pin, &merge, &kube::api::Patch::Merge(&finalizers)).await;
                }
            });
        })
        .join();
        if done.is_err() {
            eprintln!("cleanup of nodes {:?} failed", self.nodes);
        }
    }
}
