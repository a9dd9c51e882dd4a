//! The caches a reconcile reads instead of the API server, each filled by one of the
//! runner's watches (or the kit's heartbeat watch), and which pins a change of a
//! watched object, or a node falling silent, concerns.
//!
//! Only writes leave the process on a reconcile's path: the node labels, the lost-node
//! marks (whose kit functions read the node fresh before patching its taints, and only
//! when there is something to change), pod deletions, the status and the Events.

use std::collections::{BTreeMap, BTreeSet};

use homelab_api::UsbDevicePin;
use homelab_kit::Runner;
use homelab_kit::cache::{self, hash_of};
use homelab_kit::cached;
use homelab_kit::failover::fence::SILENT_TAINT;
use homelab_kit::failover::observe::{FENCED_BY_ANNOTATION, NODE_LEASE_NAMESPACE};
use homelab_kit::failover::{NodeView, observe_node};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, PodStatus, ResourceRequirements};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use crate::consumers;

/// Every cache a reconcile reads (the pins themselves are the runner's own store).
#[derive(Clone)]
pub struct Caches {
    /// Every node, trimmed: heartbeat fallback (`Ready`), the lost-node marks, the
    /// pins' labels.
    pub nodes: Store<Node>,
    /// Pods in the watched namespaces, trimmed to what makes them consumers.
    pub pods: Store<Pod>,
    /// The kubelets' heartbeat Leases (the kit's heartbeat watch).
    pub leases: Store<Lease>,
}

homelab_kit::debug_by_name!(Caches);

impl Caches {
    /// Adds the watches to `runner`: pods (in `namespace`, or every namespace),
    /// waking the pins they consume; nodes, waking the pins that depend on them when
    /// their readiness, our lost-node mark or their existence changes. `controller`
    /// is the name the lost-node marks carry.
    pub fn watch(
        runner: &mut Runner<UsbDevicePin>,
        client: &Client,
        namespace: Option<&str>,
        controller: &str,
        leases: Store<Lease>,
    ) -> Self {
        let pods_api: Api<Pod> = match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let pods = runner.watches_cached(
            pods_api,
            watcher::Config::default(),
            trim_pod,
            pod_relevance,
            |pod: &Pod| {
                let namespace = pod.namespace().unwrap_or_default();
                consumers::requested_pins(pod)
                    .into_iter()
                    .map(move |pin| ObjectRef::new(&pin).within(&namespace))
                    .collect::<Vec<_>>()
            },
        );
        let pins = runner.store();
        let by_node = pods.clone();
        let controller = controller.to_owned();
        let nodes = runner.watches_cached(
            Api::all(client.clone()),
            watcher::Config::default(),
            cache::trim_node,
            node_relevance,
            move |node: &Node| {
                let fenced = fenced_by(node, &controller);
                concerned(&pins, &by_node, &node.name_any(), fenced)
            },
        );
        Self {
            nodes,
            pods,
            leases,
        }
    }

    /// The pods of `namespace`, as cached.
    #[must_use]
    pub fn pods_in(&self, namespace: &str) -> Vec<Pod> {
        cached::labelled(&self.pods, namespace, &BTreeMap::new())
    }

    /// What is known of the nodes that matter to `pin`: those reporting its device,
    /// those running its consumers among `pods`, and those `controller` marked lost
    /// (to unmark them once they heartbeat again). Read from the caches, with the
    /// Leases judged against `now`.
    #[must_use]
    pub fn observe(
        &self,
        pin: &UsbDevicePin,
        pods: &[Pod],
        controller: &str,
        now: Timestamp,
    ) -> Vec<NodeView> {
        let resource = pin.resource_name();
        let mut names: BTreeSet<String> = pin
            .status
            .iter()
            .flat_map(|s| s.presence.iter().map(|p| p.node.clone()))
            .chain(
                pods.iter()
                    .filter(|p| consumers::requests(p, &resource))
                    .filter_map(|p| consumers::node(p).map(str::to_owned)),
            )
            .collect();
        names.extend(
            self.nodes
                .state()
                .iter()
                .filter(|n| fenced_by(n, controller))
                .map(|n| n.name_any()),
        );
        names
            .into_iter()
            .map(|name| {
                let node = self.nodes.get(&ObjectRef::new(&name));
                let lease = self
                    .leases
                    .get(&ObjectRef::new(&name).within(NODE_LEASE_NAMESPACE));
                observe_node(&name, node.as_deref(), lease.as_deref(), now)
            })
            .collect()
    }

    /// The nodes that carry `label` (the pin's label, with our value), as cached.
    #[must_use]
    pub fn labelled(&self, label: &str) -> BTreeSet<String> {
        self.nodes
            .state()
            .iter()
            .filter(|n| n.labels().get(label).map(String::as_str) == Some(crate::labels::PRESENT))
            .map(|n| n.name_any())
            .collect()
    }

    /// Whether the cached `node` already carries a lost-node mark (our `NoSchedule`
    /// taint and the annotation): marking it again would change nothing.
    #[must_use]
    pub fn marked_lost(&self, node: &str) -> bool {
        self.nodes.get(&ObjectRef::new(node)).is_some_and(|n| {
            n.annotations().contains_key(FENCED_BY_ANNOTATION)
                && n.spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|t| {
                        t.iter()
                            .any(|t| t.key == SILENT_TAINT && t.effect == "NoSchedule")
                    })
        })
    }

    /// The pins a change of `node` (it fell silent, heartbeats again, changed
    /// readiness or went away) concerns; see [`concerned`].
    #[must_use]
    pub fn concerned(
        &self,
        pins: &Store<UsbDevicePin>,
        controller: &str,
        node: &str,
    ) -> Vec<ObjectRef<UsbDevicePin>> {
        let fenced = self
            .nodes
            .get(&ObjectRef::new(node))
            .is_some_and(|n| fenced_by(&n, controller));
        concerned(pins, &self.pods, node, fenced)
    }
}

/// Whether `controller` marked `node` lost.
fn fenced_by(node: &Node, controller: &str) -> bool {
    node.annotations()
        .get(FENCED_BY_ANNOTATION)
        .map(String::as_str)
        == Some(controller)
}

/// The nodes `pin` depends on by its status: where its device is reported, and where
/// it was.
pub fn nodes_of(pin: &UsbDevicePin) -> impl Iterator<Item = &str> {
    pin.status.iter().flat_map(|s| {
        s.presence
            .iter()
            .map(|p| p.node.as_str())
            .chain(s.current_node.as_deref())
    })
}

/// The pins a change of `node` concerns: those whose device is (or was) there, and
/// those with a consumer running there. When `fenced` (this controller marked the
/// node lost), every pin: any reconcile takes the mark off a node that is back.
#[must_use]
pub fn concerned(
    pins: &Store<UsbDevicePin>,
    pods: &Store<Pod>,
    node: &str,
    fenced: bool,
) -> Vec<ObjectRef<UsbDevicePin>> {
    let all = pins.state();
    if fenced {
        return all.iter().map(|p| ObjectRef::from_obj(&**p)).collect();
    }
    let mut wanted: BTreeSet<(String, String)> = all
        .iter()
        .filter(|p| nodes_of(p).any(|n| n == node))
        .map(|p| (p.namespace().unwrap_or_default(), p.name_any()))
        .collect();
    for pod in pods.state() {
        if consumers::node(&pod) != Some(node) {
            continue;
        }
        let namespace = pod.namespace().unwrap_or_default();
        wanted.extend(
            consumers::requested_pins(&pod)
                .into_iter()
                .map(|pin| (namespace.clone(), pin)),
        );
    }
    wanted
        .into_iter()
        .map(|(namespace, name)| ObjectRef::new(&name).within(&namespace))
        .collect()
}

/// A pod as this controller reads it: where it runs, its phase, Ready condition,
/// start and deletion, and of its containers only the device resources they ask for
/// (the extended resources of pins: what makes it a consumer). A pod that asks for
/// no device keeps no containers at all.
pub fn trim_pod(pod: &mut Pod) {
    cache::trim_metadata(&mut pod.metadata);
    let devices_only = |containers: Vec<Container>| -> Vec<Container> {
        containers
            .into_iter()
            .filter_map(|c| {
                let resources = c.resources?;
                let keep = |m: Option<std::collections::BTreeMap<String, _>>| {
                    m.map(|m| {
                        m.into_iter()
                            .filter(|(k, _)| {
                                homelab_api::usbdevicepin::pin_of_resource(k).is_some()
                            })
                            .collect::<std::collections::BTreeMap<_, _>>()
                    })
                    .filter(|m| !m.is_empty())
                };
                let resources = ResourceRequirements {
                    limits: keep(resources.limits),
                    requests: keep(resources.requests),
                    ..ResourceRequirements::default()
                };
                (resources.limits.is_some() || resources.requests.is_some()).then(|| Container {
                    name: c.name,
                    resources: Some(resources),
                    ..Container::default()
                })
            })
            .collect()
    };
    pod.spec = pod.spec.take().map(|spec| PodSpec {
        node_name: spec.node_name,
        containers: devices_only(spec.containers),
        init_containers: spec
            .init_containers
            .map(devices_only)
            .filter(|c| !c.is_empty()),
        ..PodSpec::default()
    });
    pod.status = pod.status.take().map(|status| PodStatus {
        phase: status.phase,
        start_time: status.start_time,
        conditions: status
            .conditions
            .map(|c| c.into_iter().filter(|c| c.type_ == "Ready").collect()),
        ..PodStatus::default()
    });
}

/// What of a pod the decision reads: where it runs, its phase, when it started,
/// whether (and since when) it is Ready, whether it is being deleted. A pod that asks
/// for no device, or is neither bound to a node nor going away, matters to no pin yet
/// (`None`: it wakes nothing).
fn pod_relevance(pod: &Pod) -> Option<u64> {
    let node = consumers::node(pod);
    let deleting = pod.metadata.deletion_timestamp.as_ref();
    if consumers::requested_pins(pod).is_empty() || (node.is_none() && deleting.is_none()) {
        return None;
    }
    let status = pod.status.as_ref();
    Some(hash_of(&(
        node,
        status.and_then(|s| s.phase.as_ref()),
        status.and_then(|s| s.start_time.as_ref()),
        consumers::ready_since(pod),
        deleting,
    )))
}

/// What of a node the decision reads besides its Lease: its `Ready` condition (the
/// fallback without a Lease), whose lost-node mark it carries, whether it is going.
/// Not the labels this controller puts on it: their echoes would wake the pin again.
fn node_relevance(node: &Node) -> Option<u64> {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    Some(hash_of(&(
        ready,
        node.annotations().get(FENCED_BY_ANNOTATION),
        &node.metadata.deletion_timestamp,
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use homelab_api::usbdevicepin::resource_name;
    use homelab_kit::cached::filled;
    use homelab_kit::failover::Reachability;
    use serde_json::json;

    fn consumer(name: &str, node: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "home", "uid": name,
                         "managedFields": [{"manager": "kubelet"}]},
            "spec": {"nodeName": node, "containers": [
                {"name": "app", "image": "zwave-js-ui",
                 "env": [{"name": "A", "value": "b"}],
                 "resources": {"limits": {"cpu": "1", resource_name("home", "zwave"): "1"}}},
                {"name": "sidecar", "image": "busybox", "resources": {"limits": {"cpu": "1"}}}
            ]},
            "status": {"phase": "Running", "startTime": "2026-12-04T10:00:00Z",
                       "podIP": "10.0.0.9",
                       "conditions": [
                           {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-04T10:00:05Z"},
                           {"type": "Initialized", "status": "True"}]},
        }))
        .unwrap()
    }

    fn pin(name: &str, presence: &[&str]) -> UsbDevicePin {
        let presence: Vec<_> = presence
            .iter()
            .map(|n| json!({"node": n, "byIdPath": "/dev/serial/by-id/usb-x"}))
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "homelab.home.arpa/v1alpha1", "kind": "UsbDevicePin",
            "metadata": {"name": name, "namespace": "home", "uid": name},
            "spec": {"vendorId": "0658", "productId": "0200"},
            "status": {"presence": presence},
        }))
        .unwrap()
    }

    fn node(name: &str, annotations: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": name, "annotations": annotations},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "images": [{"names": ["x"], "sizeBytes": 1}]},
        }))
        .unwrap()
    }

    fn lease(node: &str, renewed: &str) -> Lease {
        serde_json::from_value(json!({
            "metadata": {"name": node, "namespace": NODE_LEASE_NAMESPACE, "uid": node},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": renewed},
        }))
        .unwrap()
    }

    #[test]
    fn a_trimmed_pod_is_still_a_consumer_and_keeps_what_the_decision_reads() {
        let full = consumer("zwave-ui-abc", "pi4-1");
        let mut pod = full.clone();
        trim_pod(&mut pod);
        let resource = resource_name("home", "zwave");
        assert!(consumers::requests(&pod, &resource));
        assert_eq!(consumers::requested_pins(&pod), ["zwave"]);
        assert_eq!(consumers::node(&pod), Some("pi4-1"));
        assert!(consumers::running(&pod));
        assert_eq!(consumers::started(&pod), consumers::started(&full));
        assert_eq!(consumers::ready_since(&pod), consumers::ready_since(&full));
        assert_eq!(pod_relevance(&pod), pod_relevance(&full));
        let spec = pod.spec.as_ref().unwrap();
        // Only the container asking for the device, and only that resource.
        assert_eq!(spec.containers.len(), 1);
        assert!(spec.containers[0].image.is_none() && spec.containers[0].env.is_none());
        let limits = spec.containers[0]
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref();
        assert_eq!(limits.unwrap().keys().collect::<Vec<_>>(), [&resource]);
        assert!(pod.metadata.managed_fields.is_none());
        let status = pod.status.as_ref().unwrap();
        assert!(status.pod_ip.is_none());
        assert_eq!(status.conditions.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn a_pod_asking_for_no_device_keeps_no_containers() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "home"},
            "spec": {"nodeName": "pi4-1",
                     "containers": [{"name": "web", "resources": {"limits": {"cpu": "1"}}}]},
        }))
        .unwrap();
        assert_eq!(pod_relevance(&pod), None);
        trim_pod(&mut pod);
        assert!(pod.spec.unwrap().containers.is_empty());
        // A consumer not yet scheduled matters to nobody until it is.
        let mut pending = consumer("zwave-ui", "pi4-1");
        pending.spec.as_mut().unwrap().node_name = None;
        assert_eq!(pod_relevance(&pending), None);
        assert!(pod_relevance(&consumer("zwave-ui", "pi4-1")).is_some());
    }

    #[test]
    fn a_node_change_concerns_the_pins_there_and_those_of_its_consumers() {
        let (pins, _w) = filled(vec![
            pin("zwave", &["pi4-1"]),
            pin("zigbee", &["pi4-2"]),
            pin("rfxcom", &[]),
        ]);
        let mut moved = consumer("zigbee-ui", "pi4-1");
        moved.spec.as_mut().unwrap().containers[0]
            .resources
            .as_mut()
            .unwrap()
            .limits = Some(
            [(
                resource_name("home", "zigbee"),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
            )]
            .into(),
        );
        let (pods, _p) = filled(vec![moved]);
        let names = |refs: Vec<ObjectRef<UsbDevicePin>>| {
            refs.into_iter().map(|r| r.name).collect::<Vec<_>>()
        };
        assert_eq!(
            names(concerned(&pins, &pods, "pi4-1", false)),
            ["zigbee", "zwave"]
        );
        assert_eq!(names(concerned(&pins, &pods, "pi4-2", false)), ["zigbee"]);
        assert!(concerned(&pins, &pods, "pi4-3", false).is_empty());
        // A node we marked: every pin, so that the mark comes off once it is back.
        assert_eq!(concerned(&pins, &pods, "pi4-3", true).len(), 3);
    }

    #[test]
    fn nodes_and_leases_are_read_from_the_caches() {
        let controller = "usbdevicepin-controller";
        let (nodes, _n) = filled(vec![
            node("pi4-1", json!({})),
            node("pi4-2", json!({})),
            node("pi4-3", json!({FENCED_BY_ANNOTATION: controller})),
            node(
                "pi4-4",
                json!({FENCED_BY_ANNOTATION: "mediaserver-controller"}),
            ),
        ]);
        let (leases, _l) = filled(vec![
            lease("pi4-1", "2026-12-04T12:00:00Z"),
            lease("pi4-2", "2026-12-04T11:00:00Z"),
            lease("pi4-3", "2026-12-04T12:00:00Z"),
        ]);
        let (pods, _p) = filled(Vec::new());
        let caches = Caches {
            nodes,
            pods,
            leases,
        };
        let now: Timestamp = "2026-12-04T12:00:05Z".parse().unwrap();
        let views = caches.observe(
            &pin("zwave", &["pi4-1", "pi4-2", "gone-1"]),
            &[consumer("zwave-ui", "pi4-2")],
            controller,
            now,
        );
        let by = |name: &str| views.iter().find(|v| v.name == name).unwrap();
        assert_eq!(views.len(), 4, "{views:?}");
        assert_eq!(by("pi4-1").reachability, Reachability::Reachable);
        assert!(matches!(
            by("pi4-2").reachability,
            Reachability::Lost { .. }
        ));
        assert_eq!(by("gone-1").reachability, Reachability::Gone);
        // Our own mark is looked at (to take it off), another controller's is not.
        assert_eq!(by("pi4-3").fenced_by.as_deref(), Some(controller));
        assert!(views.iter().all(|v| v.name != "pi4-4"));
        assert_eq!(
            caches
                .concerned(
                    &filled(vec![pin("zwave", &["pi4-1"])]).0,
                    controller,
                    "pi4-3"
                )
                .len(),
            1
        );
    }

    #[test]
    fn labels_and_marks_are_read_from_the_node_cache() {
        let mut marked = node(
            "pi4-2",
            json!({FENCED_BY_ANNOTATION: "usbdevicepin-controller"}),
        );
        marked.spec = Some(
            serde_json::from_value(json!({"taints": [
            {"key": SILENT_TAINT, "effect": "NoSchedule"}]}))
            .unwrap(),
        );
        let mut labelled = node("pi4-1", json!({}));
        labelled.metadata.labels = Some(
            [(
                "devices.homelab.home.arpa/zwave".to_owned(),
                crate::labels::PRESENT.to_owned(),
            )]
            .into(),
        );
        let (nodes, _n) = filled(vec![labelled, marked, node("pi4-3", json!({}))]);
        let (pods, _p) = filled(Vec::new());
        let (leases, _l) = filled(Vec::new());
        let caches = Caches {
            nodes,
            pods,
            leases,
        };
        assert_eq!(
            caches
                .labelled("devices.homelab.home.arpa/zwave")
                .into_iter()
                .collect::<Vec<_>>(),
            ["pi4-1"]
        );
        assert!(caches.marked_lost("pi4-2"));
        assert!(!caches.marked_lost("pi4-3"));
        assert!(!caches.marked_lost("absent"));
    }

    #[test]
    fn a_node_s_heartbeat_times_and_images_wake_nothing() {
        let before = node("pi4-1", json!({}));
        let mut after = before.clone();
        after.status.as_mut().unwrap().images = None;
        after.metadata.labels = Some(
            [(
                "devices.homelab.home.arpa/zwave".to_owned(),
                "true".to_owned(),
            )]
            .into(),
        );
        assert_eq!(node_relevance(&before), node_relevance(&after));
        after.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "Unknown".into();
        assert_ne!(node_relevance(&before), node_relevance(&after));
    }
}
