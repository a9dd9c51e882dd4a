//! The caches a SensorGateway's reconcile reads instead of the API server, each
//! filled by one of the runner's watches, and what of each watched object wakes
//! which gateways.
//!
//! Secrets are not among them: the controller may only `get` Secrets (least
//! privilege: no list or watch, so no cache), and reads the few a gateway
//! names by name ([`crate::references::read`]). MQTT wakes gateways through
//! the hub.

use homelab_api::conditions::types;
use homelab_api::{ConditionedStatus, SensorGateway, UsbDevicePin};
use homelab_kit::Runner;
use homelab_kit::cache::{self, hash_of};
use homelab_kit::cached;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::storage::v1::{CSIDriver, StorageClass, VolumeAttachment};
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::build::names;
use crate::node_loss;

/// Every cache a reconcile reads.
#[derive(Clone)]
pub struct Caches {
    /// The Deployments gateways own.
    pub deployments: Store<Deployment>,
    /// The Services gateways own.
    pub services: Store<Service>,
    /// Claims in the watched namespaces (a gateway's data claim, made by the
    /// operator or named by the spec).
    pub claims: Store<PersistentVolumeClaim>,
    /// Every PersistentVolume (what a claim is bound to).
    pub volumes: Store<PersistentVolume>,
    /// Every StorageClass (where an unbound claim's volume will be).
    pub classes: Store<StorageClass>,
    /// Every CSIDriver (whether a driver attaches a volume to one node).
    pub drivers: Store<CSIDriver>,
    /// Every VolumeAttachment (whether a lost node still holds a volume).
    pub attachments: Store<VolumeAttachment>,
    /// The gateways' pods (those with the gateway label).
    pub pods: Store<Pod>,
    /// Every node.
    pub nodes: Store<Node>,
    /// The UsbDevicePins in the watched namespaces (a radio's stick).
    pub pins: Store<UsbDevicePin>,
    /// The kubelets' heartbeat Leases, kept by the kit's heartbeat watch.
    pub leases: Store<Lease>,
}

homelab_kit::debug_by_name!(Caches);

/// What the caches hold of one gateway's world when its reconcile starts.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    /// Its Deployment as it is now.
    pub deployment: Option<Deployment>,
    /// Its Service as it is now.
    pub service: Option<Service>,
    /// Its data claim, when the data is on one and it exists.
    pub claim: Option<PersistentVolumeClaim>,
    /// The volume that claim is bound to.
    pub volume: Option<PersistentVolume>,
    /// Every StorageClass.
    pub classes: Vec<StorageClass>,
    /// Every CSIDriver.
    pub drivers: Vec<CSIDriver>,
    /// Every VolumeAttachment.
    pub attachments: Vec<VolumeAttachment>,
    /// Its pods, Terminating ones included.
    pub pods: Vec<Pod>,
    /// Every node.
    pub nodes: Vec<Node>,
}

impl Caches {
    /// Adds the watches to `runner` (in its watched namespace, or every namespace).
    pub fn watch(runner: &mut Runner<SensorGateway>, leases: Store<Lease>) -> Self {
        // Its rollout is not read: the gateway's pod says whether it runs.
        let deployments = runner.owns_cached(cache::trim::<Deployment>, cache::applied_relevance);
        let services = runner.owns_cached(cache::trim::<Service>, cache::service_relevance);
        let pods = runner.watches_cached(
            runner.scoped_api::<Pod>(),
            watcher::Config::default().labels(names::GATEWAY_LABEL),
            cache::trim_pod,
            pod_relevance,
            |pod: &Pod| cached::by_label::<SensorGateway>(&pod.metadata, names::GATEWAY_LABEL),
        );
        // A claim appearing or being bound tells what the data's storage is.
        let claims = runner.watches_referenced(
            cache::trim::<PersistentVolumeClaim>,
            cache::claim_relevance,
            |sg: &SensorGateway, claim| node_loss::data_claim(sg).is_some_and(|c| c == claim),
        );
        // A radio's stick pulled out or plugged in elsewhere: its gateways'
        // Ready says so.
        let pins = runner.watches_referenced(cache::trim::<UsbDevicePin>, pin_relevance, uses_pin);
        let nodes = runner.watches_nodes(concerned);
        Self {
            deployments,
            services,
            claims,
            volumes: runner.cache_all(),
            classes: runner.cache_all(),
            drivers: runner.cache_all(),
            attachments: runner.cache_all(),
            pods,
            nodes,
            pins,
            leases,
        }
    }

    /// What `sg` depends on, as the caches hold it now.
    #[must_use]
    pub fn observe(&self, sg: &SensorGateway) -> Cluster {
        let name = sg.name_any();
        let ns = sg.namespace().unwrap_or_default();
        let claim = node_loss::data_claim(sg).and_then(|c| cached::copy_of(&self.claims, &ns, &c));
        let volume = claim
            .as_ref()
            .and_then(|c| c.spec.as_ref())
            .and_then(|s| s.volume_name.as_deref())
            .filter(|v| !v.is_empty())
            .and_then(|v| self.volumes.get(&ObjectRef::new(v)))
            .map(|v| (*v).clone());
        Cluster {
            deployment: cached::copy_of(&self.deployments, &ns, &name),
            service: cached::copy_of(&self.services, &ns, &name),
            claim,
            volume,
            classes: cached::copies(&self.classes),
            drivers: cached::copies(&self.drivers),
            attachments: cached::copies(&self.attachments),
            pods: cached::labelled(&self.pods, &ns, &names::selector_labels(&name)),
            nodes: cached::copies(&self.nodes),
        }
    }
}

/// What of its pod a gateway reads: that it exists, where it runs, whether it
/// ended, since when it is Ready (liveness restarts only a Ready pod), and
/// whether it is going away.
fn pod_relevance(pod: &Pod) -> Option<u64> {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.as_str(), c.last_transition_time.as_ref()));
    Some(hash_of(&(
        pod.spec.as_ref().and_then(|s| s.node_name.as_ref()),
        status.and_then(|s| s.phase.as_ref()),
        ready,
        &pod.metadata.deletion_timestamp,
    )))
}

/// What of a pin its gateways read: its spec (how the device reaches the
/// container), the stable path of the device, and whether a node has it.
fn pin_relevance(pin: &UsbDevicePin) -> Option<u64> {
    let status = pin.status.as_ref();
    let present = status
        .and_then(|s| s.condition(types::DEVICE_PRESENT))
        .map(|c| (c.status.as_str(), c.message.as_str()));
    Some(hash_of(&(
        &pin.spec,
        status.and_then(|s| s.by_id_path.as_ref()),
        present,
        &pin.metadata.deletion_timestamp,
    )))
}

/// Whether `pin` is `sg`'s radio.
fn uses_pin(sg: &SensorGateway, pin: &str) -> bool {
    sg.spec
        .radio
        .as_ref()
        .and_then(|r| r.usb_device_pin.as_ref())
        .is_some_and(|r| r.name == pin)
}

/// The gateways a change of `node` (its taints, conditions, labels) may
/// concern: those running there, those that last failed over from it, and
/// those whose failover waits on some node (a fence, a candidate that is Ready).
pub fn concerned(store: &Store<SensorGateway>, node: &str) -> Vec<ObjectRef<SensorGateway>> {
    store
        .state()
        .into_iter()
        .filter(|sg| {
            sg.status.as_ref().is_some_and(|s| {
                s.node.as_deref() == Some(node)
                    || s.last_failover
                        .as_ref()
                        .is_some_and(|r| r.from_node.as_deref() == Some(node))
                    || s.condition(types::FAILOVER_READY)
                        .is_some_and(|c| c.status != "True")
            })
        })
        .map(|sg| ObjectRef::from_obj(&*sg))
        .collect()
}
