//! A node stops heartbeating: the real node-lifecycle controller marks it
//! unreachable and taints it, the taint manager evicts a pod that tolerates
//! that for only a few seconds, and its Deployment's replacement runs elsewhere.

use std::time::Duration;

use homelab_test_support::pods::{ready_on as running_on, taint_keys};
use homelab_test_support::{Cluster, TestNamespace, client, create, wait_for, wait_for_list};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::ListParams;

use crate::failover::RecoverOnDrop;
use serde_json::json;

fn node_unreachable(node: &Node) -> bool {
    taint_keys(node)
        .iter()
        .any(|t| t == "node.kubernetes.io/unreachable")
}

#[tokio::test]
async fn pod_tolerating_unreachable_briefly_is_evicted_and_replaced_elsewhere() {
    let _exclusive = crate::exclusive().await;
    let client = client().await.unwrap();
    let ns = TestNamespace::new(&client, "node-loss").await.unwrap();
    // Two Raspberry Pis are eligible; the pod starts on one and must move to the other.
    let deployment = json!({
        "metadata": {"name": "mqtt-bridge"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "mqtt-bridge"}},
            "template": {
                "metadata": {"labels": {"app": "mqtt-bridge"}},
                "spec": {
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["pi4-2", "pi4-3"]}
                        ]}]
                    }}},
                    "tolerations": [
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2},
                        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}
                    ],
                    "containers": [{"name": "bridge", "image": "registry.invalid/bridge:1"}]
                }
            }
        }
    });
    create(&ns.api::<Deployment>(), deployment).await.unwrap();
    let pods = ns.api::<Pod>();
    let selector = ListParams::default().labels("app=mqtt-bridge");
    let first = wait_for_list(&pods, &selector, Duration::from_secs(60), |pods| {
        pods.iter().filter_map(running_on).count() == 1
    })
    .await
    .unwrap();
    let failed_node: &'static str = match first.iter().find_map(running_on) {
        Some("pi4-2") => "pi4-2",
        Some("pi4-3") => "pi4-3",
        other => panic!("pod scheduled outside its affinity: {other:?}"),
    };

    let cluster = Cluster::default();
    let _recover = RecoverOnDrop(failed_node);
    cluster.node_fail(failed_node).unwrap();

    // Detection takes the controller-manager's node-monitor grace period
    // (50 s by default; e2e/cluster lets scenarios shorten it).
    let nodes = Api::<Node>::all(client.clone());
    wait_for(
        &nodes,
        failed_node,
        Duration::from_secs(180),
        node_unreachable,
    )
    .await
    .unwrap();
    let moved = wait_for_list(&pods, &selector, Duration::from_secs(60), |pods| {
        pods.iter()
            .filter_map(running_on)
            .any(|node| node != failed_node)
    })
    .await
    .unwrap();
    let now_on: Vec<_> = moved.iter().filter_map(running_on).collect();
    assert!(
        !now_on.contains(&failed_node),
        "still running on the dead node: {now_on:?}"
    );

    // As with a real dead kubelet, nobody confirms the evicted pod's end: it stays
    // Terminating on the lost node. This is what the operators' failover must handle.
    let original = first
        .iter()
        .find(|pod| running_on(pod).is_some())
        .and_then(|pod| pod.metadata.name.clone())
        .unwrap();
    let stuck = pods.get(&original).await.unwrap();
    assert!(
        stuck.metadata.deletion_timestamp.is_some(),
        "the evicted pod should be Terminating, not gone or running"
    );
}
