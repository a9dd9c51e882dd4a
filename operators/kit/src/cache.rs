//! What a controller keeps of the objects it watches, and how it knows its
//! caches are filled.
//!
//! A reconcile reads what it depends on from the caches the runner's watches
//! fill instead of asking the API server; only its writes leave the process.
//! Each cached object is trimmed to what a controller reads: `managedFields`
//! alone is often half an object, and a node's list of images is most of a
//! node.

use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, PodSpec, PodStatus, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::reflector::Store;

/// The annotation `kubectl apply` (client-side) keeps a whole copy of the
/// object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what no controller reads from any object's metadata.
pub fn trim_metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// [`trim_metadata`] of any object: the trim of kinds read whole.
pub fn trim<K: Resource>(obj: &mut K) {
    trim_metadata(obj.meta_mut());
}

/// A pod as the controllers read it: where it runs, whether it is Ready or
/// scheduled, its labels and owners; not its containers or volumes.
pub fn trim_pod(pod: &mut Pod) {
    trim_metadata(&mut pod.metadata);
    pod.spec = pod.spec.take().map(|spec| PodSpec {
        node_name: spec.node_name,
        ..PodSpec::default()
    });
    pod.status = pod.status.take().map(|status| PodStatus {
        phase: status.phase,
        conditions: status.conditions,
        ..PodStatus::default()
    });
}

/// A node without the images it holds and the volumes it has in use.
pub fn trim_node(node: &mut Node) {
    trim_metadata(&mut node.metadata);
    if let Some(status) = node.status.as_mut() {
        status.images = None;
        status.volumes_in_use = None;
        status.volumes_attached = None;
    }
}

/// A hash of `parts` as JSON, for the `relevant` functions of cached watches:
/// what a change must touch to wake a reconcile.
pub fn hash_of(parts: &impl serde::Serialize) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    // Serializing a value of k8s-openapi's types cannot fail; an empty hash
    // would only make every change look alike, never lose one silently.
    serde_json::to_vec(parts)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

/// What of a node placement and failover read: its labels and annotations,
/// taints, whether it takes pods, what it can allocate and its conditions'
/// states (not their heartbeat times, which change every few seconds).
pub fn node_relevance(node: &Node) -> Option<u64> {
    let spec = node.spec.as_ref();
    let status = node.status.as_ref();
    let conditions: Vec<(&str, &str)> = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    Some(hash_of(&(
        &node.metadata.labels,
        &node.metadata.annotations,
        &node.metadata.deletion_timestamp,
        spec.and_then(|s| s.taints.as_ref()),
        spec.and_then(|s| s.unschedulable),
        status.and_then(|s| s.allocatable.as_ref()),
        conditions,
    )))
}

/// What of a pod wakes its owner: why no node takes it, and whether it is going
/// away. Where it runs and whether it is Ready are not here: the owning
/// Deployment's or StatefulSet's status follows them, and wakes the owner
/// itself. A pod no scheduler has refused wakes nobody, and one refused and
/// then placed wakes its owner once (its relevance is gone).
pub fn pod_relevance(pod: &Pod) -> Option<u64> {
    let unschedulable = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| c.message.as_deref().unwrap_or_default());
    let deleted = pod.metadata.deletion_timestamp.as_ref();
    (unschedulable.is_some() || deleted.is_some()).then(|| hash_of(&(unschedulable, deleted)))
}

/// Annotations Kubernetes' own controllers keep on the objects they manage
/// (the Deployment controller numbers each rollout): not an edit by anyone.
const BOOKKEEPING_ANNOTATIONS: &[&str] = &["deployment.kubernetes.io/revision"];

/// What of an applied object's metadata says someone else changed it: a new
/// generation (its spec), its labels or annotations (which carry the hash of
/// what was applied), or that it is going away. For a `relevant` function,
/// alone ([`applied_relevance`]) or with what the owner reads of its status.
pub fn edit_marks(meta: &ObjectMeta) -> impl serde::Serialize + '_ {
    let annotations: std::collections::BTreeMap<&str, &str> = meta
        .annotations
        .iter()
        .flatten()
        .filter(|(key, _)| !BOOKKEEPING_ANNOTATIONS.contains(&key.as_str()))
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    (
        meta.generation,
        &meta.labels,
        annotations,
        &meta.deletion_timestamp,
    )
}

/// [`edit_marks`] alone: an owned object whose status its owner does not read.
pub fn applied_relevance<K: Resource>(obj: &K) -> Option<u64> {
    Some(hash_of(&edit_marks(obj.meta())))
}

/// A Service has no generation: its spec, labels and annotations, and whether
/// it is going away.
pub fn service_relevance(s: &Service) -> Option<u64> {
    Some(hash_of(&(
        &s.metadata.labels,
        &s.metadata.annotations,
        &s.metadata.deletion_timestamp,
        &s.spec,
    )))
}

/// Whether a claim is bound, to what, and whether it is going away (and its
/// annotations, where a claim kept on delete says so).
pub fn claim_relevance(c: &PersistentVolumeClaim) -> Option<u64> {
    Some(hash_of(&(
        c.spec.as_ref().and_then(|s| s.volume_name.as_ref()),
        c.status.as_ref().and_then(|s| s.phase.as_ref()),
        &c.metadata.deletion_timestamp,
        &c.metadata.annotations,
    )))
}

/// Resolves once every cache registered with it has listed, so that no
/// reconcile reads an empty cache as "nothing exists" and creates what is
/// already there.
#[derive(Clone, Default)]
pub struct CachesReady {
    pending: Arc<Mutex<Vec<BoxFuture<'static, ()>>>>,
    all: Arc<Mutex<Option<Shared<BoxFuture<'static, ()>>>>>,
}

crate::debug_by_name!(CachesReady);

impl CachesReady {
    /// Adds a cache to wait for.
    pub fn add<O>(&self, store: &Store<O>)
    where
        O: Resource + Clone + Send + Sync + 'static,
        O::DynamicType: std::hash::Hash + Eq + Clone + Default + Send + Sync,
    {
        let store = store.clone();
        let ready = async move {
            // An error means the writer was dropped: the controller is stopping.
            if store.wait_until_ready().await.is_ok() {
                let kind = O::DynamicType::default();
                tracing::debug!(kind = %O::kind(&kind), objects = store.len(), "a cache has listed");
            }
        };
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ready.boxed());
    }

    /// Waits until every cache added so far has listed (at once when none).
    pub async fn wait(&self) {
        let all = {
            let mut all = self.all.lock().unwrap_or_else(PoisonError::into_inner);
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if all.is_none() || !pending.is_empty() {
                let mut waits: Vec<BoxFuture<'static, ()>> = std::mem::take(&mut *pending);
                if let Some(earlier) = all.take() {
                    waits.push(earlier.boxed());
                }
                *all = Some(
                    futures::future::join_all(waits)
                        .map(|_| ())
                        .boxed()
                        .shared(),
                );
            }
            all.clone()
        };
        if let Some(all) = all {
            all.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_trimmed_pod_keeps_what_status_and_failover_read() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "jellyfin-abc", "labels": {"app": "jellyfin"},
                         "managedFields": [{"manager": "kubelet"}],
                         "annotations": {LAST_APPLIED: "{…}", "keep": "me"}},
            "spec": {"nodeName": "pi4-1", "containers": [{"name": "jellyfin", "image": "jellyfin"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.7",
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "jellyfin", "image": "jellyfin", "imageID": "x",
                                              "ready": true, "restartCount": 0}]},
        }))
        .unwrap();
        trim_pod(&mut pod);
        assert_eq!(
            serde_json::to_value(&pod).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "jellyfin-abc", "labels": {"app": "jellyfin"},
                             "annotations": {"keep": "me"}},
                "spec": {"containers": [], "nodeName": "pi4-1"},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
            })
        );
    }

    #[test]
    fn a_trimmed_node_has_no_images() {
        let mut node: Node = serde_json::from_value(json!({
            "metadata": {"name": "pi4-1", "managedFields": [{"manager": "kubelet"}]},
            "status": {"images": [{"names": ["jellyfin"], "sizeBytes": 1}],
                       "allocatable": {"cpu": "4"}},
        }))
        .unwrap();
        trim_node(&mut node);
        assert!(node.metadata.managed_fields.is_none());
        let status = node.status.unwrap();
        assert!(status.images.is_none());
        assert!(status.allocatable.is_some());
    }

    #[test]
    fn a_pod_wakes_its_owner_when_refused_or_going_away_not_when_placed_or_ready() {
        let pod = |v: serde_json::Value| -> Pod { serde_json::from_value(v).unwrap() };
        let created = pod(json!({"metadata": {"name": "p"}}));
        assert_eq!(pod_relevance(&created), None);
        let placed = pod(
            json!({"metadata": {"name": "p"}, "spec": {"nodeName": "pi4-1", "containers": []}}),
        );
        let ready = pod(
            json!({"metadata": {"name": "p"}, "spec": {"nodeName": "pi4-1", "containers": []},
                               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(pod_relevance(&placed), None);
        assert_eq!(pod_relevance(&ready), None);
        let refused = pod(json!({"metadata": {"name": "p"}, "status": {"conditions": [
            {"type": "PodScheduled", "status": "False", "message": "0/6 nodes are available"}]}}));
        let refused_again = pod(json!({"metadata": {"name": "p"}, "status": {"conditions": [
            {"type": "PodScheduled", "status": "False", "message": "0/7 nodes are available"}]}}));
        assert!(pod_relevance(&refused).is_some());
        assert_ne!(pod_relevance(&refused), pod_relevance(&refused_again));
        let mut going = ready.clone();
        going.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        assert!(pod_relevance(&going).is_some());
    }

    #[test]
    fn an_applied_object_wakes_its_owner_when_someone_else_edits_it() {
        use k8s_openapi::api::apps::v1::Deployment;
        let deployment =
            |v: serde_json::Value| -> Deployment { serde_json::from_value(v).unwrap() };
        let applied = deployment(json!({
            "metadata": {"name": "d", "generation": 2, "annotations": {"hash": "a"}},
            "status": {"readyReplicas": 1},
        }));
        let mut rolled = applied.clone();
        rolled.status = None;
        assert_eq!(applied_relevance(&applied), applied_relevance(&rolled));
        let mut edited = applied.clone();
        edited.metadata.generation = Some(3);
        assert_ne!(applied_relevance(&applied), applied_relevance(&edited));
        let mut relabelled = applied.clone();
        relabelled.metadata.labels = Some([("a".to_owned(), "b".to_owned())].into());
        assert_ne!(applied_relevance(&applied), applied_relevance(&relabelled));
        // The Deployment controller numbering its rollout is nobody's edit.
        let mut numbered = applied.clone();
        numbered.metadata.annotations.as_mut().unwrap().insert(
            "deployment.kubernetes.io/revision".to_owned(),
            "1".to_owned(),
        );
        assert_eq!(applied_relevance(&applied), applied_relevance(&numbered));
    }

    #[test]
    fn a_claim_wakes_its_user_when_bound() {
        let claim =
            |v: serde_json::Value| -> PersistentVolumeClaim { serde_json::from_value(v).unwrap() };
        let pending = claim(json!({"metadata": {"name": "c"}, "status": {"phase": "Pending"}}));
        let bound = claim(
            json!({"metadata": {"name": "c"}, "spec": {"volumeName": "pv-1"},
                                 "status": {"phase": "Bound"}}),
        );
        let mut resized = bound.clone();
        resized.status.as_mut().unwrap().capacity = Some(
            [(
                "storage".to_owned(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("2Gi".into()),
            )]
            .into(),
        );
        assert_ne!(claim_relevance(&pending), claim_relevance(&bound));
        assert_eq!(claim_relevance(&bound), claim_relevance(&resized));
    }

    #[tokio::test]
    async fn ready_once_every_cache_listed() {
        let ready = CachesReady::default();
        ready.wait().await;
        let (reader, mut writer) = kube::runtime::reflector::store::<Pod>();
        ready.add(&reader);
        let waiting = tokio::spawn({
            let ready = ready.clone();
            async move { ready.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Init);
        writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
    }
}
