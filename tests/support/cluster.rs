//! The local control plane: find it, start it when a test run needs it, and drive
//! its failure knobs (`node-fail`, `node-recover`, `restart-apiserver`).

use std::path::PathBuf;
use std::process::Command;

use kube::Api;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::OnceCell;

use crate::Error;

/// The `e2e/cluster` script and the kubeconfig it writes.
#[derive(Clone, Debug)]
pub struct Cluster {
    script: PathBuf,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            script: crate::workspace_root().join("e2e").join("cluster"),
        }
    }
}

impl Cluster {
    /// Runs `e2e/cluster <args>` and returns what it printed.
    pub fn run(&self, args: &[&str]) -> Result<String, Error> {
        let command = args.join(" ");
        let output = Command::new(&self.script)
            .args(args)
            .output()
            .map_err(|source| Error::ClusterCommandSpawn {
                command: command.clone(),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if output.status.success() {
            Ok(stdout)
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(Error::ClusterCommand {
                command,
                output: format!("{stdout}\n{stderr}").trim().to_string(),
            })
        }
    }

    /// The admin kubeconfig: `HOMELAB_TEST_KUBECONFIG` when set, else the one
    /// `e2e/cluster` writes. Never plain `KUBECONFIG`: tests create and delete
    /// things, and must not wander into the user's real cluster by accident.
    pub fn kubeconfig_path(&self) -> Result<PathBuf, Error> {
        match std::env::var_os(TEST_KUBECONFIG) {
            Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => self.run(&["kubeconfig"]).map(PathBuf::from),
        }
    }

    /// Makes the node stop renewing its lease, as a node that lost power would.
    pub fn node_fail(&self, node: &str) -> Result<(), Error> {
        self.disturb(&["node-fail", node])
    }

    /// Lets the node heartbeat again.
    pub fn node_recover(&self, node: &str) -> Result<(), Error> {
        self.disturb(&["node-recover", node])
    }

    /// Dresses the real control-plane node as a server of `distribution` (kubeadm,
    /// k3s, k3s-sqlite, talos): its role labels, taints and etcd files.
    pub fn dress_control_plane(&self, distribution: &str) -> Result<(), Error> {
        self.disturb(&["distribution", distribution])
    }

    /// Stops and starts kube-apiserver; returns once it is ready again.
    pub fn restart_apiserver(&self) -> Result<(), Error> {
        self.disturb(&["restart-apiserver"])
    }

    /// The failure knobs act on the cluster `e2e/cluster` runs. When the tests
    /// were pointed at another cluster, turning them would disturb the wrong one
    /// (or nothing, and the test would wait in vain): refuse and say why.
    fn disturb(&self, args: &[&str]) -> Result<(), Error> {
        if let Some(other) = std::env::var_os(TEST_KUBECONFIG).filter(|v| !v.is_empty()) {
            let own = self.run(&["kubeconfig"])?;
            if std::path::Path::new(&other) != std::path::Path::new(&own) {
                return Err(Error::ClusterCommand {
                    command: args.join(" "),
                    output: format!(
                        "{TEST_KUBECONFIG} points at {} but e2e/cluster runs {own}: \
                         tests that fail nodes or restart the API server need e2e/cluster's own cluster",
                        PathBuf::from(other).display()
                    ),
                });
            }
        }
        self.run(args).map(drop)
    }

    pub(crate) async fn connect(&self) -> Result<Client, Error> {
        let config = self.config().await?;
        Client::try_from(config).map_err(Error::Client)
    }

    async fn config(&self) -> Result<kube::Config, Error> {
        let path = self.kubeconfig_path()?;
        let kubeconfig = Kubeconfig::read_from(&path).map_err(|source| Error::Kubeconfig {
            path: path.display().to_string(),
            source,
        })?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|source| Error::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                })?;
        Ok(config)
    }
}

/// A client for the test cluster that authenticates with a ServiceAccount's token
/// from the TokenRequest API (made by `admin`), and with nothing else: what it may
/// do is what that account's RBAC grants.
///
/// # Errors
/// When the token cannot be requested or the client built.
pub async fn client_as(admin: &Client, namespace: &str, account: &str) -> Result<Client, Error> {
    client_with_token(admin, namespace, account, None).await
}

/// As [`client_as`], with the token bound to `pod` (as a pod's projected token is):
/// the API server then knows, and tells admission, the node the pod runs on.
///
/// # Errors
/// As [`client_as`].
pub async fn client_as_pod(
    admin: &Client,
    account: &str,
    pod: &k8s_openapi::api::core::v1::Pod,
) -> Result<Client, Error> {
    use k8s_openapi::api::authentication::v1::BoundObjectReference;
    let bound = BoundObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Pod".to_owned()),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
    };
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    client_with_token(admin, &namespace, account, Some(bound)).await
}

async fn client_with_token(
    admin: &Client,
    namespace: &str,
    account: &str,
    bound: Option<k8s_openapi::api::authentication::v1::BoundObjectReference>,
) -> Result<Client, Error> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            bound_object_ref: bound,
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let issued = accounts
        .create_token_request(account, &kube::api::PostParams::default(), &request)
        .await
        .map_err(|source| Error::Api {
            doing: format!("requesting a token for {namespace}/{account}"),
            source,
        })?;
    let token = issued.status.map(|s| s.token).unwrap_or_default();
    let mut config = Cluster::default().config().await?;
    config.auth_info = serde_json::from_value(serde_json::json!({ "token": token }))
        .map_err(|e| Error::Client(kube::Error::Service(Box::new(e))))?;
    Client::try_from(config).map_err(Error::Client)
}

/// Points the tests at another cluster instead of starting `e2e/cluster`.
pub const TEST_KUBECONFIG: &str = "HOMELAB_TEST_KUBECONFIG";

static STARTED: OnceCell<()> = OnceCell::const_new();

/// A client for the test cluster. Unless `HOMELAB_TEST_KUBECONFIG` points elsewhere, the first
/// call in a test binary runs `e2e/cluster up` (idempotent: quick when it is
/// already up) so that `cargo test` works from a cold machine.
pub async fn client() -> Result<Client, Error> {
    let cluster = Cluster::default();
    if std::env::var_os(TEST_KUBECONFIG).is_none_or(|v| v.is_empty()) {
        STARTED
            .get_or_try_init(|| async {
                let script = cluster.clone();
                tokio::task::spawn_blocking(move || script.run(&["up"]))
                    .await
                    .map_err(|join| Error::ClusterCommand {
                        command: "up".into(),
                        output: join.to_string(),
                    })?
                    .map(drop)
            })
            .await?;
    }
    cluster.connect().await
}
