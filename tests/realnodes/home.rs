//! The chart installed on the real nodes, as a user installs it: the project's own
//! image (built here, imported into each node's containerd, never pulled), the
//! operators' namespace enforcing Pod Security "restricted", every controller
//! running as pods under the chart's ServiceAccounts with in-cluster
//! configuration, the node agent as a DaemonSet. One release per test, watching
//! only that test's home namespace (where the user's objects and their workloads
//! live), uninstalled when the test ends.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use homelab_test_support::tools::{helm, kubectl};
use homelab_test_support::{
    Cluster, TestNamespace, client, install_crds, wait_for_list, workspace_root,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::OnceCell;

/// The real worker nodes the controllers and the agent run on.
pub const WORKERS: [&str; 2] = ["real-1", "real-2"];
/// The real control-plane node (this machine's own network namespace).
pub const CONTROL_PLANE: &str = "cp-1";
/// The taint that keeps everything but the tests' own pods off the real workers.
pub const REAL_NODE_TAINT: &str = "e2e.homelab.home.arpa/real-node";
/// A small image with a shell, imported by `e2e/cluster up`, for consumer pods.
pub const BUSYBOX: &str = "localhost/e2e-busybox:1";

pub const WAIT: Duration = Duration::from_secs(180);

/// The operators' image, built and imported into every real node once per test run.
async fn image() -> &'static str {
    static IMAGE: OnceCell<String> = OnceCell::const_new();
    IMAGE
        .get_or_init(|| async {
            tokio::task::spawn_blocking(|| {
                let root = workspace_root();
                let built = Command::new(root.join("e2e/image"))
                    .arg("build")
                    .status()
                    .unwrap();
                assert!(built.success(), "e2e/image build failed");
                let archive = root.join("target/image/homelab-operators.oci.tar");
                let archive = archive.to_string_lossy().into_owned();
                Cluster::default().run(&["load-image", &archive]).unwrap();
                std::fs::read_to_string(root.join("target/image/homelab-operators.ref"))
                    .unwrap()
                    .trim()
                    .to_owned()
            })
            .await
            .unwrap()
        })
        .await
}

/// Where `e2e/cluster` keeps a real node's files (its /dev, what tests lay down).
pub fn node_dir(node: &str) -> PathBuf {
    let kubeconfig = Cluster::default().kubeconfig_path().unwrap();
    kubeconfig.parent().unwrap().join("nodes").join(node)
}

/// One release of the chart on the real nodes, and the namespace it watches.
pub struct RealHome {
    pub client: Client,
    pub release: String,
    pub agent_namespace: String,
    /// Whether the release runs the node agent.
    agents: bool,
    // Both dropped after the release is uninstalled (fields drop after `drop`).
    /// The operators' namespace: the release, its pods and Leases.
    pub operators: TestNamespace,
    /// The home the release watches: the user's objects and what they run.
    pub ns: TestNamespace,
}

impl RealHome {
    /// Installs the chart into a fresh namespace and waits until every controller
    /// replica and every node agent is ready. `sets` are extra `--set` values.
    pub async fn install(prefix: &str, sets: &[&str]) -> RealHome {
        let client = client().await.unwrap();
        install_crds(&client).await.unwrap();
        let image = image().await;
        let (repository, tag) = image.rsplit_once(':').unwrap();
        let operators = TestNamespace::new(&client, prefix).await.unwrap();
        let ns = TestNamespace::new(&client, &format!("{prefix}-home"))
            .await
            .unwrap();
        let release = operators.name().to_owned();
        // What an administrator does for the operators' namespace.
        let labels = json!({"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }}});
        Api::<Namespace>::all(client.clone())
            .patch(
                operators.name(),
                &PatchParams::default(),
                &Patch::Merge(&labels),
            )
            .await
            .unwrap();
        let agent_namespace = format!("{release}-agent");
        let chart = workspace_root().join("charts/homelab-operators");
        let values = workspace_root().join("e2e/values-real-nodes.yaml");
        let mut args = vec![
            "install".to_owned(),
            release.clone(),
            chart.to_string_lossy().into_owned(),
            "--namespace".into(),
            release.clone(),
            "--values".into(),
            values.to_string_lossy().into_owned(),
            "--set".into(),
            format!("image.repository={repository}"),
            "--set".into(),
            format!("image.tag={tag}"),
            "--set".into(),
            format!("watchNamespace={}", ns.name()),
            "--set".into(),
            format!("nodeAgent.namespace.name={agent_namespace}"),
            // EtcdBackups in the home (the backup scenario labels it privileged).
            "--set".into(),
            format!("etcdBackup.namespaces={{{}}}", ns.name()),
            "--set".into(),
            "etcdBackup.createNamespaces=false".into(),
        ];
        for set in sets {
            args.push("--set".into());
            args.push((*set).to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        helm(&args).unwrap();
        let home = RealHome {
            client,
            release,
            agent_namespace,
            agents: !sets.contains(&"nodeAgent.enabled=false"),
            operators,
            ns,
        };
        home.wait_ready().await;
        home
    }

    /// Every Deployment of the release has all its replicas ready, and the node
    /// agent runs on both workers.
    pub async fn wait_ready(&self) {
        let instance =
            ListParams::default().labels(&format!("app.kubernetes.io/instance={}", self.release));
        wait_for_list(
            &self.operators.api::<Deployment>(),
            &instance,
            WAIT,
            |deployments| {
                !deployments.is_empty()
                    && deployments.iter().all(|d| {
                        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                        let status = d.status.as_ref();
                        status.and_then(|s| s.ready_replicas).unwrap_or(0) == want
                            && status.and_then(|s| s.updated_replicas).unwrap_or(0) == want
                    })
            },
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the controllers never became ready: {e}\n{}",
                self.describe()
            )
        });
        if !self.agents {
            return;
        }
        let agents = Api::<DaemonSet>::namespaced(self.client.clone(), &self.agent_namespace);
        wait_for_list(&agents, &instance, WAIT, |sets| {
            sets.len() == 1
                && sets.iter().all(|d| {
                    let status = d.status.as_ref();
                    status.map_or(0, |s| s.number_ready) == WORKERS.len() as i32
                })
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the node agents never became ready: {e}\n{}",
                self.describe()
            )
        });
    }

    /// The pods of one component (`mediaserver-controller`, ...), by node.
    pub async fn pods(&self, component: &str) -> BTreeMap<String, Pod> {
        let namespace = if component == "node-agent" {
            &self.agent_namespace
        } else {
            self.operators.name()
        };
        let params = ListParams::default().labels(&format!(
            "app.kubernetes.io/instance={},app.kubernetes.io/component={component}",
            self.release
        ));
        Api::<Pod>::namespaced(self.client.clone(), namespace)
            .list(&params)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
            .collect()
    }

    /// `kubectl get pods -o wide` of the release and its agents, for a failure message.
    pub fn describe(&self) -> String {
        let pods = kubectl(&["get", "pods", "-o", "wide", "-n", self.operators.name()])
            .unwrap_or_else(|e| e.to_string());
        let home = kubectl(&["get", "pods", "-o", "wide", "-n", self.ns.name()])
            .unwrap_or_else(|e| e.to_string());
        let agents = kubectl(&["get", "pods", "-o", "wide", "-n", &self.agent_namespace])
            .unwrap_or_else(|e| e.to_string());
        let events = kubectl(&[
            "get",
            "events",
            "-n",
            self.ns.name(),
            "--sort-by=.lastTimestamp",
        ])
        .unwrap_or_else(|e| e.to_string());
        format!("{pods}\n{agents}\n{home}\n{events}")
    }
}

impl Drop for RealHome {
    fn drop(&mut self) {
        // The home's objects first, while their controllers still run to remove
        // their finalizers; then the release's cluster-wide objects (roles, the
        // admission policy) and the agent's namespace, which the chart keeps.
        let kinds = "mediaservers,sensorgateways,usbdevicepins,etcdbackups";
        if let Err(e) = kubectl(&[
            "delete",
            kinds,
            "--all",
            "-n",
            self.ns.name(),
            "--timeout=90s",
        ]) {
            eprintln!("deleting the home's objects: {e}");
        }
        if let Err(e) = helm(&[
            "uninstall",
            &self.release,
            "--namespace",
            self.operators.name(),
            "--wait",
        ]) {
            eprintln!("helm uninstall {}: {e}", self.release);
        }
        let _ = kubectl(&["delete", "namespace", &self.agent_namespace, "--wait=false"]);
    }
}

/// The toleration every test pod needs to run on a real worker.
pub fn real_node_toleration() -> serde_json::Value {
    json!({"key": REAL_NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"})
}
