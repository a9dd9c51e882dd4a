//! Trust boundaries, with the chart installed as a user installs it (its admission
//! policies on, `fencing.enabled` off) and asked under its own ServiceAccount
//! tokens and a family member's namespace "edit" rights: no kind is a way around
//! what those rights allow. Here, not among the integration tests, because the
//! policies are cluster-wide and these tests run one at a time.

use homelab_api::usbdevicepin::resource_name;
use homelab_test_support::{TestNamespace, apply, client_as};
use k8s_openapi::api::core::v1::{Node, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::home::RealHome;

const CONTROLLERS: [&str; 4] = [
    "mediaserver-controller",
    "sensorgateway-controller",
    "usbdevicepin-controller",
    "etcdbackup-controller",
];

/// The API server's refusal of `result`: its code and message.
fn refusal<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A ServiceAccount in `ns` with the built-in "edit" role there, as a family
/// member's namespace would have; a client with its token.
async fn edit_user(admin: &Client, ns: &TestNamespace) -> Client {
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "family"}})).unwrap();
    ns.api::<ServiceAccount>()
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "family-edit"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "family", "namespace": ns.name()}],
    }))
    .unwrap();
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    client_as(admin, ns.name(), "family").await.unwrap()
}

fn pod_requesting(resource: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "borrower"},
        "spec": {
            // Never scheduled: admission is what is asked here.
            "nodeSelector": {"e2e.homelab.home.arpa/nowhere": "true"},
            "containers": [{
                "name": "app",
                "image": crate::home::BUSYBOX,
                "resources": {"limits": {resource: "1"}},
            }],
        },
    }))
    .unwrap()
}

#[tokio::test]
async fn no_kind_is_a_way_around_the_clusters_security() {
    let _one = crate::exclusive().await;
    let home = RealHome::install("rn-trust", &[]).await;
    let admin = home.client.clone();
    let account = |component: &str| format!("{}-homelab-operators-{component}", home.release);

    // The chart's ServiceAccounts read no Secret outside the home: in kube-system
    // the answer is 403 before the name is even looked up.
    for component in CONTROLLERS {
        let client = client_as(&admin, home.operators.name(), &account(component))
            .await
            .unwrap();
        let (code, message) = refusal(
            Api::<Secret>::namespaced(client, "kube-system")
                .get("etcd-certs")
                .await,
        );
        assert_eq!(
            code, 403,
            "{component} may get secrets in kube-system: {message}"
        );
    }
    let agent = client_as(&admin, &home.agent_namespace, &account("node-agent"))
        .await
        .unwrap();
    let (code, _) = refusal(
        Api::<Secret>::namespaced(agent, "kube-system")
            .list(&ListParams::default())
            .await,
    );
    assert_eq!(code, 403, "the node agent may list secrets in kube-system");

    // An EtcdBackup in a namespace the administrator did not list: refused at
    // admission, naming the setting, so no CronJob and no runner pod exist.
    let other = TestNamespace::new(&admin, "rn-trust-other").await.unwrap();
    let backup = json!({
        "schedule": "@hourly",
        "source": {"distribution": "Kubeadm"},
        "destination": {"pvc": {"claimName": "loot"}},
    });
    let (code, message) =
        refusal(apply(&other.api::<homelab_api::EtcdBackup>(), "sneaky", backup).await);
    assert_eq!(code, 403, "{message}");
    assert!(message.contains("etcdBackup.namespaces"), "{message}");
    assert!(message.contains(other.name()), "{message}");
    let pods = other
        .api::<Pod>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(pods.items.is_empty(), "pods run in {}", other.name());

    // A family member with "edit" in their own namespace cannot borrow the home's
    // stick: the device resource carries the pin's namespace, and a pod may ask
    // only for its own namespace's.
    let family = edit_user(&admin, &other).await;
    let theirs = Api::<Pod>::namespaced(family.clone(), other.name());
    let (code, message) = refusal(
        theirs
            .create(
                &PostParams::default(),
                &pod_requesting(&resource_name(home.ns.name(), "zigbee")),
            )
            .await,
    );
    assert_eq!(code, 403, "{message}");
    assert!(message.contains("its own namespace"), "{message}");
    // Their own namespace's device is theirs to ask for.
    theirs
        .create(
            &PostParams::default(),
            &pod_requesting(&resource_name(other.name(), "zigbee")),
        )
        .await
        .unwrap();
    theirs
        .delete("borrower", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();

    // The operators mark nodes with their own taints only, and the out-of-service
    // fence not at all while the administrator has not enabled fencing: a
    // namespaced failover.fenceNode alone cannot take a node out of service.
    let nodes = Api::<Node>::all(admin.clone());
    let kwok = nodes
        .list(&ListParams::default().labels("type=kwok"))
        .await
        .unwrap();
    // One without taints: a taint patch replaces the whole list.
    let node = kwok
        .items
        .iter()
        .rev()
        .find(|n| {
            n.spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_none_or(Vec::is_empty)
        })
        .expect("a kwok node without taints")
        .name_any();
    let as_mediaserver = Api::<Node>::all(
        client_as(
            &admin,
            home.operators.name(),
            &account("mediaserver-controller"),
        )
        .await
        .unwrap(),
    );
    let params = PatchParams::default();
    let taint =
        |key: &str, effect: &str| json!({"spec": {"taints": [{"key": key, "effect": effect}]}});
    let (code, message) = refusal(
        as_mediaserver
            .patch(
                &node,
                &params,
                &Patch::Strategic(taint("node.kubernetes.io/out-of-service", "NoExecute")),
            )
            .await,
    );
    assert_eq!(code, 403, "{message}");
    assert!(message.contains("fencing.enabled"), "{message}");
    let (code, message) = refusal(
        as_mediaserver
            .patch(
                &node,
                &params,
                &Patch::Merge(json!({"metadata": {"labels": {"role": "db"}}})),
            )
            .await,
    );
    assert_eq!(code, 403, "{message}");
    let (code, message) = refusal(
        as_mediaserver
            .patch(
                &node,
                &params,
                &Patch::Merge(json!({"spec": {"unschedulable": true}})),
            )
            .await,
    );
    assert_eq!(code, 403, "{message}");
    // Its own mark is allowed, and taken off again.
    as_mediaserver
        .patch(
            &node,
            &params,
            &Patch::Strategic(taint("homelab.home.arpa/silent", "NoSchedule")),
        )
        .await
        .unwrap();
    let cleared = json!({"spec": {"taints": nodes.get(&node).await.unwrap().spec
        .and_then(|s| s.taints).unwrap_or_default()
        .into_iter().filter(|t| t.key != "homelab.home.arpa/silent").collect::<Vec<_>>()}});
    as_mediaserver
        .patch(&node, &params, &Patch::Merge(cleared))
        .await
        .unwrap();
}
