//! The device plugin against a kubelet stand-in speaking the real v1beta1 protocol
//! over real unix sockets: registration, ListAndWatch as the stick comes and goes,
//! Allocate, and re-registration after the kubelet restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use homelab_api::UsbDevicePin;
use homelab_node_agent::agent::plugin_states;
use homelab_node_agent::deviceplugin::KUBELET_SOCKET;
use homelab_node_agent::deviceplugin::manager::PluginManager;
use homelab_node_agent::fake_kubelet::{Advertised, FakeKubelet};
use homelab_node_agent::fixtures::{SONOFF_ZIGBEE, Tree, temp_root};
use homelab_node_agent::matching::assign;
use tokio::sync::watch;

const RESOURCE: &str = "home.devices.homelab.home.arpa/zigbee";

fn pins() -> Vec<Arc<UsbDevicePin>> {
    let mut pin = UsbDevicePin::new(
        "zigbee",
        serde_json::from_value(serde_json::json!({
            "vendorId": "10c4", "productId": "ea60", "containerPath": "/dev/zigbee"
        }))
        .unwrap(),
    );
    pin.metadata.namespace = Some("home".into());
    vec![Arc::new(pin)]
}

async fn sync(manager: &mut PluginManager, tree: &Tree) {
    let devices = tree.roots().scan();
    let pins = pins();
    let assigned = assign(&pins, &devices);
    manager.sync(plugin_states(&pins, &assigned)).await;
}

/// Waits (at most 10 s) until what the kubelet sees satisfies `ready`.
async fn until(
    rx: &mut watch::Receiver<Advertised>,
    ready: impl Fn(&Advertised) -> bool,
) -> Advertised {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        rx.wait_for(|a| ready(a)).await.map(|a| a.clone())
    })
    .await;
    match waited {
        Ok(seen) => seen.unwrap(),
        Err(_) => panic!("kubelet never saw it; last: {:?}", *rx.borrow()),
    }
}

#[tokio::test]
async fn kubelet_sees_the_stick_come_and_go_and_allocates_it() {
    let root = temp_root("device-plugin");
    let mut tree = Tree::raspberry_pi4(&root.join("node")).unwrap();
    tree.plug("1-1.2", &SONOFF_ZIGBEE, "ttyUSB0").unwrap();
    let dir = root.join("device-plugins");
    let kubelet = FakeKubelet::start(&dir).unwrap();
    let mut advertised = kubelet.watch(RESOURCE);
    let mut manager = PluginManager::new(&dir);

    sync(&mut manager, &tree).await;
    let seen = until(&mut advertised, |a| a.healthy() == 1).await;
    assert_eq!(seen.endpoint.as_deref(), Some("homelab-home.zigbee.sock"));
    let id = seen.devices[0].id.clone();
    assert_eq!(id, "usb-1-1.2-001-003");

    // The kubelet creates a consumer's container: it asks the plugin what to give it.
    let response = kubelet.allocate(RESOURCE, &[&id]).await.unwrap();
    let container = &response.container_responses[0];
    assert_eq!(container.devices.len(), 1);
    assert_eq!(container.devices[0].host_path, "/dev/ttyUSB0");
    assert_eq!(container.devices[0].container_path, "/dev/zigbee");
    assert_eq!(container.devices[0].permissions, "rw");
    assert_eq!(container.envs["HOMELAB_DEVICE_ZIGBEE"], "/dev/zigbee");
    let unknown = kubelet.allocate(RESOURCE, &["usb-9-9"]).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // Unplugged: the list the kubelet holds empties (capacity 0).
    tree.unplug("1-1.2").unwrap();
    sync(&mut manager, &tree).await;
    until(&mut advertised, |a| a.devices.is_empty()).await;

    // Plugged again (re-enumerated): a new device id.
    tree.plug("1-1.2", &SONOFF_ZIGBEE, "ttyUSB0").unwrap();
    sync(&mut manager, &tree).await;
    let again = until(&mut advertised, |a| a.healthy() == 1).await;
    assert_ne!(again.devices[0].id, id);

    // The kubelet restarts and, as it does, empties the directory: the plugin comes
    // back on its own and registers with the new kubelet.
    kubelet.stop().await;
    for entry in std::fs::read_dir(&dir).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let kubelet = FakeKubelet::start(&dir).unwrap();
    let mut advertised = kubelet.watch(RESOURCE);
    sync(&mut manager, &tree).await;
    until(&mut advertised, |a| a.healthy() == 1).await;
    assert!(dir.join(KUBELET_SOCKET).exists());

    // The agent stops: its socket goes, the kubelet's stream ends.
    manager.stop_all().await;
    until(&mut advertised, |a| a.devices.is_empty()).await;
    assert!(!dir.join("homelab-zigbee.sock").exists());
    kubelet.stop().await;
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn registration_is_retried_until_a_kubelet_listens() {
    let root = temp_root("late-kubelet");
    let mut tree = Tree::raspberry_pi4(&root.join("node")).unwrap();
    tree.plug("1-1.2", &SONOFF_ZIGBEE, "ttyUSB0").unwrap();
    let dir = root.join("device-plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let mut manager = PluginManager::new(&dir);
    // No kubelet yet: the plugin serves, registration fails and is logged.
    sync(&mut manager, &tree).await;
    assert_eq!(manager.resources(), [RESOURCE]);
    let kubelet = FakeKubelet::start(&dir).unwrap();
    let mut advertised = kubelet.watch(RESOURCE);
    sync(&mut manager, &tree).await;
    until(&mut advertised, |a| a.healthy() == 1).await;
    manager.stop_all().await;
    kubelet.stop().await;
    let _ = std::fs::remove_dir_all(&root);
}
