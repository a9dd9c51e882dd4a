//! On real kubelet nodes (e2e/cluster's cp-1, real-1 and real-2: kubelet,
//! containerd, runc, kube-proxy), the chart installed from the project's own
//! image as a user installs it, and what only a real node can prove: a USB device
//! reaching an unprivileged container, the backup runner pod backing up the
//! cluster's etcd, a controller outliving its own node, a controller killed in
//! the middle of a burst. One at a time (they share the real nodes, and one of
//! them powers a node off), in a binary of their own. `make demo` itself is one
//! of them.

// A test that cannot get what it needs fails loudly; that is what unwrap is for here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backup;
mod burst;
mod demo;
mod distributions;
mod home;
#[path = "../integration/etcdbackup/peers.rs"]
#[allow(dead_code)]
mod peers;
mod stick;
mod takeover;
mod trust;
#[path = "../shared/usb.rs"]
mod usb;

use std::time::Duration;

use homelab_test_support::lock::Exclusive;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::sync::MutexGuard;

static ONE_AT_A_TIME: Exclusive = Exclusive::new(
    "the real nodes (another realnodes test)",
    std::time::Duration::from_secs(3600),
);

async fn exclusive() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.take().await
}

/// The Lease's holder, once there is one.
async fn wait_for_holder(leases: &Api<Lease>, name: &str) -> String {
    let lease =
        homelab_test_support::wait_for(leases, name, Duration::from_secs(120), |l: &Lease| {
            holder(l).is_some()
        })
        .await
        .unwrap();
    holder(&lease).unwrap()
}

fn holder(lease: &Lease) -> Option<String> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .filter(|h| !h.is_empty())
}
