//! The only writes failover makes outside the workload's own objects: marking a lost
//! node, and force-removing a pod its dead kubelet can never confirm deleted.
//!
//! A lost node gets a `NoSchedule` taint of ours at once, so the replacement is not
//! scheduled back onto it in the tens of seconds before the node-lifecycle controller
//! notices; with `fenceNode` it also gets `node.kubernetes.io/out-of-service`. Both
//! come off when the node heartbeats again, and only when our annotation says we put
//! them there: an admin's out-of-service taint is theirs to remove.

use homelab_api::failover::OUT_OF_SERVICE_TAINT;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::observe::FENCED_BY_ANNOTATION;
use crate::Error;

/// Our taint on a node that stopped heartbeating: no new pods until it is back.
pub const SILENT_TAINT: &str = "homelab.home.arpa/silent";
/// The value Kubernetes' documentation gives the out-of-service taint.
const OUT_OF_SERVICE_VALUE: &str = "nodeshutdown";

/// Marks `node` lost: our `NoSchedule` taint, plus the out-of-service taint when
/// `fence`, and the annotation naming `controller`. Idempotent.
///
/// # Errors
/// When the node cannot be read or patched (a conflict means it changed under us; the
/// next reconcile tries again).
pub async fn mark_lost(
    nodes: &Api<Node>,
    node: &str,
    controller: &str,
    fence: bool,
) -> Result<(), Error> {
    let current = nodes
        .get(node)
        .await
        .map_err(|e| Error::kube(format!("get Node {node}"), e))?;
    let mut taints = taints_of(&current);
    let mut wanted = vec![taint(SILENT_TAINT, "NoSchedule", None)];
    if fence {
        wanted.push(taint(
            OUT_OF_SERVICE_TAINT,
            "NoExecute",
            Some(OUT_OF_SERVICE_VALUE),
        ));
    }
    let missing: Vec<Taint> = wanted
        .into_iter()
        .filter(|w| {
            !taints
                .iter()
                .any(|t| t.key == w.key && t.effect == w.effect)
        })
        .collect();
    let annotated = current.annotations().contains_key(FENCED_BY_ANNOTATION);
    if missing.is_empty() && annotated {
        return Ok(());
    }
    taints.extend(missing);
    patch_taints(nodes, &current, &taints, Some(controller)).await
}

/// Takes off what [`mark_lost`] put on `node`, if our annotation is there.
///
/// # Errors
/// As [`mark_lost`].
pub async fn release(nodes: &Api<Node>, node: &str) -> Result<bool, Error> {
    let Some(current) = nodes
        .get_opt(node)
        .await
        .map_err(|e| Error::kube(format!("get Node {node}"), e))?
    else {
        return Ok(false);
    };
    if !current.annotations().contains_key(FENCED_BY_ANNOTATION) {
        return Ok(false);
    }
    let taints: Vec<Taint> = taints_of(&current)
        .into_iter()
        .filter(|t| t.key != SILENT_TAINT && t.key != OUT_OF_SERVICE_TAINT)
        .collect();
    patch_taints(nodes, &current, &taints, None).await?;
    Ok(true)
}

/// Deletes `pod` with no grace: its kubelet is gone and will never confirm a graceful
/// deletion. The uid precondition keeps a same-named newer pod safe. A pod already
/// gone is fine.
///
/// # Errors
/// When the API server refuses the delete.
pub async fn force_delete(pods: &Api<Pod>, pod: &Pod) -> Result<(), Error> {
    let name = pod.name_any();
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: pod.uid().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 403 => {
            let namespace = pod.namespace().unwrap_or_default();
            Err(Error::kube(
                format!(
                    "force-delete Pod {name}: this controller may delete pods only in the namespaces the administrator listed in the chart value `namespaces`; add {namespace}"
                ),
                kube::Error::Api(s),
            ))
        }
        Err(e) => Err(Error::kube(format!("force-delete Pod {name}"), e)),
    }
}

fn taints_of(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
}

fn taint(key: &str, effect: &str, value: Option<&str>) -> Taint {
    Taint {
        key: key.to_owned(),
        effect: effect.to_owned(),
        value: value.map(str::to_owned),
        time_added: None,
    }
}

/// `spec.taints` is replaced whole by a merge patch; the resourceVersion in the patch
/// makes it conditional, so a taint the node-lifecycle controller adds meanwhile is
/// not lost (the patch fails with a conflict and the next reconcile retries).
async fn patch_taints(
    nodes: &Api<Node>,
    current: &Node,
    taints: &[Taint],
    fenced_by: Option<&str>,
) -> Result<(), Error> {
    let name = current.name_any();
    let body = json!({
        "metadata": {
            "resourceVersion": current.resource_version(),
            "annotations": {FENCED_BY_ANNOTATION: fenced_by},
        },
        "spec": {"taints": taints},
    });
    nodes
        .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .map(drop)
        .map_err(|e| Error::kube(format!("patch taints of Node {name}"), e))
}
