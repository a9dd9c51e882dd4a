//! EtcdBackup against real peers: the controller runs in-process and writes its
//! CronJob; each test then runs the CronJob's container command locally, as its Job
//! would (the same args and environment, taken from the pod template, with the
//! host paths it mounts pointed at local files), against the cluster's own etcd, a
//! throwaway etcd, versitygw or a live SQLite file. kwok runs no containers, so a
//! run's result reaches the controller the way a kubelet would deliver it: as the
//! terminated container's message in the Pod status of a Job the CronJob owns (the
//! controller believes no other pod).
//!
//! The controller under test honours EtcdBackups in its test's namespace only, and
//! host paths under the temporary directory and the cluster's PKI directory, where
//! the tests keep their backups, databases and etcd's client certificates.

mod peers;
mod tests;

use homelab_kit::Operator as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use homelab_api::EtcdBackup;
use homelab_etcdbackup::build::BACKUP_LABEL;
use homelab_etcdbackup::report::RunReport;
use homelab_etcdbackup::{CONTROLLER_NAME, Controller, Image, Metrics, Policy};
use homelab_test_support::{TestNamespace, controller, wait_for, wait_for_list};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const TEST_MANAGER: &str = "homelab-tests";
const WAIT: Duration = Duration::from_secs(60);

/// The controller, running in this test's runtime until dropped.
pub struct Running {
    pub metrics: Metrics,
    _task: controller::Running,
}

pub async fn setup(prefix: &str) -> (Client, TestNamespace, Running) {
    let ns = TestNamespace::with_crds(prefix).await.unwrap();
    let client = ns.client().clone();
    let running = start(&client, ns.name(), policy(&[ns.name()]));
    (client, ns, running)
}

/// What the tests allow: EtcdBackups in `namespaces`, host paths under the
/// temporary directory (backups, SQLite files) and the cluster's PKI directory
/// (etcd's client certificates).
pub fn policy(namespaces: &[&str]) -> Policy {
    let etcd = peers::cluster_etcd();
    let pki = etcd.ca.parent().unwrap().display().to_string();
    let tmp = std::env::temp_dir().display().to_string();
    Policy::new(namespaces.iter().copied(), [tmp, pki]).unwrap()
}

/// The controller watching namespace `watch` only, allowing what `policy` allows.
pub fn start(client: &Client, watch: &str, policy: Policy) -> Running {
    let image = Image {
        name: "homelab-operators:test".into(),
        pull_policy: "IfNotPresent".into(),
    };
    let settings = controller::settings(CONTROLLER_NAME, watch);
    let running = Controller::new(client.clone(), settings, image).with_policy(policy);
    let metrics = running.metrics();
    Running {
        metrics,
        _task: controller::spawn(|shutdown| running.run_until(shutdown)),
    }
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

/// Delivers a run's result as the cluster would: a Job of the backup's CronJob (as
/// `kubectl create job --from=cronjob/…` makes one), whose pod the Job controller
/// creates (held by a scheduling gate, so no scheduler or kwok touches it), and
/// whose container then terminates with the report as its message, as its kubelet
/// would write it. Returns the pod's name.
pub async fn deliver(
    ns: &TestNamespace,
    backup: &str,
    run: &str,
    ok: bool,
    report: &RunReport,
) -> String {
    let cj = ns
        .api::<CronJob>()
        .get(&format!("{backup}-etcd-backup"))
        .await
        .unwrap();
    let owner = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "name": cj.metadata.name, "uid": cj.metadata.uid,
        "controller": true, "blockOwnerDeletion": true,
    });
    create_job(ns, backup, run, Some(owner)).await;
    let pod = job_pod(ns, run).await;
    terminate(ns, &pod, ok, report).await;
    pod
}

/// A Job carrying the backup's label, owned by `owner` (its controller) or by
/// nothing, whose pod never schedules.
pub async fn create_job(ns: &TestNamespace, backup: &str, name: &str, owner: Option<Value>) -> Job {
    let job: Job = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": {BACKUP_LABEL: backup},
            "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {BACKUP_LABEL: backup}},
                "spec": {
                    "schedulingGates": [{"name": "homelab.home.arpa/test-delivered-result"}],
                    "restartPolicy": "Never",
                    "containers": [{"name": "snapshot", "image": "homelab-operators:test"}],
                },
            },
        },
    }))
    .unwrap();
    ns.api::<Job>()
        .create(&PostParams::default(), &job)
        .await
        .unwrap()
}

/// The name of the pod the Job controller made for Job `job`.
pub async fn job_pod(ns: &TestNamespace, job: &str) -> String {
    let params = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    let pods = wait_for_list(&ns.api::<Pod>(), &params, WAIT, |pods| !pods.is_empty())
        .await
        .unwrap();
    pods[0].metadata.name.clone().unwrap()
}

/// A pod that only carries the backup's label, no owner: anyone allowed to create
/// pods in the namespace could make it. Its container ends with `report`.
pub async fn forge_pod(ns: &TestNamespace, backup: &str, pod: &str, report: &RunReport) {
    let body: Pod = serde_json::from_value(json!({
        "metadata": {"name": pod, "labels": {BACKUP_LABEL: backup}},
        "spec": {
            "schedulingGates": [{"name": "homelab.home.arpa/test-delivered-result"}],
            "restartPolicy": "Never",
            "containers": [{"name": "snapshot", "image": "homelab-operators:test"}],
        },
    }))
    .unwrap();
    ns.api::<Pod>()
        .create(&PostParams::default(), &body)
        .await
        .unwrap();
    terminate(ns, pod, report.ok, report).await;
}

/// Writes what a kubelet writes when the pod's container ends: the phase, and the
/// terminated state with the report as its message.
async fn terminate(ns: &TestNamespace, pod: &str, ok: bool, report: &RunReport) {
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
    ns.api::<Pod>()
        .patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
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
