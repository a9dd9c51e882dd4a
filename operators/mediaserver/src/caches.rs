//! The caches a MediaServer's reconcile reads instead of the API server, each
//! filled by one of the runner's watches, and what of each watched object wakes
//! which servers.

use homelab_api::MediaServer;
use homelab_api::conditions::types;
use homelab_kit::Runner;
use homelab_kit::cache::{self, hash_of};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::storage::v1::{CSIDriver, StorageClass};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

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

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches").finish_non_exhaustive()
    }
}

impl Caches {
    /// Adds the watches to `runner` (in its watched namespace, or every namespace).
    pub fn watch(runner: &mut Runner<MediaServer>, client: &Client, leases: Store<Lease>) -> Self {
        let deployments = runner.owns_cached(trim_deployment, deployment_relevance);
        let services = runner.owns_cached(cache::trim::<Service>, service_relevance);
        let pods = runner.watches_cached(
            runner.scoped_api::<Pod>(),
            watcher::Config::default().labels(names::SERVER_LABEL),
            cache::trim_pod,
            cache::pod_relevance,
            |pod: &Pod| {
                let server = pod.labels().get(names::SERVER_LABEL).cloned();
                let ns = pod.namespace();
                server.map(|name| {
                    ObjectRef::<MediaServer>::new(&name).within(ns.as_deref().unwrap_or_default())
                })
            },
        );
        let by_claim = runner.store();
        let claims = runner.watches_cached(
            runner.scoped_api::<PersistentVolumeClaim>(),
            watcher::Config::default(),
            cache::trim::<PersistentVolumeClaim>,
            claim_relevance,
            move |claim: &PersistentVolumeClaim| {
                let (name, ns) = (claim.name_any(), claim.namespace());
                by_claim
                    .state()
                    .into_iter()
                    .filter(|ms| ms.namespace() == ns && names::claims_of(ms).contains(&name))
                    .map(|ms| ObjectRef::from_obj(&*ms))
                    .collect::<Vec<_>>()
            },
        );
        let by_node = runner.store();
        let nodes = runner.watches_cached(
            Api::all(client.clone()),
            watcher::Config::default(),
            cache::trim_node,
            cache::node_relevance,
            move |node: &Node| concerned(&by_node, &node.name_any()),
        );
        let everything = watcher::Config::default;
        Self {
            nodes,
            claims,
            volumes: runner.cache(Api::all(client.clone()), everything(), cache::trim),
            classes: runner.cache(Api::all(client.clone()), everything(), cache::trim),
            drivers: runner.cache(Api::all(client.clone()), everything(), cache::trim),
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
            let Some(found) = self.claims.get(&ObjectRef::new(&claim).within(&ns)) else {
                continue;
            };
            let bound = found.spec.as_ref().and_then(|s| s.volume_name.clone());
            if let Some(volume) = bound.filter(|v| !v.is_empty())
                && let Some(pv) = self.volumes.get(&ObjectRef::new(&volume))
            {
                volumes.insert(volume, (*pv).clone());
            }
            claims.insert(claim, (*found).clone());
        }
        let selector = names::selector_labels(&name);
        Observed {
            nodes: copies(&self.nodes),
            claims,
            volumes,
            storage_classes: copies(&self.classes),
            drivers: copies(&self.drivers),
            deployment: self
                .deployments
                .get(&ObjectRef::new(&name).within(&ns))
                .map(|d| (*d).clone()),
            service: self
                .services
                .get(&ObjectRef::new(&name).within(&ns))
                .map(|s| (*s).clone()),
            pods: self
                .pods
                .state()
                .into_iter()
                .filter(|p| {
                    p.namespace().as_deref() == Some(ns.as_str())
                        && selector.iter().all(|(k, v)| p.labels().get(k) == Some(v))
                })
                .map(|p| (*p).clone())
                .collect(),
        }
    }
}

fn copies<O: Clone + kube::Resource + 'static>(store: &Store<O>) -> Vec<O>
where
    O::DynamicType: std::hash::Hash + Eq + Clone,
{
    store.state().iter().map(|o| (**o).clone()).collect()
}

/// A Deployment as a server's reconcile reads it: its metadata (the hash of
/// what was applied, its generation) and its status. Not its pod template,
/// most of its size: whether someone else changed the spec shows in the
/// generation ([`homelab_kit::FieldManager::apply_unless_generation_current`]).
fn trim_deployment(d: &mut Deployment) {
    cache::trim(d);
    d.spec = None;
}

/// What of its Deployment a server's status reads (has it rolled out), and
/// what says someone else changed it (a new generation, its labels or
/// annotations, which carry the hash of what was applied).
fn deployment_relevance(d: &Deployment) -> Option<u64> {
    Some(hash_of(&(
        d.metadata.generation,
        &d.metadata.labels,
        &d.metadata.annotations,
        &d.metadata.deletion_timestamp,
        status::rolled_out(Some(d)),
    )))
}

/// A Service has no generation: its spec, labels and annotations.
fn service_relevance(s: &Service) -> Option<u64> {
    Some(hash_of(&(
        &s.metadata.labels,
        &s.metadata.annotations,
        &s.metadata.deletion_timestamp,
        &s.spec,
    )))
}

/// Whether a claim is bound, to what, and whether it is going away.
fn claim_relevance(c: &PersistentVolumeClaim) -> Option<u64> {
    Some(hash_of(&(
        c.spec.as_ref().and_then(|s| s.volume_name.as_ref()),
        c.status.as_ref().and_then(|s| s.phase.as_ref()),
        &c.metadata.deletion_timestamp,
        &c.metadata.annotations,
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
