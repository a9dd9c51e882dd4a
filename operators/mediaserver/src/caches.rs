//! The caches a MediaServer's reconcile reads instead of the API server, each
//! filled by one of the runner's watches, and what of each watched object wakes
//! which servers.

use homelab_api::MediaServer;
use homelab_api::conditions::types;
use homelab_kit::Runner;
use homelab_kit::cache::{self, hash_of};
use homelab_kit::cached;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::storage::v1::{CSIDriver, StorageClass};
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::build::names;
use crate::observed::Observed;
use crate::status;

/// Every cache a reconcile reads.
#[derive(Clone)]
pub struct Caches {
    /// Every node.
    pub nodes: Store<Node>,
    /// Claims in the watched namespaces.
    pub claims: Store<PersistentVolumeClaim>,
    /// Every PersistentVolume (what a claim is bound to).
    pub volumes: Store<PersistentVolume>,
    /// Every StorageClass.
    pub classes: Store<StorageClass>,
    /// Every CSIDriver.
    pub drivers: Store<CSIDriver>,
    /// The Deployments servers own.
    pub deployments: Store<Deployment>,
    /// The Services servers own.
    pub services: Store<Service>,
    /// The servers' pods (those with the server label).
    pub pods: Store<Pod>,
    /// The kubelets' heartbeat Leases.
    pub leases: Store<Lease>,
}

homelab_kit::debug_by_name!(Caches);

impl Caches {
    /// Adds the watches to `runner` (in its watched namespace, or every namespace).
    pub fn watch(runner: &mut Runner<MediaServer>, leases: Store<Lease>) -> Self {
        let deployments = runner.owns_cached(trim_deployment, deployment_relevance);
        let services = runner.owns_cached(cache::trim::<Service>, cache::service_relevance);
        let pods = runner.watches_cached(
            runner.scoped_api::<Pod>(),
            watcher::Config::default().labels(names::SERVER_LABEL),
            cache::trim_pod,
            cache::pod_relevance,
            |pod: &Pod| cached::by_label::<MediaServer>(&pod.metadata, names::SERVER_LABEL),
        );
        let claims = runner.watches_referenced(
            cache::trim::<PersistentVolumeClaim>,
            cache::claim_relevance,
            |ms: &MediaServer, claim| names::claims_of(ms).iter().any(|c| c == claim),
        );
        let nodes = runner.watches_nodes(concerned);
        Self {
            nodes,
            claims,
            volumes: runner.cache_all(),
            classes: runner.cache_all(),
            drivers: runner.cache_all(),
            deployments,
            services,
            pods,
            leases,
        }
    }

    /// What `ms` depends on, as the caches hold it now.
    #[must_use]
    pub fn observe(&self, ms: &MediaServer) -> Observed {
        let name = ms.name_any();
        let ns = ms.namespace().unwrap_or_default();
        let mut claims = std::collections::BTreeMap::new();
        let mut volumes = std::collections::BTreeMap::new();
        for claim in names::claims_of(ms) {
            let Some(found) = cached::copy_of(&self.claims, &ns, &claim) else {
                continue;
            };
            let bound = found.spec.as_ref().and_then(|s| s.volume_name.clone());
            if let Some(volume) = bound.filter(|v| !v.is_empty())
                && let Some(pv) = self.volumes.get(&ObjectRef::new(&volume))
            {
                volumes.insert(volume, (*pv).clone());
            }
            claims.insert(claim, found);
        }
        Observed {
            nodes: cached::copies(&self.nodes),
            claims,
            volumes,
            storage_classes: cached::copies(&self.classes),
            drivers: cached::copies(&self.drivers),
            deployment: cached::copy_of(&self.deployments, &ns, &name),
            service: cached::copy_of(&self.services, &ns, &name),
            pods: cached::labelled(&self.pods, &ns, &names::selector_labels(&name)),
        }
    }
}

/// A Deployment as a server's reconcile reads it: its metadata (the hash of
/// what was applied, its generation) and its status. Not its pod template,
/// most of its size: whether someone else changed the spec shows in the
/// generation ([`homelab_kit::Kept::WithoutSpec`]).
fn trim_deployment(d: &mut Deployment) {
    cache::trim(d);
    d.spec = None;
}

/// What says someone else changed a server's Deployment
/// ([`cache::edit_marks`]), and what of it the server's status reads: has it
/// rolled out.
fn deployment_relevance(d: &Deployment) -> Option<u64> {
    Some(hash_of(&(
        cache::edit_marks(&d.metadata),
        status::rolled_out(Some(d)),
    )))
}

/// The servers a change of `node` may concern: refused ones (it may fit now), those
/// running there or placed nowhere yet, and those that last failed over from it (to
/// unmark it when it is back).
pub fn concerned(store: &Store<MediaServer>, node: &str) -> Vec<ObjectRef<MediaServer>> {
    store
        .state()
        .into_iter()
        .filter(|ms| {
            ms.status.as_ref().is_none_or(|s| {
                homelab_api::ConditionedStatus::is_condition_true(s, types::STALLED)
                    || s.node.as_deref().is_none_or(|n| n == node)
                    || s.last_failover
                        .as_ref()
                        .is_some_and(|r| r.from_node.as_deref() == Some(node))
            })
        })
        .map(|ms| ObjectRef::from_obj(&*ms))
        .collect()
}
