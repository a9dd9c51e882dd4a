//! The kit's status writes against the real API server: a status computed from a
//! cached object that has changed since is not written over the newer one, and a
//! record of something just done can still be merged in.
//!
//! This is the race that lost a UsbDevicePin's `lastFailover` in CI: a pod event
//! ran a reconcile on a cached pin older than the controller's own last write,
//! and the status computed from it (without the record) overwrote it.

use homelab_api::{FailoverRecord, MediaServer, MediaServerStatus};
use homelab_kit::{FieldManager, StatusPatch, StatusWrite};
use homelab_test_support::TestNamespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use serde_json::json;

fn record(from: &str) -> FailoverRecord {
    serde_json::from_value(json!({
        "fromNode": from,
        "toNode": "n100-1",
        "time": "2026-11-22T08:00:00Z",
        "reason": "NodeUnreachable",
    }))
    .unwrap()
}

#[tokio::test]
async fn a_status_from_a_stale_read_never_overwrites_a_newer_one() {
    let ns = TestNamespace::with_crds("status-writes").await.unwrap();
    let api = ns.api::<MediaServer>();
    let server: MediaServer = serde_json::from_value(json!({
        "apiVersion": "homelab.home.arpa/v1alpha1",
        "kind": "MediaServer",
        "metadata": {"name": "music"},
        "spec": {"preset": "Navidrome", "config": {"existingClaim": "music-config"}},
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &server).await.unwrap();
    let manager = FieldManager::new("status-writes-test");

    // A first reconcile records a failover: written.
    let with_record = MediaServerStatus {
        node: Some("n100-1".into()),
        last_failover: Some(record("pi4-2")),
        ..MediaServerStatus::default()
    };
    let write = manager
        .apply_status(&api, &created, None, &with_record, StatusPatch::Apply)
        .await
        .unwrap();
    assert_eq!(write, StatusWrite::Written);

    // A second reconcile still holds the object as created (the cache had not
    // seen the first write): what it computed lacks the record. Refused.
    let from_stale = MediaServerStatus {
        node: Some("n100-1".into()),
        ..MediaServerStatus::default()
    };
    let write = manager
        .apply_status(&api, &created, None, &from_stale, StatusPatch::Apply)
        .await
        .unwrap();
    assert_eq!(write, StatusWrite::Stale);
    let stored = api.get("music").await.unwrap().status.unwrap();
    assert_eq!(
        stored.last_failover,
        Some(record("pi4-2")),
        "the record survived"
    );

    // The same through a merge patch.
    let write = manager
        .apply_status(&api, &created, None, &from_stale, StatusPatch::Merge)
        .await
        .unwrap();
    assert_eq!(write, StatusWrite::Stale);

    // What the stale reconcile itself did is merged in, onto the newer status.
    let mut later = record("celeron-1");
    later.time = Time(jiff::Timestamp::from_second(1_795_000_000).unwrap());
    let records = MediaServerStatus {
        last_failover: Some(later.clone()),
        ..MediaServerStatus::default()
    };
    manager
        .record_in_status(&api, &created, &records)
        .await
        .unwrap();
    let stored = api.get("music").await.unwrap();
    let status = stored.status.clone().unwrap();
    assert_eq!(status.last_failover.as_ref(), Some(&later));
    assert_eq!(status.node.as_deref(), Some("n100-1"), "the rest is kept");

    // From the current version, the same write goes through.
    let write = manager
        .apply_status(&api, &stored, None, &from_stale, StatusPatch::Apply)
        .await
        .unwrap();
    assert_eq!(write, StatusWrite::Written);
    let status = api.get("music").await.unwrap().status.unwrap();
    assert_eq!(
        status.last_failover,
        Some(later),
        "a merged record is held by its own field manager and stays"
    );
}
