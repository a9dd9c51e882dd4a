//! The pin's label (`devices.homelab.home.arpa/<pin>: "true"`) on the nodes that hold
//! its device, so ordinary workloads can use node affinity.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Node;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::Error;

/// The label value on nodes holding the device.
pub const PRESENT: &str = "true";

/// The nodes that carry `label` with our value, asked of the API server: for the
/// cleanup of a deleted pin, which must not miss a label added an instant before and
/// not yet in the node cache (reconciles read [`crate::caches::Caches::labelled`]).
///
/// # Errors
/// [`Error::Kube`] when nodes cannot be listed.
pub async fn labelled(nodes: &Api<Node>, label: &str) -> Result<BTreeSet<String>, Error> {
    Ok(nodes
        .list_metadata(&ListParams::default().labels(label))
        .await
        .map_err(|e| Error::kube(format!("list nodes labelled {label}"), e))?
        .items
        .iter()
        .filter(|n| n.labels().get(label).map(String::as_str) == Some(PRESENT))
        .map(ResourceExt::name_any)
        .collect())
}

/// Puts `label` on exactly `wanted`, given the nodes that `have` it; touches only
/// nodes that change. Returns the nodes added and removed. A `have` read from a cache
/// a moment behind only repeats a patch that changes nothing.
///
/// # Errors
/// [`Error::Kube`] when nodes cannot be patched.
pub async fn sync(
    nodes: &Api<Node>,
    manager: &str,
    label: &str,
    have: &BTreeSet<String>,
    wanted: &BTreeSet<String>,
) -> Result<(Vec<String>, Vec<String>), Error> {
    let params = PatchParams {
        field_manager: Some(manager.to_owned()),
        ..PatchParams::default()
    };
    let added: Vec<String> = wanted.difference(have).cloned().collect();
    let removed: Vec<String> = have.difference(wanted).cloned().collect();
    for node in &added {
        let patch = json!({ "metadata": { "labels": { label: PRESENT } } });
        match nodes.patch(node, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::kube(format!("label node {node}"), e)),
        }
    }
    for node in &removed {
        let patch = json!({ "metadata": { "labels": { label: null } } });
        match nodes.patch(node, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::kube(format!("unlabel node {node}"), e)),
        }
    }
    Ok((added, removed))
}
