//! Reading consumer pods: which pods ask for a pin's device, where they are, whether
//! they run.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// Whether a container of `pod` requests the extended resource `resource`.
pub fn requests(pod: &Pod, resource: &str) -> bool {
    pod.spec.as_ref().is_some_and(|spec| {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .filter_map(|c| c.resources.as_ref())
            .any(|r| {
                r.limits.as_ref().is_some_and(|l| l.contains_key(resource))
                    || r.requests
                        .as_ref()
                        .is_some_and(|l| l.contains_key(resource))
            })
    })
}

/// The pins of the pod's own namespace whose devices the pod requests. A request
/// for another namespace's device is not a consumer of it: the chart's admission
/// policy refuses such pods, and without it the pin still does not follow them.
pub fn requested_pins(pod: &Pod) -> Vec<String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut pins: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|spec| {
            spec.containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
        })
        .filter_map(|c| c.resources.as_ref())
        .flat_map(|r| {
            r.limits
                .iter()
                .chain(r.requests.iter())
                .flat_map(|m| m.keys())
        })
        .filter_map(|key| homelab_api::usbdevicepin::pin_of_resource(key))
        .filter(|(ns, _)| *ns == namespace)
        .map(|(_, pin)| pin.to_owned())
        .collect();
    pins.sort();
    pins.dedup();
    pins
}

/// The node the pod is bound to.
pub fn node(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

/// Whether the pod has finished (it holds nothing any more).
pub fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Whether the pod's phase is Running.
pub fn running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// When the pod's Ready condition last turned True, if it is Ready.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// When the kubelet started the pod.
pub fn started(pod: &Pod) -> Option<Timestamp> {
    pod.status.as_ref()?.start_time.as_ref().map(|t| t.0)
}

/// When deletion of the pod was asked for.
pub fn deleting_since(pod: &Pod) -> Option<Timestamp> {
    pod.metadata.deletion_timestamp.as_ref().map(|t| t.0)
}
