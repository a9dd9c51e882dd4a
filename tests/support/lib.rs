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
pub mod mosquitto;
pub mod mqtt;
mod namespace;
pub mod storage;
pub mod tools;
mod wait;

pub use cluster::{Cluster, client, client_as, client_as_pod};
pub use crds::{install_crds, read_crds};
pub use error::Error;
pub use events::{events_about, wait_for_event_reasons};
pub use namespace::TestNamespace;
pub use wait::{wait_for, wait_for_list, wait_settled, wait_until};

/// The workspace root, for finding `e2e/`, `crds/` and `deploy/`.
pub fn workspace_root() -> std::path::PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}
