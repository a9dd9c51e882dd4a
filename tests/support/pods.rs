//! What tests read off pods and nodes again and again.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec};
use kube::Api;
use kube::api::ListParams;

use crate::{Error, wait_for_list};

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

/// Waits until exactly one pod matches `selector` and it is Running and Ready on
/// `node`; returns it.
pub async fn wait_only_pod_on(
    pods: &Api<Pod>,
    selector: &ListParams,
    node: &str,
    timeout: Duration,
) -> Result<Pod, Error> {
    let running_on_node = |p: &Pod| {
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        running && is_ready(p) && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
    };
    let found = wait_for_list(pods, selector, timeout, |pods| {
        pods.len() == 1 && pods.iter().all(running_on_node)
    })
    .await?;
    Ok(found.into_iter().next().unwrap_or_default())
}

/// The pod a Deployment runs, as its template says.
///
/// # Panics
/// When the Deployment has no pod template (the API server never stores one so).
pub fn pod_spec(deployment: &Deployment) -> &PodSpec {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .unwrap_or_else(|| {
            panic!(
                "Deployment {:?} has no pod template",
                deployment.metadata.name
            )
        })
}
