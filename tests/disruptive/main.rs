//! Tests that disturb the shared cluster: a node loses power, the API server
//! restarts. They run one at a time (a lock) in a binary of their own, so the
//! integration tests never see the disturbance.

mod apiserver_restart;
mod node_failure;

use tokio::sync::{Mutex, MutexGuard};

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

async fn exclusive() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().await
}
