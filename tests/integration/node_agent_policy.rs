//! The chart's admission policy: a node agent writes only its own node's entry in
//! a UsbDevicePin's status.presence, checked against the node its pod's token is
//! bound to, by the real API server.

use std::time::Duration;

use homelab_api::UsbDevicePin;
use homelab_test_support::{
    TestNamespace, client, client_as, client_as_pod, install_crds, poll_until, wait_for,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::chart::{chart_dir, release};

fn presence(node: &str) -> Value {
    json!({
        "apiVersion": "homelab.home.arpa/v1alpha1",
        "kind": "UsbDevicePin",
        "metadata": {"name": "stick"},
        "status": {"presence": [{"node": node, "devNode": "/dev/ttyUSB0"}]},
    })
}

async fn report(
    as_client: &Client,
    home: &str,
    manager_node: &str,
    body: &Value,
) -> Result<(), String> {
    let api: Api<UsbDevicePin> = Api::namespaced(as_client.clone(), home);
    let params = PatchParams::apply(&format!("node-agent/{manager_node}")).force();
    api.patch_status("stick", &params, &Patch::Apply(body))
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_node_agent_may_write_only_its_own_nodes_entry() {
    let admin = client().await.unwrap();
    install_crds(&admin).await.unwrap();
    let (namespace, release) = release(&admin, "chart-agent").await;
    release.install(&chart_dir(), &["--set", "crds.install=false"]);
    let account = format!("{}-homelab-operators-node-agent", release.name);
    let home = TestNamespace::new(&admin, "agent-home").await.unwrap();
    let pin: UsbDevicePin = serde_json::from_value(json!({
        "apiVersion": "homelab.home.arpa/v1alpha1", "kind": "UsbDevicePin",
        "metadata": {"name": "stick"},
        "spec": {"vendorId": "10c4", "productId": "ea60", "containerPath": "/dev/zigbee"},
    }))
    .unwrap();
    home.api::<UsbDevicePin>()
        .create(&PostParams::default(), &pin)
        .await
        .unwrap();

    // The agent's pod on pi4-1, and a token bound to it.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "agent-pi4-1"},
        "spec": {"nodeName": "pi4-1", "serviceAccountName": account,
                 "containers": [{"name": "agent", "image": "ghcr.io/homelab-operators/homelab-operators:test"}]},
    }))
    .unwrap();
    let pods: Api<Pod> = namespace.api();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let ns = home.name();
    let pod = wait_for(&pods, "agent-pi4-1", Duration::from_secs(60), |p: &Pod| {
        p.uid().is_some()
    })
    .await
    .unwrap();
    let agent = client_as_pod(&admin, &account, &pod).await.unwrap();

    // An admission policy takes effect once the API server's informer has it:
    // wait for that with a write that is harmless either way (an unbound token
    // writing pi4-1's entry, which the agent on pi4-1 may write too).
    let unbound = client_as(&admin, namespace.name(), &account).await.unwrap();
    poll_until(
        "the admission policy to take effect",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            match report(&unbound, ns, "pi4-1", &presence("pi4-1")).await {
                Err(e) if e.contains("pod's token") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .unwrap();

    // Its own entry: allowed.
    report(&agent, ns, "pi4-1", &presence("pi4-1"))
        .await
        .unwrap();

    // Another node's entry: refused, saying why.
    let refused = report(&agent, ns, "pi4-2", &presence("pi4-2"))
        .await
        .unwrap_err();
    assert!(
        refused.contains("may write only its own entry"),
        "{refused}"
    );

    // Another node's existing entry cannot be taken away either.
    report(&admin, ns, "pi4-2", &presence("pi4-2"))
        .await
        .unwrap();
    let empty = json!({
        "apiVersion": "homelab.home.arpa/v1alpha1", "kind": "UsbDevicePin",
        "metadata": {"name": "stick"}, "status": {"presence": []},
    });
    let refused = report(&agent, ns, "pi4-2", &empty).await.unwrap_err();
    assert!(
        refused.contains("may write only its own entry"),
        "{refused}"
    );
    let stored = home.api::<UsbDevicePin>().get("stick").await.unwrap();
    let nodes: Vec<String> = stored
        .status
        .unwrap()
        .presence
        .into_iter()
        .map(|p| p.node)
        .collect();
    assert_eq!(nodes, ["pi4-1", "pi4-2"]);

    // A token not bound to a pod says no node: refused.
    let refused = report(&unbound, ns, "pi4-1", &presence("pi4-1"))
        .await
        .unwrap_err();
    assert!(refused.contains("pod's token"), "{refused}");
}
