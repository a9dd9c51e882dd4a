//! Validate: what the API server's schema could not refuse, checked against
//! what was read. Pure; turns a spec into a [`Plan`] or a [`Problem`] a person
//! can act on. Nothing is applied for a spec with a problem, so a bad spec
//! never leaves half of a server behind.

use homelab_api::MediaServer;
use homelab_api::conditions::reasons;
use homelab_api::conditions::reasons::HOST_PATH_NOT_ALLOWED;
use homelab_api::mediaserver::TranscodingHardware;
use homelab_api::workload::Architecture;
use homelab_kit::settings::AllowedHostPaths;
use kube::ResourceExt;

use crate::build::names;
use crate::observed::Observed;
use crate::placement::{self, Requirements};
use crate::preset::{Preset, Security};

/// Reason of a spec that sets `image` with a preset whose container starts as
/// root (Plex).
pub const CUSTOM_IMAGE_WITH_ROOT_PRESET: &str = "CustomImageWithRootPreset";

/// Why the server cannot be built or placed, as a condition reason and a
/// message saying what to change.
pub use homelab_kit::Problem;

/// A spec resolved against its preset and the cluster: what to build.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The preset's defaults.
    pub preset: Preset,
    /// The image to run.
    pub image: String,
    /// The container's port.
    pub port: i32,
    /// The Service's port.
    pub service_port: i32,
    /// Architectures the pod may run on.
    pub architectures: Vec<Architecture>,
    /// The GPU resource to request, if any.
    pub gpu: Option<&'static str>,
    /// Supplemental groups that open the render device.
    pub render_groups: Vec<i64>,
    /// Nodes that can run it now, sorted.
    pub eligible_nodes: Vec<String>,
}

/// Checks `ms` against what was read and what the administrator allows.
///
/// # Errors
/// The first [`Problem`] found: invalid spec, a host path or image the
/// administrator does not allow, a missing claim, no node.
pub fn validate(
    ms: &MediaServer,
    observed: &Observed,
    host_paths: &AllowedHostPaths,
) -> Result<Plan, Problem> {
    let spec = &ms.spec;
    let name = ms.name_any();
    if !names::is_dns_label(&name) {
        return Err(Problem::new(
            reasons::INVALID_SPEC,
            format!(
                "the name {name:?} cannot name its Service: use at most 63 lowercase letters, digits and '-', starting with a letter"
            ),
        ));
    }
    let preset = Preset::of(spec.preset);
    // The preset's root init and capabilities are granted for its own image;
    // any other image would get them too. The API server refuses this
    // combination at admission; objects stored before that rule still come
    // here.
    if let (Some(image), Security::DropsPrivilegesItself) = (&spec.image, preset.security) {
        return Err(Problem::new(
            CUSTOM_IMAGE_WITH_ROOT_PRESET,
            format!(
                "spec.image {image:?} cannot be combined with the {:?} preset, whose container starts as root with DAC_OVERRIDE, CHOWN, FOWNER, SETUID and SETGID: remove spec.image to run the preset's own image, or use the Generic preset to run another image without root",
                spec.preset
            ),
        ));
    }
    check_host_paths(ms, host_paths)?;
    if let Some(resources) = &spec.resources {
        homelab_kit::apply::check_resources("spec.resources", resources)
            .map_err(|message| Problem::new(reasons::INVALID_SPEC, message))?;
    }
    let image = spec
        .image
        .clone()
        .or_else(|| preset.image.map(str::to_owned))
        .ok_or_else(|| {
            Problem::new(
                reasons::INVALID_SPEC,
                "the Generic preset has no image: set spec.image",
            )
        })?;
    let port = spec.port.or(preset.port).ok_or_else(|| {
        Problem::new(
            reasons::INVALID_SPEC,
            "the Generic preset has no port: set spec.port",
        )
    })?;

    let mut architectures = if spec.architectures.is_empty() {
        preset.architectures.to_vec()
    } else {
        spec.architectures.clone()
    };
    let hardware = spec.transcoding.as_ref().map(|t| t.hardware);
    if hardware == Some(TranscodingHardware::IntelQuickSync) {
        // Quick Sync is an Intel CPU's: whatever else the image runs on,
        // only amd64 nodes have it.
        architectures.retain(|a| *a == Architecture::Amd64);
        if architectures.is_empty() {
            return Err(Problem::new(
                reasons::INVALID_SPEC,
                "Intel Quick Sync needs an amd64 node: add amd64 to spec.architectures",
            ));
        }
    }

    let pinned_node = spec.pinned_node().map(str::to_owned);
    if let Some(node) = &pinned_node
        && !spec.failover.allows(node)
    {
        return Err(Problem::new(
            reasons::INVALID_SPEC,
            format!(
                "the hostPath volumes are on node {node}, which failover.allowedNodes does not allow: add it there"
            ),
        ));
    }

    check_claims(ms, observed)?;

    let gpu = hardware.map(placement::gpu_resource);
    let eligible_nodes = placement::eligible_nodes(
        &Requirements {
            architectures: architectures.clone(),
            gpu,
            pinned_node,
            allowed_nodes: spec.failover.allowed_nodes.clone(),
        },
        &observed.nodes,
    )?;

    let render_groups = match (&spec.transcoding, hardware) {
        (Some(t), Some(TranscodingHardware::IntelQuickSync)) => t.render_group_id.map_or_else(
            || crate::preset::DEFAULT_RENDER_GROUPS.to_vec(),
            |g| vec![g],
        ),
        _ => Vec::new(),
    };

    Ok(Plan {
        preset,
        image,
        port,
        service_port: spec.service.port.unwrap_or(port),
        architectures,
        gpu,
        render_groups,
        eligible_nodes,
    })
}

/// Every hostPath volume lies where the administrator allows host paths.
fn check_host_paths(ms: &MediaServer, allowed: &AllowedHostPaths) -> Result<(), Problem> {
    let spec = &ms.spec;
    let config = spec
        .config
        .host_path
        .iter()
        .map(|h| (h.path.as_str(), "spec.config.hostPath.path".to_owned()));
    let media = spec.media.iter().filter_map(|m| {
        m.host_path.as_ref().map(|h| {
            (
                h.path.as_str(),
                format!("spec.media[{}].hostPath.path", m.name),
            )
        })
    });
    for (path, field) in config.chain(media) {
        allowed
            .check(&field, path)
            .map_err(|refused| Problem::new(HOST_PATH_NOT_ALLOWED, refused.to_string()))?;
    }
    Ok(())
}

/// Every claim the user references exists; claims the operator created keep
/// the access mode they were created with (Kubernetes cannot change it).
fn check_claims(ms: &MediaServer, observed: &Observed) -> Result<(), Problem> {
    let spec = &ms.spec;
    let ns = ms.namespace().unwrap_or_default();
    let referenced = spec
        .config
        .existing_claim
        .iter()
        .map(|c| (c, "spec.config.existingClaim".to_owned()))
        .chain(spec.media.iter().filter_map(|m| {
            m.existing_claim
                .as_ref()
                .map(|c| (c, format!("spec.media[{}].existingClaim", m.name)))
        }));
    for (claim, field) in referenced {
        if !observed.claims.contains_key(claim) {
            return Err(Problem::new(
                reasons::REFERENCE_NOT_FOUND,
                format!(
                    "PersistentVolumeClaim {claim} (from {field}) does not exist in namespace {ns}: create it, or fix the name"
                ),
            ));
        }
    }

    let name = ms.name_any();
    let owned = [
        (
            names::config_claim(&name),
            spec.config.volume_claim.as_ref(),
            "spec.config.volumeClaim",
        ),
        (names::cache_claim(&name), spec.cache.as_ref(), "spec.cache"),
    ];
    for (claim, wanted, field) in owned {
        let (Some(wanted), Some(current)) = (wanted, observed.claims.get(&claim)) else {
            continue;
        };
        let modes = current
            .spec
            .as_ref()
            .and_then(|s| s.access_modes.clone())
            .unwrap_or_default();
        let mode = wanted.access_mode().as_str();
        if !modes.is_empty() && !modes.iter().any(|m| m == mode) {
            return Err(Problem::new(
                reasons::INVALID_SPEC,
                format!(
                    "{field}.accessMode is {mode} but claim {claim} exists as {}: a claim's access mode cannot change; set it back, or delete the claim (and its data) to recreate it",
                    modes.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{allowed, claim, homelab, media_server};
    use serde_json::json;

    fn observed() -> Observed {
        Observed {
            nodes: homelab(),
            ..Observed::default()
        }
    }

    #[test]
    fn jellyfin_with_quick_sync_is_amd64_on_the_igpu_node() {
        let ms = media_server(json!({
            "preset": "Jellyfin",
            "config": {"volumeClaim": {"size": "10Gi"}},
            "transcoding": {"hardware": "IntelQuickSync"},
        }));
        let plan = validate(&ms, &observed(), &allowed()).unwrap();
        assert_eq!(plan.architectures, [Architecture::Amd64]);
        assert_eq!(plan.gpu, Some(placement::INTEL_GPU));
        assert_eq!(plan.eligible_nodes, ["n100-1"]);
        assert_eq!(plan.render_groups, crate::preset::DEFAULT_RENDER_GROUPS);
        assert_eq!((plan.port, plan.service_port), (8096, 8096));
        assert!(plan.image.starts_with("docker.io/jellyfin/jellyfin:"));
    }

    #[test]
    fn missing_claim_is_named_with_its_field() {
        let ms = media_server(json!({
            "preset": "Navidrome",
            "config": {"volumeClaim": {"size": "1Gi"}},
            "media": [{"name": "music", "mountPath": "/music", "existingClaim": "music"}],
        }));
        let problem = validate(&ms, &observed(), &allowed()).unwrap_err();
        assert_eq!(problem.reason, reasons::REFERENCE_NOT_FOUND);
        assert!(
            problem
                .message
                .contains("music (from spec.media[music].existingClaim)"),
            "{}",
            problem.message
        );

        let mut found = observed();
        found
            .claims
            .insert("music".into(), claim("music", "ReadOnlyMany"));
        assert!(validate(&ms, &found, &allowed()).is_ok());
    }

    #[test]
    fn nvidia_on_a_cluster_without_one_is_no_gpu_node() {
        let ms = media_server(json!({
            "preset": "Plex",
            "config": {"volumeClaim": {"size": "1Gi"}},
            "transcoding": {"hardware": "Nvidia"},
        }));
        assert_eq!(
            validate(&ms, &observed(), &allowed()).unwrap_err().reason,
            reasons::NO_GPU_NODE
        );
    }

    #[test]
    fn access_mode_of_an_existing_claim_cannot_change() {
        let ms = media_server(json!({
            "preset": "Jellyfin",
            "config": {"volumeClaim": {"size": "1Gi", "accessMode": "ReadWriteMany"}},
        }));
        let mut found = observed();
        found.claims.insert(
            "jellyfin-config".into(),
            claim("jellyfin-config", "ReadWriteOnce"),
        );
        let problem = validate(&ms, &found, &allowed()).unwrap_err();
        assert_eq!(problem.reason, reasons::INVALID_SPEC);
        assert!(problem.message.contains("cannot change"));
    }

    #[test]
    fn host_paths_outside_the_allow_list_are_refused() {
        let ms = |path: &str| {
            media_server(json!({
                "preset": "Navidrome",
                "config": {"volumeClaim": {"size": "1Gi"}},
                "media": [{"name": "music", "mountPath": "/music",
                           "hostPath": {"node": "pi4-2", "path": path}}],
            }))
        };
        let only_music = AllowedHostPaths::parse("/mnt/usb-music").unwrap();
        assert!(validate(&ms("/mnt/usb-music/library"), &observed(), &only_music).is_ok());
        for path in ["/mnt/usb-music2", "/etc", "/mnt/usb-music/../../etc"] {
            let problem = validate(&ms(path), &observed(), &only_music).unwrap_err();
            assert_eq!(problem.reason, HOST_PATH_NOT_ALLOWED);
            assert!(
                problem.message.contains(path)
                    && problem.message.contains("spec.media[music].hostPath.path")
                    && problem.message.contains("hostPaths.allowed"),
                "{}",
                problem.message
            );
        }
        // Nothing allowed: not even a config directory.
        let config = media_server(json!({
            "preset": "Jellyfin",
            "config": {"hostPath": {"node": "n100-1", "path": "/srv/jellyfin"}},
        }));
        let problem = validate(&config, &observed(), &AllowedHostPaths::none()).unwrap_err();
        assert_eq!(problem.reason, HOST_PATH_NOT_ALLOWED);
        assert!(problem.message.contains("spec.config.hostPath.path"));
        assert!(validate(&config, &observed(), &allowed()).is_ok());
    }

    #[test]
    fn a_resource_that_is_no_quantity_names_its_field() {
        let ms = media_server(json!({
            "preset": "Jellyfin",
            "config": {"volumeClaim": {"size": "1Gi"}},
            "resources": {"limits": {"memory": "lots"}},
        }));
        let problem = validate(&ms, &observed(), &allowed()).unwrap_err();
        assert_eq!(problem.reason, reasons::INVALID_SPEC);
        assert!(
            problem.message.contains("spec.resources.limits.memory"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn a_custom_image_is_refused_with_the_root_preset() {
        let plex = media_server(json!({
            "preset": "Plex",
            "image": "example.org/not-plex:1",
            "config": {"volumeClaim": {"size": "1Gi"}},
        }));
        let problem = validate(&plex, &observed(), &allowed()).unwrap_err();
        assert_eq!(problem.reason, CUSTOM_IMAGE_WITH_ROOT_PRESET);
        assert!(
            problem.message.contains("spec.image"),
            "{}",
            problem.message
        );
        // The same image without root is fine.
        let generic = media_server(json!({
            "preset": "Generic", "image": "example.org/not-plex:1", "port": 32400,
            "config": {"volumeClaim": {"size": "1Gi"}},
        }));
        assert!(validate(&generic, &observed(), &allowed()).is_ok());
    }

    #[test]
    fn generic_defaults_to_amd64_and_service_port_follows() {
        let ms = media_server(json!({
            "preset": "Generic", "image": "example.org/media:1", "port": 8080,
            "config": {"nfs": {"server": "nas", "path": "/cfg"}},
            "service": {"port": 80},
        }));
        let plan = validate(&ms, &observed(), &allowed()).unwrap();
        assert_eq!(plan.architectures, [Architecture::Amd64]);
        assert_eq!((plan.port, plan.service_port), (8080, 80));
        assert_eq!(plan.eligible_nodes, ["celeron-1", "n100-1"]);
    }
}
