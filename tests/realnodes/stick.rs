//! A USB stick reaches an unprivileged container through the node agent's device
//! plugin, registered with a real kubelet: the agent's DaemonSet pod reads the
//! node's sysfs (a tree laid down here) and /dev (a character device made with
//! mknod, as udev would), and the consumer, non-root with every capability
//! dropped, opens the device inside its container.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use homelab_api::UsbDevicePin;
use homelab_api::usbdevicepin::resource_name;
use homelab_node_agent::fixtures::{CONBEE_II, Stick, Tree, temp_root};
use homelab_test_support::Cluster;
use homelab_test_support::tools::tool;
use homelab_test_support::{wait_for, wait_for_list};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

use crate::home::{BUSYBOX, RealHome, WAIT, node_dir, real_node_toleration};
use crate::usb::{APP, consumer, create_pin, pin_name, running_on};

/// cdc_acm's character major: /dev/ttyACM0 is 166:0.
const ACM_MAJOR: u32 = 166;
/// Serial devices belong to group dialout (20 on Debian and Raspberry Pi OS),
/// mode 0660: a consumer joins that group, as zigbee2mqtt's documentation says.
const DIALOUT: u32 = 20;

/// A stick plugged into a real node: its sysfs entries in the tree the node agent
/// reads, its device node and by-id link in the node's own /dev. Unplugged on drop.
pub struct PluggedStick {
    sys: PathBuf,
    dev_node: PathBuf,
    by_id: PathBuf,
}

impl PluggedStick {
    pub fn plug(node: &str, stick: &Stick, tty: &str, minor: u32) -> PluggedStick {
        let dir = node_dir(node);
        // The agent's pod holds the node's sysfs directory itself (a hostPath), so
        // the tree is made aside and copied into it, never replacing it.
        let mut tree = Tree::raspberry_pi4(&temp_root(&format!("{node}-usb"))).unwrap();
        tree.plug("1-1.2", stick, tty).unwrap();
        let sys = dir.join("e2e/sys");
        empty(&sys);
        let copied = Command::new("cp")
            .arg("-a")
            .arg(tree.root().join("sys/."))
            .arg(&sys)
            .status()
            .unwrap();
        assert!(
            copied.success(),
            "copying the sysfs tree into {}",
            sys.display()
        );
        let dev = dir.join("dev");
        let dev_node = dev.join(tty);
        let _ = std::fs::remove_file(&dev_node);
        mknod_char(&dev_node, ACM_MAJOR, minor);
        std::fs::create_dir_all(dev.join("serial/by-id")).unwrap();
        let by_id = dev.join("serial/by-id").join(stick.by_id);
        let _ = std::fs::remove_file(&by_id);
        symlink(format!("../../{tty}"), &by_id).unwrap();
        PluggedStick {
            sys,
            dev_node,
            by_id,
        }
    }
}

impl Drop for PluggedStick {
    fn drop(&mut self) {
        empty(&self.sys);
        let _ = std::fs::remove_file(&self.by_id);
        let _ = std::fs::remove_file(&self.dev_node);
    }
}

/// Removes what is in `dir`, keeping `dir` itself.
fn empty(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The project forbids `unsafe`: make the device node with mknod(1) and give it
/// to dialout, as udev does.
fn mknod_char(path: &Path, major: u32, minor: u32) {
    let status = Command::new("mknod")
        .args(["-m", "0660"])
        .arg(path)
        .args(["c", &major.to_string(), &minor.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "mknod {} failed", path.display());
    std::os::unix::fs::chown(path, Some(0), Some(DIALOUT)).unwrap();
}

/// The consumer, as a user would write it around the pin, made to run here: the
/// busybox image (it has a shell to look with), the real workers' toleration, and
/// Pod Security "restricted" settings.
pub fn unprivileged_consumer(deployment: Deployment) -> Deployment {
    let mut value = serde_json::to_value(deployment).unwrap();
    let spec = &mut value["spec"]["template"]["spec"];
    spec["securityContext"] = json!({
        "runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 1000,
        "supplementalGroups": [DIALOUT],
        "seccompProfile": {"type": "RuntimeDefault"},
    });
    let tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
    let mut tolerations = tolerations;
    tolerations.push(real_node_toleration());
    spec["tolerations"] = json!(tolerations);
    spec["terminationGracePeriodSeconds"] = json!(1);
    let container = &mut spec["containers"][0];
    container["image"] = json!(BUSYBOX);
    container["imagePullPolicy"] = json!("Never");
    container["command"] = json!(["/bin/busybox", "sleep", "3600"]);
    container["securityContext"] = json!({
        "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
    });
    serde_json::from_value(value).unwrap()
}

#[tokio::test]
async fn a_stick_reaches_an_unprivileged_container_through_a_real_kubelet() {
    let _one = crate::exclusive().await;
    let home = RealHome::install("rn-stick", &[]).await;
    let node = "real-1";
    let _stick = PluggedStick::plug(node, &CONBEE_II, "ttyACM0", 0);
    let name = pin_name(&home.ns, "conbee");
    create_pin(
        &home.ns,
        &name,
        &CONBEE_II,
        json!({"containerPath": "/dev/zigbee"}),
    )
    .await;

    // The agent pod on real-1 saw it, and the real kubelet took its plugin's word.
    let pins = home.ns.api::<UsbDevicePin>();
    let pin = wait_for(&pins, &name, WAIT, |p: &UsbDevicePin| {
        p.status.as_ref().and_then(|s| s.current_node.as_deref()) == Some("real-1")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", home.describe()));
    advertised(&home, node, &name).await;

    let pod = consumer_on(&home, &pin, node).await;

    // Inside the container: the character device at the pin's path...
    let listing = exec(&home, &pod, &["ls", "-l", "/dev/zigbee"]);
    println!("inside {pod} on {node}: {}", listing.stdout.trim());
    assert!(
        listing.stdout.starts_with('c'),
        "not a character device: {listing:?}"
    );
    assert!(
        listing.stdout.contains(&format!("{ACM_MAJOR},")),
        "not the stick's device number: {listing:?}"
    );
    // ...that the container's device cgroup lets it open: the kernel answers
    // "no such device" (this machine has no cdc_acm stick behind 166:0), where a
    // device the runtime did not grant answers "operation not permitted" and one
    // the user may not open "permission denied".
    let opened = exec(&home, &pod, &["head", "-c", "1", "/dev/zigbee"]);
    let said = opened.stderr.to_lowercase();
    println!("opening /dev/zigbee inside the container: {}", said.trim());
    assert!(
        said.contains("no such device"),
        "the device was not granted to the container: {said}"
    );
    let who = exec(&home, &pod, &["id"]).stdout;
    assert!(who.contains("uid=1000"), "{who}");
    let env = exec(&home, &pod, &["env"]).stdout;
    assert!(
        env.contains("/dev/zigbee"),
        "the plugin's environment variable is missing: {env}"
    );
}

/// What a busybox command printed inside the pod's container.
#[derive(Debug)]
pub struct Said {
    pub stdout: String,
    pub stderr: String,
}

fn exec(home: &RealHome, pod: &str, command: &[&str]) -> Said {
    let kubeconfig = Cluster::default().kubeconfig_path().unwrap();
    let output = Command::new(tool("kubernetes", "kubectl").unwrap())
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(["exec", "-n", home.ns.name(), pod, "--", "/bin/busybox"])
        .args(command)
        .output()
        .unwrap();
    Said {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The pin's consumer pods.
pub fn by_app() -> ListParams {
    ListParams::default().labels(&format!("app={APP}"))
}

/// Creates the pin's consumer, unprivileged, and waits until its one pod runs
/// on `node`; its name.
pub async fn consumer_on(home: &RealHome, pin: &UsbDevicePin, node: &str) -> String {
    let deployment = unprivileged_consumer(consumer(pin).await);
    home.ns
        .api::<Deployment>()
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let running = wait_for_list(&home.ns.api::<Pod>(), &by_app(), WAIT, |pods| {
        pods.len() == 1 && running_on(&pods[0]).as_deref() == Some(node)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", home.describe()));
    running[0].metadata.name.clone().unwrap()
}

/// Waits until the node's kubelet has the pin's device from its plugin.
pub async fn advertised(home: &RealHome, node: &str, pin: &str) {
    let nodes = Api::<Node>::all(home.client.clone());
    let key = resource_name(home.ns.name(), pin);
    wait_for(&nodes, node, WAIT, move |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get(&key))
            .is_some_and(|q| q.0 == "1")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", home.describe()));
}
