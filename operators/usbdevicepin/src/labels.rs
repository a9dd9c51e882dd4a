//! The pin's label (`devices.homelab.home.arpa/<pin>: "true"`) on the nodes that hold
//! its device, so ordinary workloads can use node affinity.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Node;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::Error;

/// The label value on nodes holding the device.
pub const PRESENT: &str = "true";

/// Puts `label` on exactly `wanted`; touches only nodes that change. Returns the
/// nodes added and removed.
///
/// # Errors
/// [`Error::Kube`] when nodes cannot be listed or patched.
pub async fn sync(
    client: &Client,
    manager: &str,
    label: &str,
    wanted: &BTreeSet<String>,
) -> Result<(Vec<String>, Vec<String>), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let have: BTreeSet<String> = nodes
        .list_metadata(&ListParams::default().labels(label))
        .await
        .map_err(|e| Error::kube(format!("list nodes labelled {label}"), e))?
        .items
        .iter()
        .filter(|n| n.labels().get(label).map(String::as_str) == Some(PRESENT))
        .map(ResourceExt::name_any)
        .collect();
    let params = PatchParams {
        field_manager: Some(manager.to_owned()),
        ..PatchParams::default()
    };
    let added: Vec<String> = wanted.difference(&have).cloned().collect();
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
