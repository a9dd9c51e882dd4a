//! The desired CronJob (pure): the runner on a control-plane node, with the host's
//! network (etcd listens on 127.0.0.1) and the certificate files, destination and
//! scratch space mounted; no ServiceAccount token (the result goes back as the
//! termination message).

use std::collections::BTreeMap;

use homelab_api::EtcdBackup;
use homelab_api::etcdbackup::{Compression, Datastore, EtcdTlsFiles};
use homelab_api::references::SecretKeyRef;
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, EnvVar, EnvVarSource, HostPathVolumeSource, KeyToPath,
    NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use crate::args::{ENV_ACCESS_KEY_ID, ENV_SECRET_ACCESS_KEY};
use crate::preset;

/// The role label every distribution puts on its control-plane nodes.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
/// Label on the runner's pods naming their EtcdBackup.
pub const BACKUP_LABEL: &str = "homelab.home.arpa/etcdbackup";
/// Where the runner sees the certificate files.
pub const CERT_DIR: &str = "/etc/etcd-backup/pki";
/// Where the runner sees the destination directory.
pub const DEST_DIR: &str = "/backup";
/// Where the runner sees the SQLite database's directory.
pub const SQLITE_DIR: &str = "/var/lib/etcd-backup/sqlite";
/// Scratch space for verification.
pub const SCRATCH_DIR: &str = "/scratch";
/// Where the runner sees the S3 CA.
pub const S3_CA_DIR: &str = "/etc/etcd-backup/s3-ca";
/// The longest EtcdBackup name whose CronJob name fits (CronJob names: 52).
pub const MAX_NAME: usize = 52 - CRONJOB_SUFFIX.len();
const CRONJOB_SUFFIX: &str = "-etcd-backup";

/// The CronJob's name.
#[must_use]
pub fn cronjob_name(backup: &EtcdBackup) -> String {
    format!("{}{CRONJOB_SUFFIX}", backup.name_any())
}

/// The runner's image and how it is pulled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Image reference (the controller's own image: the runner is the same binary).
    pub name: String,
    /// IfNotPresent, Always or Never.
    pub pull_policy: String,
}

struct Mounts {
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
}

impl Mounts {
    fn host(&mut self, name: &str, path: &str, type_: &str, at: &str, read_only: bool) {
        self.volumes.push(Volume {
            name: name.into(),
            host_path: Some(HostPathVolumeSource {
                path: path.into(),
                type_: Some(type_.into()),
            }),
            ..Volume::default()
        });
        self.mounts.push(VolumeMount {
            name: name.into(),
            mount_path: at.into(),
            read_only: Some(read_only),
            ..VolumeMount::default()
        });
    }

    fn other(&mut self, volume: Volume, at: &str, sub_path: Option<String>, read_only: bool) {
        self.mounts.push(VolumeMount {
            name: volume.name.clone(),
            mount_path: at.into(),
            sub_path,
            read_only: Some(read_only),
            ..VolumeMount::default()
        });
        self.volumes.push(volume);
    }
}

fn secret_env(name: &str, from: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: from.name.clone(),
                key: from.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The host directory a SQLite database at `db` is mounted from, and the file's
/// name in it (the policy checks the same directory that is mounted).
#[must_use]
pub fn sqlite_dir(db: &str) -> (&str, &str) {
    match db.rsplit_once('/') {
        Some(("", file)) => ("/", file),
        Some((dir, file)) => (dir, file),
        None => ("/", db),
    }
}

/// The runner's arguments, environment and volumes for `backup`.
#[allow(clippy::too_many_lines)]
fn runner(backup: &EtcdBackup) -> (Vec<String>, Vec<EnvVar>, Mounts) {
    let spec = &backup.spec;
    let mut args = vec!["snapshot".to_owned(), "--name".into(), backup.name_any()];
    let mut env = Vec::new();
    let mut m = Mounts {
        volumes: Vec::new(),
        mounts: Vec::new(),
    };
    let flag = |args: &mut Vec<String>, f: &str, v: String| {
        args.push(f.into());
        args.push(v);
    };
    match spec.source.datastore {
        Datastore::Etcd => {
            flag(&mut args, "--endpoints", preset::endpoints(spec).join(","));
            let tls = spec.source.tls.as_ref();
            let files = tls.and_then(|t| t.host_path.clone()).or_else(|| {
                tls.is_none()
                    .then(|| preset::host_certificates(spec.source.distribution))
                    .flatten()
            });
            if let Some(secret) = tls.and_then(|t| t.secret_name.clone()) {
                m.other(
                    Volume {
                        name: "etcd-pki".into(),
                        secret: Some(SecretVolumeSource {
                            secret_name: Some(secret),
                            default_mode: Some(0o400),
                            ..SecretVolumeSource::default()
                        }),
                        ..Volume::default()
                    },
                    CERT_DIR,
                    None,
                    true,
                );
                flag(&mut args, "--cacert", format!("{CERT_DIR}/ca.crt"));
                flag(&mut args, "--cert", format!("{CERT_DIR}/tls.crt"));
                flag(&mut args, "--key", format!("{CERT_DIR}/tls.key"));
            } else if let Some(EtcdTlsFiles {
                ca_file,
                cert_file,
                key_file,
            }) = files
            {
                // Each file on its own: a directory mount would expose every key in it
                // (kubeadm's pki holds the CA's private key).
                for (name, path, flag_name, file) in [
                    ("etcd-ca", ca_file, "--cacert", "ca.crt"),
                    ("etcd-cert", cert_file, "--cert", "client.crt"),
                    ("etcd-key", key_file, "--key", "client.key"),
                ] {
                    let at = format!("{CERT_DIR}/{file}");
                    m.host(name, &path, "File", &at, true);
                    flag(&mut args, flag_name, at);
                }
            }
        }
        Datastore::Sqlite => {
            let db = spec
                .source
                .sqlite_path
                .clone()
                .unwrap_or_else(|| preset::K3S_SQLITE.into());
            let (dir, file) = sqlite_dir(&db);
            // The directory, not the file: SQLite needs the -wal and -shm beside it.
            m.host("sqlite", dir, "Directory", SQLITE_DIR, false);
            flag(&mut args, "--datastore", "sqlite".into());
            flag(&mut args, "--sqlite-path", format!("{SQLITE_DIR}/{file}"));
        }
    }
    let dest = &spec.destination;
    if let Some(host) = &dest.host_path {
        m.host("backups", &host.path, "DirectoryOrCreate", DEST_DIR, false);
        flag(&mut args, "--dest-dir", DEST_DIR.into());
    } else if let Some(pvc) = &dest.pvc {
        m.other(
            Volume {
                name: "backups".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: pvc.claim_name.clone(),
                    read_only: Some(false),
                }),
                ..Volume::default()
            },
            DEST_DIR,
            pvc.sub_path.clone(),
            false,
        );
        flag(&mut args, "--dest-dir", DEST_DIR.into());
    } else if let Some(s3) = &dest.s3 {
        flag(&mut args, "--s3-bucket", s3.bucket.clone());
        if let Some(endpoint) = &s3.endpoint {
            flag(&mut args, "--s3-endpoint", endpoint.clone());
        }
        flag(&mut args, "--s3-region", s3.region().to_owned());
        if let Some(prefix) = &s3.prefix {
            flag(&mut args, "--s3-prefix", prefix.clone());
        }
        if s3.force_path_style {
            args.push("--s3-path-style".into());
        }
        if let Some(ca) = &s3.ca_secret_ref {
            m.other(
                Volume {
                    name: "s3-ca".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(ca.name.clone()),
                        items: Some(vec![KeyToPath {
                            key: ca.key.clone(),
                            path: "ca.crt".into(),
                            mode: None,
                        }]),
                        ..SecretVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                S3_CA_DIR,
                None,
                true,
            );
            flag(&mut args, "--s3-ca", format!("{S3_CA_DIR}/ca.crt"));
        }
        env.push(secret_env(ENV_ACCESS_KEY_ID, &s3.access_key_id_secret_ref));
        env.push(secret_env(
            ENV_SECRET_ACCESS_KEY,
            &s3.secret_access_key_secret_ref,
        ));
    }
    if spec.compression == Compression::None {
        flag(&mut args, "--compression", "none".into());
    }
    let r = &spec.retention;
    flag(&mut args, "--keep-last", r.keep_last.to_string());
    if let Some(d) = r.keep_daily {
        flag(&mut args, "--keep-daily", d.to_string());
    }
    if let Some(w) = r.keep_weekly {
        flag(&mut args, "--keep-weekly", w.to_string());
    }
    if spec.verification.trial_restore {
        args.push("--trial-restore".into());
    }
    m.other(
        Volume {
            name: "scratch".into(),
            empty_dir: Some(Default::default()),
            ..Volume::default()
        },
        SCRATCH_DIR,
        None,
        false,
    );
    flag(&mut args, "--scratch-dir", SCRATCH_DIR.into());
    (args, env, m)
}

/// The CronJob for `backup`, owned by it.
///
/// # Errors
/// When the owner reference cannot be built (no uid yet).
/// The runner inside the image (the same binary as the controller).
pub const RUNNER_BINARY: &str = "/usr/local/bin/etcd-backup";

pub fn cronjob(backup: &EtcdBackup, image: &Image) -> Result<CronJob, homelab_kit::Error> {
    let spec = &backup.spec;
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "etcd-backup".to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            crate::CONTROLLER_NAME.to_owned(),
        ),
        (BACKUP_LABEL.to_owned(), backup.name_any()),
    ]);
    let (args, env, mounts) = runner(backup);
    // Everything but a remote etcd (Custom endpoints with a Secret) needs the node:
    // its loopback etcd, its certificate files, its SQLite file or its directory.
    let remote = !spec.source.endpoints.is_empty()
        && spec
            .source
            .tls
            .as_ref()
            .is_some_and(|t| t.secret_name.is_some())
        && spec.destination.host_path.is_none();
    let node_selector: BTreeMap<String, String> = spec
        .destination
        .host_path
        .as_ref()
        .and_then(|h| h.node.clone())
        .map(|node| ("kubernetes.io/hostname".to_owned(), node))
        .into_iter()
        .collect();
    let tolerations = [CONTROL_PLANE_LABEL, "node-role.kubernetes.io/master"]
        .into_iter()
        .map(|key| Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        })
        .collect();
    let container = Container {
        name: "snapshot".into(),
        image: Some(image.name.clone()),
        image_pull_policy: Some(image.pull_policy.clone()),
        // The image holds every binary and starts another one by default.
        command: Some(vec![RUNNER_BINARY.into()]),
        args: Some(args),
        env: (!env.is_empty()).then_some(env),
        volume_mounts: Some(mounts.mounts),
        termination_message_path: Some(crate::args::DEFAULT_REPORT_FILE.into()),
        termination_message_policy: Some("File".into()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        restart_policy: Some("Never".into()),
        // The result goes back as the termination message: no API access at all.
        automount_service_account_token: Some(false),
        host_network: Some(!remote),
        dns_policy: Some(
            if remote {
                "ClusterFirst"
            } else {
                "ClusterFirstWithHostNet"
            }
            .into(),
        ),
        node_selector: (!node_selector.is_empty()).then_some(node_selector),
        affinity: (!remote).then(on_a_control_plane_node),
        tolerations: Some(tolerations),
        // The certificate files and k3s's database belong to root, mode 0600.
        security_context: Some(PodSecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        }),
        volumes: Some(mounts.volumes),
        ..PodSpec::default()
    };
    Ok(CronJob {
        metadata: ObjectMeta {
            name: Some(cronjob_name(backup)),
            namespace: backup.namespace(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![homelab_kit::apply::owner_reference(backup)?]),
            ..ObjectMeta::default()
        },
        spec: CronJobSpec {
            schedule: spec.schedule.clone(),
            time_zone: spec.time_zone.clone(),
            suspend: Some(spec.suspend),
            // Two runs at once would race on retention.
            concurrency_policy: Some("Forbid".into()),
            starting_deadline_seconds: Some(600),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(JobSpec {
                    // One try per schedule: a failed run is reported, and a retry
                    // storm against a struggling etcd helps nobody.
                    backoff_limit: Some(0),
                    active_deadline_seconds: Some(3600),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(labels),
                            ..ObjectMeta::default()
                        }),
                        spec: Some(pod),
                    },
                    ..JobSpec::default()
                }),
            },
        },
        status: None,
    })
}

/// Any control-plane node, whatever value its role label carries: kubeadm and
/// Talos set it empty, k3s and RKE2 set it to "true", so an equality selector
/// would leave the runner unschedulable on one of them.
fn on_a_control_plane_node() -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: CONTROL_PLANE_LABEL.to_owned(),
                        operator: "Exists".to_owned(),
                        values: None,
                    }]),
                    match_fields: None,
                }],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use homelab_api::etcdbackup::EtcdBackupSpec;

    fn backup(spec: serde_json::Value) -> EtcdBackup {
        let spec: EtcdBackupSpec = serde_json::from_value(spec).unwrap();
        let mut b = EtcdBackup::new("cluster", spec);
        b.metadata.namespace = Some("kube-system".into());
        b.metadata.uid = Some("0000".into());
        b
    }

    fn image() -> Image {
        Image {
            name: "img".into(),
            pull_policy: "IfNotPresent".into(),
        }
    }

    fn pod(cj: &CronJob) -> PodSpec {
        cj.spec
            .job_template
            .spec
            .clone()
            .unwrap()
            .template
            .spec
            .unwrap()
    }

    #[test]
    fn kubeadm_mounts_only_its_three_certificate_files() {
        let cj = cronjob(
            &backup(serde_json::json!({
                "schedule": "@hourly",
                "source": {"distribution": "Kubeadm"},
                "destination": {"hostPath": {"path": "/var/backups/etcd", "node": "cp-1"}},
            })),
            &image(),
        )
        .unwrap();
        let pod = pod(&cj);
        // The image's default entrypoint is another controller.
        assert_eq!(
            pod.containers[0].command.as_deref(),
            Some(&[RUNNER_BINARY.to_owned()][..])
        );
        let hosts: Vec<String> = pod
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.host_path.as_ref().map(|h| h.path.clone()))
            .collect();
        assert_eq!(
            hosts,
            [
                "/etc/kubernetes/pki/etcd/ca.crt",
                "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
                "/etc/kubernetes/pki/etcd/healthcheck-client.key",
                "/var/backups/etcd",
            ]
        );
        let args = pod.containers[0].args.clone().unwrap();
        assert!(
            args.windows(2)
                .any(|w| w == ["--endpoints", preset::LOCAL_ETCD])
        );
        assert_eq!(pod.host_network, Some(true));
        let selector = pod.node_selector.unwrap();
        assert_eq!(selector["kubernetes.io/hostname"], "cp-1");
        // Presence, not a value: k3s labels its servers control-plane=true.
        let terms = pod
            .affinity
            .and_then(|a| a.node_affinity)
            .and_then(|n| n.required_during_scheduling_ignored_during_execution)
            .unwrap()
            .node_selector_terms;
        let required = terms[0].match_expressions.clone().unwrap();
        assert_eq!(required[0].key, CONTROL_PLANE_LABEL);
        assert_eq!(required[0].operator, "Exists");
        assert_eq!(cj.spec.concurrency_policy.as_deref(), Some("Forbid"));
    }

    #[test]
    fn s3_credentials_come_from_secrets_and_sqlite_mounts_its_directory() {
        let cj = cronjob(
            &backup(serde_json::json!({
                "schedule": "@hourly",
                "source": {"distribution": "K3s", "datastore": "SQLite"},
                "destination": {"s3": {
                    "bucket": "b", "forcePathStyle": true,
                    "accessKeyIdSecretRef": {"name": "s3", "key": "id"},
                    "secretAccessKeySecretRef": {"name": "s3", "key": "secret"},
                }},
            })),
            &image(),
        )
        .unwrap();
        let pod = pod(&cj);
        let env = pod.containers[0].env.clone().unwrap();
        assert!(
            env.iter().all(|e| e.value.is_none()),
            "no credential in plain text"
        );
        let args = pod.containers[0].args.clone().unwrap();
        assert!(args.contains(&format!("{SQLITE_DIR}/state.db")));
        assert!(args.contains(&"--s3-path-style".to_owned()));
        let sqlite = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "sqlite")
            .unwrap();
        assert_eq!(
            sqlite.host_path.as_ref().unwrap().path,
            "/var/lib/rancher/k3s/server/db"
        );
    }
}
