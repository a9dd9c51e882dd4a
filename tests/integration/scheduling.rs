//! The real scheduler honours what our operators will rely on: node architecture
//! and extended resources advertised by device plugins.

use std::time::Duration;

use homelab_test_support::lock::IGPU;
use homelab_test_support::{TestNamespace, client, wait_deleted, wait_for, wait_for_list};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;

const SCHEDULED: Duration = Duration::from_secs(60);

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn node_arch(nodes: &Api<Node>, name: &str) -> String {
    let node = nodes.get(name).await.unwrap();
    node.metadata.labels.unwrap_or_default()["kubernetes.io/arch"].clone()
}

#[tokio::test]
async fn deployment_requiring_amd64_runs_only_on_amd64_nodes() {
    let client = client().await.unwrap();
    let ns = TestNamespace::new(&client, "arch").await.unwrap();
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "amd64-only"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "amd64-only"}},
            "template": {
                "metadata": {"labels": {"app": "amd64-only"}},
                "spec": {
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                        ]}]
                    }}},
                    "containers": [{"name": "app", "image": "registry.invalid/amd64-only:1"}]
                }
            }
        }
    }))
    .unwrap();
    ns.api::<Deployment>()
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();

    let pods = wait_for_list(
        &ns.api::<Pod>(),
        &ListParams::default().labels("app=amd64-only"),
        SCHEDULED,
        |pods| pods.len() == 4 && pods.iter().all(pod_ready),
    )
    .await
    .unwrap();

    let nodes = Api::<Node>::all(client.clone());
    let mut used = std::collections::BTreeSet::new();
    for pod in &pods {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap();
        assert_eq!(node_arch(&nodes, &node).await, "amd64", "pod on {node}");
        used.insert(node);
    }
    // The control-plane node is amd64 too, but tainted: nothing lands there.
    assert!(
        !used.contains("cp-1"),
        "pods landed on the tainted control plane: {used:?}"
    );
}

/// One test for both pods: the cluster has exactly one i915 device, held by
/// this test (a lock shared with the other tests that ask for it) until its
/// pods are gone.
#[tokio::test]
async fn gpu_pod_lands_on_the_igpu_node_and_a_second_one_waits() {
    let _igpu = IGPU.take().await;
    let client = client().await.unwrap();
    let ns = TestNamespace::new(&client, "igpu").await.unwrap();
    let pods = ns.api::<Pod>();
    for name in ["first", "second"] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [{
                "name": "jellyfin", "image": "jellyfin/jellyfin:10.10.3",
                "resources": {"limits": {"gpu.intel.com/i915": "1"}}
            }]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        if name == "first" {
            let pod = wait_for(&pods, name, SCHEDULED, pod_ready).await.unwrap();
            let node = pod.spec.and_then(|s| s.node_name).unwrap();
            assert_eq!(node, "n100-1");
            let labels = Api::<Node>::all(client.clone())
                .get(&node)
                .await
                .unwrap()
                .metadata
                .labels
                .unwrap();
            assert_eq!(labels["intel.feature.node.kubernetes.io/gpu"], "true");
        }
    }
    // The scheduler says why in the PodScheduled condition: no node has a free GPU.
    let second = wait_for(&pods, "second", SCHEDULED, |pod| {
        pod.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("Unschedulable")
                })
            })
    })
    .await
    .unwrap();
    let conditions = second.status.and_then(|s| s.conditions).unwrap_or_default();
    let scheduled = conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    let message = scheduled.message.clone().unwrap_or_default();
    assert!(message.contains("gpu.intel.com/i915"), "{message}");

    // Give the iGPU back before the next test takes it.
    for name in ["first", "second"] {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
        wait_deleted(&pods, name, SCHEDULED).await.unwrap();
    }
}
