//! What a controller that runs a home's service as one Deployment (a media
//! server, a sensor gateway) shares across its reconciles, beside what is its
//! own.

use std::time::Duration;

use prometheus_client::registry::Registry;

use crate::Settings;
use crate::failover::FailoverMetrics;
use crate::settings::AllowedHostPaths;

/// How often a workload controller looks again, where its workloads may mount
/// host directories, and its failover metrics.
#[derive(Clone, Debug)]
pub struct WorkloadState {
    /// Failovers started, blocked and how long they took.
    pub failover: FailoverMetrics,
    /// How long to wait before looking again at a workload that is fine.
    pub resync: Duration,
    /// How long to wait before looking again at a refused spec (a change of
    /// the object, or of a node, wakes it sooner).
    pub retry_refused: Duration,
    /// Where workloads may mount host directories (the administrator's
    /// `HOMELAB_ALLOWED_HOST_PATHS`); none by default.
    pub allowed_host_paths: AllowedHostPaths,
}

impl WorkloadState {
    /// With the host paths the administrator allowed in `settings`, and the
    /// failover metrics registered in `registry`.
    #[must_use]
    pub fn new(
        settings: &Settings,
        registry: &mut Registry,
        resync: Duration,
        retry_refused: Duration,
    ) -> Self {
        let failover = FailoverMetrics::default();
        failover.register(registry);
        Self {
            failover,
            resync,
            retry_refused,
            allowed_host_paths: settings.allowed_host_paths.clone(),
        }
    }
}
