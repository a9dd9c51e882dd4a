//! EtcdBackup against real peers: the controller runs in-process and writes its
//! CronJob; each test then runs the CronJob's container command locally, as its Job
//! would (the same args and environment, taken from the pod template, with the
//! host paths it mounts pointed at local files), against the cluster's own etcd, a
//! throwaway etcd, versitygw or a live SQLite file. kwok runs no containers, so a
//! run's result reaches the controller the way a kubelet would deliver it: as the
//! terminated container's message in a Pod status.

mod peers;
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use homelab_api::EtcdBackup;
use homelab_etcdbackup::build::BACKUP_LABEL;
use homelab_etcdbackup::report::RunReport;
use homelab_etcdbackup::{CONTROLLER_NAME, Controller, Image, Metrics};
use homelab_kit::Settings;
use homelab_test_support::{TestNamespace, client, install_crds, wait_for};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const TEST_MANAGER: &str = "homelab-tests";
const WAIT: Duration = Duration::from_secs(60);

/// The controller, running in this test's runtime until dropped.
pub struct Running {
    pub metrics: Metrics,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn setup(prefix: &str) -> (Client, TestNamespace, Running) {
    let client = client().await.unwrap();
    install_crds(&client).await.unwrap();
    let ns = TestNamespace::new(&client, prefix).await.unwrap();
    let mut settings = Settings::new(CONTROLLER_NAME);
    settings.namespace = Some(ns.name().to_owned());
    settings.http_addr = "127.0.0.1:0".parse().unwrap();
    settings.leader_election = false;
    let image = Image {
        name: "homelab-operators:test".into(),
        pull_policy: "IfNotPresent".into(),
    };
    let controller = Controller::new(client.clone(), settings, image);
    let metrics = controller.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(controller.run_until(async move {
        let _ = stopped.await;
    }));
    (
        client,
        ns,
        Running {
            metrics,
            stop: Some(stop),
        },
    )
}

/// Applies an EtcdBackup as a user would.
pub async fn apply(ns: &TestNamespace, name: &str, spec: Value) -> EtcdBackup {
    let body = json!({
        "apiVersion": "homelab.home.arpa/v1alpha1",
        "kind": "EtcdBackup",
        "metadata": {"name": name},
        "spec": spec,
    });
    ns.api::<EtcdBackup>()
        .patch(
            name,
            &PatchParams::apply(TEST_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap()
}

/// The CronJob the controller wrote for `name`, once its args satisfy `ready`.
pub async fn cronjob(
    ns: &TestNamespace,
    name: &str,
    ready: impl Fn(&[String]) -> bool + Send + 'static,
) -> CronJob {
    wait_for(
        &ns.api::<CronJob>(),
        &format!("{name}-etcd-backup"),
        WAIT,
        move |cj| ready(&container_args(cj)),
    )
    .await
    .unwrap()
}

fn pod_spec(cj: &CronJob) -> &k8s_openapi::api::core::v1::PodSpec {
    cj.spec
        .job_template
        .spec
        .as_ref()
        .and_then(|j| j.template.spec.as_ref())
        .unwrap()
}

fn container_args(cj: &CronJob) -> Vec<String> {
    pod_spec(cj).containers[0].args.clone().unwrap_or_default()
}

/// The container's command as it would run on the node, made local: each path
/// under a mount is replaced by the same path under the volume's host path (or,
/// for emptyDir, under `scratch`); the termination message goes to `report`.
pub fn local_args(cj: &CronJob, scratch: &Path, report: &Path) -> Vec<String> {
    let pod = pod_spec(cj);
    let container = &pod.containers[0];
    let volumes: BTreeMap<&str, &k8s_openapi::api::core::v1::Volume> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| (v.name.as_str(), v))
        .collect();
    let mut mapped = Vec::new();
    for arg in container.args.iter().flatten() {
        let mut local = arg.clone();
        for mount in container.volume_mounts.iter().flatten() {
            let volume = volumes[mount.name.as_str()];
            let host = match (&volume.host_path, &volume.empty_dir) {
                (Some(h), _) => PathBuf::from(&h.path),
                (None, Some(_)) => scratch.to_owned(),
                _ => continue,
            };
            if let Some(rest) = arg.strip_prefix(&mount.mount_path) {
                // A File hostPath is the file itself.
                local = format!("{}{rest}", host.display());
                break;
            }
        }
        mapped.push(local);
    }
    assert_eq!(
        container.termination_message_path.as_deref(),
        Some(homelab_etcdbackup::args::DEFAULT_REPORT_FILE)
    );
    mapped.push("--report-file".into());
    mapped.push(report.display().to_string());
    mapped
}

/// The container's environment, with Secret references resolved as the kubelet does.
pub async fn local_env(ns: &TestNamespace, cj: &CronJob) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for var in pod_spec(cj).containers[0].env.iter().flatten() {
        let value = match (
            &var.value,
            var.value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref()),
        ) {
            (Some(v), _) => v.clone(),
            (None, Some(r)) => {
                let secret: Secret = ns.api::<Secret>().get(&r.name).await.unwrap();
                let bytes = secret.data.unwrap()[&r.key].0.clone();
                String::from_utf8(bytes).unwrap()
            }
            _ => panic!("unexpected env {var:?}"),
        };
        env.push((var.name.clone(), value));
    }
    env
}

/// Runs `etcd-backup` with `args` (after the subcommand is included) and `env`.
pub fn run_runner(args: &[String], env: &[(String, String)], report: &Path) -> (bool, RunReport) {
    let _ = std::fs::remove_file(report);
    let out = Command::new(peers::runner_binary())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let text = std::fs::read_to_string(report).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), RunReport::parse(&text).unwrap())
}

/// Delivers a run's result as its kubelet would: a Pod of the backup (held by a
/// scheduling gate, so no scheduler or kwok touches it) whose container terminated
/// with the report as its message.
pub async fn deliver(ns: &TestNamespace, backup: &str, pod: &str, ok: bool, report: &RunReport) {
    let pods = ns.api::<Pod>();
    let body: Pod = serde_json::from_value(json!({
        "metadata": {"name": pod, "labels": {BACKUP_LABEL: backup}},
        "spec": {
            "schedulingGates": [{"name": "homelab.home.arpa/test-delivered-result"}],
            "restartPolicy": "Never",
            "containers": [{"name": "snapshot", "image": "homelab-operators:test"}],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &body).await.unwrap();
    let now = jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "phase": if ok { "Succeeded" } else { "Failed" },
        "containerStatuses": [{
            "name": "snapshot", "image": "homelab-operators:test", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"terminated": {
                "exitCode": i32::from(!ok),
                "reason": if ok { "Completed" } else { "Error" },
                "message": report.to_message(),
                "startedAt": now, "finishedAt": now,
            }},
        }],
    }});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

pub fn condition(eb: &EtcdBackup, type_: &str) -> Option<(String, String)> {
    eb.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}
