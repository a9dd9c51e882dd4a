//! What the integration tests in `tests/` and the scenarios in `e2e/` share: a
//! client for the local control plane (started on demand through `e2e/cluster`),
//! a fresh namespace per test that is deleted afterwards, the CRDs installed
//! once, and waiting for a condition with a deadline instead of sleeping.

pub mod bench;
mod cluster;
pub mod controller;
mod crds;
mod error;
mod events;
pub mod http;
pub mod lock;
pub mod mosquitto;
pub mod mqtt;
mod namespace;
pub mod objects;
pub mod pods;
pub mod sample;
pub mod status;
pub mod storage;
pub mod tools;
mod wait;

pub use cluster::{Cluster, client, client_as, client_as_pod};
pub use crds::{install_crds, read_crds};
pub use error::Error;
pub use events::{events_about, wait_for_event_reasons};
pub use namespace::{Namespaced, TestNamespace};
pub use objects::{Objects, TEST_MANAGER, apply, apply_object, create, nudge};
pub use status::{wait_condition, wait_reason, wait_status};
pub use wait::{
    holds_for, poll_until, wait_deleted, wait_exists, wait_for, wait_for_list, wait_for_showing,
    wait_settled, wait_settled_async, wait_until,
};

/// The workspace root, for finding `e2e/`, `crds/` and `deploy/`.
pub fn workspace_root() -> std::path::PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}
