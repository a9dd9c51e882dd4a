//! Which nodes could run the server: its image's architectures, the GPU it
//! asks for, the node its hostPath volumes live on, and `failover.allowedNodes`.
//!
//! The scheduler enforces all of this through the pod template; this module
//! answers the question before anything is created, so that "no node can run
//! it" is a `Stalled` status a person reads rather than a pod that stays
//! Pending forever.

use homelab_api::conditions::reasons;
use homelab_api::mediaserver::TranscodingHardware;
use homelab_api::workload::Architecture;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use crate::validate::Problem;

/// The Intel GPU device plugin's resource: one share of an iGPU.
pub const INTEL_GPU: &str = "gpu.intel.com/i915";
/// The NVIDIA device plugin's resource.
pub const NVIDIA_GPU: &str = "nvidia.com/gpu";
/// The node label the scheduler matches architectures on.
pub const ARCH_LABEL: &str = "kubernetes.io/arch";

/// Taints that say a node is down, not unsuitable: our pods tolerate the first
/// two (for `failover.unreachableAfter`), and the failover step puts the third
/// on a node it has given up on. Whether the spec can run at all must not flip
/// while a node is away; the failover step reports what happens meanwhile
/// (for a server pinned to the lost node: FailoverReady=False, and why).
const TOLERATED_TAINTS: &[&str] = &[
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    homelab_kit::failover::fence::SILENT_TAINT,
];

/// The extended resource of a transcoding device.
#[must_use]
pub const fn gpu_resource(hardware: TranscodingHardware) -> &'static str {
    match hardware {
        TranscodingHardware::IntelQuickSync => INTEL_GPU,
        TranscodingHardware::Nvidia => NVIDIA_GPU,
    }
}

/// What a node must offer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requirements {
    /// One of these architectures.
    pub architectures: Vec<Architecture>,
    /// This extended resource, when transcoding on a GPU.
    pub gpu: Option<&'static str>,
    /// Exactly this node (hostPath volumes live there).
    pub pinned_node: Option<String>,
    /// One of these nodes, when not empty.
    pub allowed_nodes: Vec<String>,
}

/// The names of the nodes that meet `req`, sorted; or why none does.
///
/// # Errors
/// A [`Problem`] with `NoGPUNode` when only the GPU is missing, else
/// `NoEligibleNode`, naming what each filter left.
pub fn eligible_nodes(req: &Requirements, nodes: &[Node]) -> Result<Vec<String>, Problem> {
    let mut left: Vec<&Node> = nodes.iter().filter(|n| accepts_pods(n)).collect();
    if left.is_empty() {
        return Err(Problem::new(
            reasons::NO_ELIGIBLE_NODE,
            "no node accepts pods (all cordoned or tainted)",
        ));
    }

    let archs: Vec<&str> = req.architectures.iter().map(|a| a.as_str()).collect();
    left.retain(|n| {
        n.labels()
            .get(ARCH_LABEL)
            .is_some_and(|a| archs.contains(&a.as_str()))
    });
    if left.is_empty() {
        return Err(Problem::new(
            reasons::NO_ELIGIBLE_NODE,
            format!(
                "no schedulable node has architecture {}: the image only runs there; add a node of that kind, or list the image's other architectures in spec.architectures if it has them",
                archs.join(" or ")
            ),
        ));
    }

    if !req.allowed_nodes.is_empty() {
        let before = names(&left);
        left.retain(|n| req.allowed_nodes.contains(&n.name_any()));
        if left.is_empty() {
            return Err(Problem::new(
                reasons::NO_ELIGIBLE_NODE,
                format!(
                    "none of failover.allowedNodes ({}) can run it; nodes that could: {before}",
                    req.allowed_nodes.join(", ")
                ),
            ));
        }
    }

    if let Some(pinned) = &req.pinned_node {
        let before = names(&left);
        left.retain(|n| n.name_any() == *pinned);
        if left.is_empty() {
            return Err(Problem::new(
                reasons::NO_ELIGIBLE_NODE,
                format!(
                    "the hostPath volumes are on node {pinned}, which does not exist, is cordoned, or cannot run the image (nodes that could: {before}); fix the node name or the architectures"
                ),
            ));
        }
    }

    if let Some(resource) = req.gpu {
        let before = names(&left);
        left.retain(|n| offers(n, resource));
        if left.is_empty() {
            return Err(Problem::new(
                reasons::NO_GPU_NODE,
                format!(
                    "no node offers {resource} (nodes otherwise able to run it: {before}); install the device plugin on a node with that GPU, or remove spec.transcoding"
                ),
            ));
        }
    }

    let mut eligible: Vec<String> = left.iter().map(|n| n.name_any()).collect();
    eligible.sort();
    Ok(eligible)
}

/// Not cordoned, and no taint our pods do not tolerate.
fn accepts_pods(node: &Node) -> bool {
    let Some(spec) = &node.spec else { return true };
    if spec.unschedulable == Some(true) {
        return false;
    }
    spec.taints
        .iter()
        .flatten()
        .all(|t| t.effect == "PreferNoSchedule" || TOLERATED_TAINTS.contains(&t.key.as_str()))
}

/// Whether the node's allocatable has at least one of `resource`.
fn offers(node: &Node, resource: &str) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get(resource))
        .is_some_and(positive)
}

/// Extended resources are whole numbers; anything that does not parse counts
/// as none rather than guessing.
fn positive(q: &Quantity) -> bool {
    q.0.trim().parse::<i64>().is_ok_and(|n| n > 0)
}

fn names(nodes: &[&Node]) -> String {
    let mut names: Vec<String> = nodes.iter().map(|n| n.name_any()).collect();
    names.sort();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::homelab;
    use homelab_api::conditions::reasons;

    fn req(archs: &[Architecture]) -> Requirements {
        Requirements {
            architectures: archs.to_vec(),
            ..Requirements::default()
        }
    }

    #[test]
    fn amd64_only_never_includes_a_pi_or_the_tainted_control_plane() {
        let nodes = eligible_nodes(&req(&[Architecture::Amd64]), &homelab()).unwrap();
        assert_eq!(nodes, ["celeron-1", "n100-1"]);
    }

    #[test]
    fn quick_sync_needs_the_plugin_resource() {
        let mut r = req(&[Architecture::Amd64]);
        r.gpu = Some(INTEL_GPU);
        assert_eq!(eligible_nodes(&r, &homelab()).unwrap(), ["n100-1"]);
        r.gpu = Some(NVIDIA_GPU);
        let problem = eligible_nodes(&r, &homelab()).unwrap_err();
        assert_eq!(problem.reason, reasons::NO_GPU_NODE);
        assert!(
            problem.message.contains("nvidia.com/gpu"),
            "{}",
            problem.message
        );
        assert!(
            problem.message.contains("celeron-1, n100-1"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn host_path_pins_to_its_node_if_it_can_run_there() {
        let mut r = req(&[Architecture::Arm64]);
        r.pinned_node = Some("pi4-2".into());
        assert_eq!(eligible_nodes(&r, &homelab()).unwrap(), ["pi4-2"]);
        r.pinned_node = Some("n100-1".into());
        let problem = eligible_nodes(&r, &homelab()).unwrap_err();
        assert_eq!(problem.reason, reasons::NO_ELIGIBLE_NODE);
        assert!(problem.message.contains("n100-1"));
    }

    #[test]
    fn allowed_nodes_restrict_and_explain() {
        let mut r = req(&[Architecture::Amd64, Architecture::Arm64]);
        r.allowed_nodes = vec!["pi4-1".into(), "cp-1".into()];
        assert_eq!(eligible_nodes(&r, &homelab()).unwrap(), ["pi4-1"]);
        r.allowed_nodes = vec!["cp-1".into()];
        let problem = eligible_nodes(&r, &homelab()).unwrap_err();
        assert!(
            problem.message.contains("allowedNodes"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn odd_quantities_count_as_none() {
        assert!(positive(&Quantity("2".into())));
        assert!(!positive(&Quantity("0".into())));
        assert!(!positive(&Quantity("lots".into())));
    }
}
