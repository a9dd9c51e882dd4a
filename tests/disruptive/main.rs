//! Tests that disturb the shared cluster: a node loses power, the API server
//! restarts. They run one at a time (a lock) in a binary of their own, so the
//! integration tests never see the disturbance.

// A test that cannot get what it needs fails loudly; that is what unwrap is for here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod apiserver_restart;
mod failover;
mod sensorgateway_failover;
#[path = "../shared/usb.rs"]
mod usb;
mod usb_failover;

use homelab_test_support::lock::Exclusive;
use tokio::sync::MutexGuard;

static ONE_AT_A_TIME: Exclusive = Exclusive::new(
    "the cluster (another disruptive test)",
    std::time::Duration::from_secs(3600),
);

async fn exclusive() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.take().await
}
