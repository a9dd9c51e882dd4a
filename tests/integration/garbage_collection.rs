//! The controller-manager's garbage collector removes what an owner owned: the
//! contract every operator here relies on for cleanup.

use std::time::Duration;

use homelab_test_support::{TestNamespace, client};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_children() {
    let client = client().await.unwrap();
    let ns = TestNamespace::new(&client, "gc").await.unwrap();
    let configmaps = ns.api::<ConfigMap>();
    let owner = configmaps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let child: ConfigMap = serde_json::from_value(json!({
        "metadata": {
            "name": "child",
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                "uid": owner.metadata.uid.clone().unwrap(),
                "controller": true, "blockOwnerDeletion": true
            }]
        }
    }))
    .unwrap();
    let child = configmaps
        .create(&PostParams::default(), &child)
        .await
        .unwrap();

    configmaps
        .delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    let uid = child.metadata.uid.unwrap();
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(configmaps.clone(), "child", conditions::is_deleted(&uid)),
    )
    .await
    .expect("the garbage collector did not delete the child within 60s")
    .unwrap();
}
