//! The server's Deployment: one replica, `Recreate` (these servers keep a
//! SQLite database, and a RollingUpdate would wait forever for a second pod
//! to mount a ReadWriteOnce config volume on another node), placed by node
//! affinity on the image's architectures and by the GPU resource it requests.

use std::collections::BTreeMap;

use homelab_api::MediaServer;
use homelab_api::mediaserver::{MediaVolume, TranscodingHardware};
use homelab_kit::FieldManager;
use homelab_kit::single_replica;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction,
    HostPathVolumeSource, NFSVolumeSource, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PreferredSchedulingTerm, Probe, ResourceRequirements, SeccompProfile, SecurityContext,
    TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::names;
use super::service::PORT_NAME;
use crate::placement::ARCH_LABEL;
use crate::preset::{Health, Security};
use crate::validate::Plan;

/// Name of the server's container.
pub const CONTAINER: &str = "server";

/// The Deployment of `ms`.
///
/// # Errors
/// [`homelab_kit::Error::OwnerNotPersisted`].
pub fn deployment(
    ms: &MediaServer,
    plan: &Plan,
    manager: &FieldManager,
) -> Result<Deployment, homelab_kit::Error> {
    let name = ms.name_any();
    let (volumes, mounts) = volumes(ms, plan);
    let pod = PodSpec {
        affinity: Some(affinity(ms, plan)),
        tolerations: homelab_kit::failover::pod_tolerations(
            &ms.spec.failover,
            &ms.spec.tolerations,
        ),
        security_context: Some(pod_security(plan)),
        // Service links put one variable per Service in the
        // namespace into the environment, which Jellyfin and
        // Plex read as their own settings.
        enable_service_links: Some(false),
        automount_service_account_token: Some(false),
        containers: vec![container(ms, plan, mounts)],
        volumes: Some(volumes),
        ..PodSpec::default()
    };
    single_replica::deployment(
        ms,
        manager,
        names::labels(&name, plan.preset.app, manager.name()),
        names::selector_labels(&name),
        pod,
    )
}

/// Required: the image's architectures, and the pinned or allowed nodes.
/// Preferred: `failover.preferredNodes`, first one strongest.
fn affinity(ms: &MediaServer, plan: &Plan) -> Affinity {
    let policy = &ms.spec.failover;
    let nodes: Vec<String> = match ms.spec.pinned_node() {
        Some(node) => vec![node.to_owned()],
        None => policy.allowed_nodes.clone(),
    };
    let arch = NodeSelectorRequirement {
        key: ARCH_LABEL.to_owned(),
        operator: "In".to_owned(),
        values: Some(
            plan.architectures
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect(),
        ),
    };
    // Node names, not the hostname label: they differ on some installs. The API
    // server allows a single value in a metadata.name field requirement, so each
    // allowed node is a term of its own (terms are ORed), each with the
    // architecture requirement.
    let required: Vec<NodeSelectorTerm> = if nodes.is_empty() {
        vec![NodeSelectorTerm {
            match_expressions: Some(vec![arch]),
            match_fields: None,
        }]
    } else {
        nodes
            .into_iter()
            .map(|node| NodeSelectorTerm {
                match_expressions: Some(vec![arch.clone()]),
                match_fields: Some(vec![name_is(node)]),
            })
            .collect()
    };
    let preferred: Vec<PreferredSchedulingTerm> = policy
        .preferred_nodes
        .iter()
        .zip((1..=100).rev().step_by(10))
        .map(|(node, weight)| PreferredSchedulingTerm {
            weight,
            preference: NodeSelectorTerm {
                match_expressions: None,
                match_fields: Some(vec![name_is(node.clone())]),
            },
        })
        .collect();
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: required,
            }),
            preferred_during_scheduling_ignored_during_execution: (!preferred.is_empty())
                .then_some(preferred),
        }),
        ..Affinity::default()
    }
}

fn name_is(node: String) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: "metadata.name".to_owned(),
        operator: "In".to_owned(),
        values: Some(vec![node]),
    }
}

/// The pod stays on an unreachable node only as long as the failover policy
/// says, instead of Kubernetes' 300 s; with failover Disabled, Kubernetes'
/// own defaults apply.
fn pod_security(plan: &Plan) -> PodSecurityContext {
    let supplemental_groups = (!plan.render_groups.is_empty()).then(|| plan.render_groups.clone());
    let seccomp_profile = Some(runtime_default());
    match plan.preset.security {
        Security::Restricted { id } => PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(id),
            run_as_group: Some(id),
            fs_group: Some(id),
            // A chown of a big config volume on every start is slow; only
            // a volume whose root does not match yet needs it.
            fs_group_change_policy: Some("OnRootMismatch".to_owned()),
            supplemental_groups,
            seccomp_profile,
            ..PodSecurityContext::default()
        },
        Security::DropsPrivilegesItself => PodSecurityContext {
            supplemental_groups,
            seccomp_profile,
            ..PodSecurityContext::default()
        },
    }
}

fn container_security(plan: &Plan) -> SecurityContext {
    let (run_as_non_root, add) = match plan.preset.security {
        Security::Restricted { .. } => (Some(true), None),
        // What an init running as root needs to hand files and itself over
        // to the server's user; nothing more.
        Security::DropsPrivilegesItself => (
            None,
            Some(
                ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
        ),
    };
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        run_as_non_root,
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add,
        }),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}

fn container(ms: &MediaServer, plan: &Plan, mounts: Vec<VolumeMount>) -> Container {
    Container {
        name: CONTAINER.to_owned(),
        image: Some(plan.image.clone()),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_owned()),
            container_port: plan.port,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        env: Some(env(ms, plan)).filter(|e| !e.is_empty()),
        resources: Some(resources(ms, plan)),
        security_context: Some(container_security(plan)),
        volume_mounts: Some(mounts),
        // A first start migrates the database and scans libraries: give it
        // ten minutes before liveness may restart it.
        startup_probe: Some(probe(plan, 10, 60)),
        readiness_probe: Some(probe(plan, 10, 3)),
        liveness_probe: Some(probe(plan, 30, 5)),
        ..Container::default()
    }
}

fn probe(plan: &Plan, period: i32, failures: i32) -> Probe {
    let port = IntOrString::String(PORT_NAME.to_owned());
    let (http_get, tcp_socket) = match plan.preset.health {
        Health::Http(path) => (
            Some(HTTPGetAction {
                path: Some(path.to_owned()),
                port,
                ..HTTPGetAction::default()
            }),
            None,
        ),
        Health::Tcp => (None, Some(TCPSocketAction { port, host: None })),
    };
    Probe {
        http_get,
        tcp_socket,
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(5),
        ..Probe::default()
    }
}

/// The spec's variables, then the preset's and the GPU's unless the spec
/// sets the same name.
fn env(ms: &MediaServer, plan: &Plan) -> Vec<EnvVar> {
    let mut env = ms.spec.env.clone();
    let mut defaults: Vec<(&str, String)> = plan
        .preset
        .env
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect();
    if plan.preset.app == "navidrome"
        && let Some(music) = ms.spec.media.first()
    {
        defaults.push(("ND_MUSICFOLDER", music.mount_path.clone()));
    }
    if ms.spec.transcoding.as_ref().map(|t| t.hardware) == Some(TranscodingHardware::Nvidia) {
        defaults.push((
            "NVIDIA_DRIVER_CAPABILITIES",
            "compute,video,utility".to_owned(),
        ));
    }
    for (name, value) in defaults {
        if !env.iter().any(|e| e.name == name) {
            env.push(EnvVar {
                name: name.to_owned(),
                value: Some(value),
                value_from: None,
            });
        }
    }
    env
}

/// The spec's resources plus one GPU, as a limit (an extended resource's
/// request defaults to its limit).
fn resources(ms: &MediaServer, plan: &Plan) -> ResourceRequirements {
    let mut resources = ms.spec.resources.clone().unwrap_or_default();
    if let Some(gpu) = plan.gpu {
        resources
            .limits
            .get_or_insert_with(BTreeMap::new)
            .entry(gpu.to_owned())
            .or_insert_with(|| Quantity("1".to_owned()));
    }
    resources
}

/// Config, cache and media volumes with their mounts.
fn volumes(ms: &MediaServer, plan: &Plan) -> (Vec<Volume>, Vec<VolumeMount>) {
    let name = ms.name_any();
    let spec = &ms.spec;
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();

    let config = &spec.config;
    let config_volume = if let Some(claim) = &config.existing_claim {
        claim_volume("config", claim, false)
    } else if config.volume_claim.is_some() {
        claim_volume("config", &names::config_claim(&name), false)
    } else if let Some(host) = &config.host_path {
        host_volume("config", &host.path, "DirectoryOrCreate")
    } else if let Some(nfs) = &config.nfs {
        nfs_volume("config", &nfs.server, &nfs.path, false)
    } else {
        empty_dir("config")
    };
    volumes.push(config_volume);
    mounts.push(mount("config", plan.preset.config_path, false));

    volumes.push(match &spec.cache {
        Some(_) => claim_volume("cache", &names::cache_claim(&name), false),
        None => empty_dir("cache"),
    });
    mounts.push(mount("cache", plan.preset.cache_path, false));

    for media in &spec.media {
        let volume_name = format!("media-{}", media.name);
        volumes.push(media_volume(&volume_name, media));
        mounts.push(mount(&volume_name, &media.mount_path, media.read_only));
    }
    (volumes, mounts)
}

fn media_volume(name: &str, media: &MediaVolume) -> Volume {
    if let Some(claim) = &media.existing_claim {
        claim_volume(name, claim, media.read_only)
    } else if let Some(nfs) = &media.nfs {
        nfs_volume(name, &nfs.server, &nfs.path, media.read_only)
    } else if let Some(host) = &media.host_path {
        // The library must already be there: an empty directory created
        // in its place would look like a library that lost every file.
        host_volume(name, &host.path, "Directory")
    } else {
        empty_dir(name)
    }
}

fn claim_volume(name: &str, claim: &str, read_only: bool) -> Volume {
    Volume {
        name: name.to_owned(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.to_owned(),
            read_only: read_only.then_some(true),
        }),
        ..Volume::default()
    }
}

fn nfs_volume(name: &str, server: &str, path: &str, read_only: bool) -> Volume {
    Volume {
        name: name.to_owned(),
        nfs: Some(NFSVolumeSource {
            server: server.to_owned(),
            path: path.to_owned(),
            read_only: read_only.then_some(true),
        }),
        ..Volume::default()
    }
}

fn host_volume(name: &str, path: &str, type_: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        host_path: Some(HostPathVolumeSource {
            path: path.to_owned(),
            type_: Some(type_.to_owned()),
        }),
        ..Volume::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{homelab, media_server};
    use crate::observed::Observed;
    use crate::placement::INTEL_GPU;
    use crate::validate::validate;
    use serde_json::{Value, json};

    fn build(spec: Value) -> Value {
        let mut nodes = homelab();
        nodes.push(crate::fixtures::node(
            "jetson-1",
            "arm64",
            &[("nvidia.com/gpu", "1")],
        ));
        let ms = media_server(spec);
        let observed = Observed {
            nodes,
            ..Observed::default()
        };
        let plan = validate(&ms, &observed, &crate::fixtures::allowed()).unwrap();
        let d = deployment(&ms, &plan, &FieldManager::new("mediaserver-controller")).unwrap();
        serde_json::to_value(d).unwrap()
    }

    #[test]
    fn quick_sync_jellyfin_requests_the_igpu_without_privileges() {
        let d = build(json!({
            "preset": "Jellyfin",
            "config": {"volumeClaim": {"size": "10Gi"}},
            "media": [{"name": "movies", "mountPath": "/media/movies",
                       "nfs": {"server": "nas", "path": "/movies"}}],
            "transcoding": {"hardware": "IntelQuickSync", "renderGroupId": 993},
            "resources": {"limits": {"memory": "4Gi"}},
        }));
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
        let pod = &d["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        assert_eq!(
            c["resources"]["limits"],
            json!({INTEL_GPU: "1", "memory": "4Gi"})
        );
        assert_eq!(pod["securityContext"]["supplementalGroups"], json!([993]));
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            c["securityContext"],
            json!({
                "allowPrivilegeEscalation": false, "privileged": false, "runAsNonRoot": true,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            })
        );
        let term = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0];
        assert_eq!(
            term["matchExpressions"][0],
            json!({"key": ARCH_LABEL, "operator": "In", "values": ["amd64"]})
        );
        assert!(
            pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v.get("hostPath").is_none())
        );
        let movies = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "media-movies")
            .unwrap();
        assert_eq!(movies["readOnly"], true, "media is read-only by default");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/health");
        assert_eq!(pod["tolerations"][1]["tolerationSeconds"], 20);
    }

    #[test]
    fn each_allowed_node_is_a_term_of_its_own() {
        // The API server refuses a metadata.name requirement with two values.
        let d = build(json!({
            "preset": "Jellyfin",
            "config": {"volumeClaim": {"size": "1Gi"}},
            "failover": {"allowedNodes": ["n100-1", "celeron-1"]},
        }));
        let terms = &d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"];
        let terms = terms.as_array().unwrap();
        assert_eq!(terms.len(), 2);
        for (term, node) in terms.iter().zip(["n100-1", "celeron-1"]) {
            assert_eq!(
                term["matchFields"],
                json!([{"key": "metadata.name", "operator": "In", "values": [node]}])
            );
            assert_eq!(term["matchExpressions"][0]["key"], "kubernetes.io/arch");
        }
    }

    #[test]
    fn navidrome_with_a_node_local_library_is_pinned_to_that_node() {
        let d = build(json!({
            "preset": "Navidrome",
            "config": {"volumeClaim": {"size": "1Gi"}},
            "media": [{"name": "music", "mountPath": "/music",
                       "hostPath": {"node": "pi4-2", "path": "/mnt/usb/music"}}],
            "failover": {"preferredNodes": ["pi4-2"], "mode": "Disabled"},
        }));
        let pod = &d["spec"]["template"]["spec"];
        let term = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0];
        assert_eq!(
            term["matchExpressions"][0]["values"],
            json!(["amd64", "arm64", "arm"])
        );
        assert_eq!(
            term["matchFields"][0],
            json!({"key": "metadata.name", "operator": "In", "values": ["pi4-2"]})
        );
        assert_eq!(
            pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"],
            100
        );
        assert_eq!(
            pod["volumes"][2]["hostPath"],
            json!({"path": "/mnt/usb/music", "type": "Directory"})
        );
        let env = pod["containers"][0]["env"].as_array().unwrap();
        assert!(env.contains(&json!({"name": "ND_MUSICFOLDER", "value": "/music"})));
        assert!(
            pod.get("tolerations").is_none(),
            "Disabled leaves Kubernetes' defaults"
        );
    }

    #[test]
    fn plex_keeps_only_the_capabilities_its_init_needs() {
        let d = build(json!({
            "preset": "Plex",
            "config": {"volumeClaim": {"size": "1Gi"}},
            "transcoding": {"hardware": "Nvidia"},
            "env": [{"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "all"}],
        }));
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert!(c["securityContext"].get("runAsNonRoot").is_none());
        assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1");
        let env = c["env"].as_array().unwrap();
        assert_eq!(env.len(), 1, "the spec's value wins: {env:?}");
    }
}
