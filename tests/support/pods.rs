//! What tests read off pods and nodes again and again.

use k8s_openapi::api::core::v1::{Node, Pod};

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The node of a pod that is Ready and not being deleted.
pub fn ready_on(pod: &Pod) -> Option<&str> {
    (is_ready(pod) && pod.metadata.deletion_timestamp.is_none())
        .then_some(pod.spec.as_ref()?.node_name.as_deref())
        .flatten()
}

/// The keys of the node's taints.
pub fn taint_keys(node: &Node) -> Vec<String> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|t| t.iter().map(|t| t.key.clone()).collect())
        .unwrap_or_default()
}
