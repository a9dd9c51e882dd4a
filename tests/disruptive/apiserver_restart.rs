//! The API server restarts (an upgrade, a crash): clients and watches reconnect.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use homelab_test_support::{Cluster, TestNamespace, client, poll_until};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

#[tokio::test]
async fn client_and_watch_reconnect_after_apiserver_restart() {
    let _exclusive = crate::exclusive().await;
    let client = client().await.unwrap();
    let ns = TestNamespace::new(&client, "apiserver-restart")
        .await
        .unwrap();
    let configmaps = ns.api::<ConfigMap>();
    let mut names = watcher(configmaps.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .map_ok(|cm| cm.metadata.name.unwrap_or_default())
        .boxed();

    let create = |name: &str| {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        let configmaps = configmaps.clone();
        async move { configmaps.create(&PostParams::default(), &cm).await }
    };
    create("before").await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(30), names.try_next()).await;
    assert_eq!(seen.unwrap().unwrap().as_deref(), Some("before"));

    let cluster = Cluster::default();
    tokio::task::spawn_blocking(move || cluster.restart_apiserver())
        .await
        .unwrap()
        .unwrap();

    // The same client works again; the API server may still be warming up its
    // caches for a moment, so retry the first request until a deadline.
    poll_until(
        "the client to reconnect",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            create("after").await.map(drop).map_err(|e| {
                eprintln!("retrying after restart: {e}");
                e
            })
        },
    )
    .await
    .unwrap();
    // The watch, which lost its connection, resumes and sees the new object.
    let resumed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match names.try_next().await {
                Ok(Some(name)) if name == "after" => return Ok(()),
                Ok(Some(_)) => continue,
                Ok(None) => return Err("watch stream ended".to_string()),
                Err(e) => eprintln!("watch error (the watcher retries): {e}"),
            }
        }
    })
    .await;
    assert_eq!(
        resumed,
        Ok(Ok(())),
        "watch did not resume after the restart"
    );
}
