//! Observe: everything a reconcile reads, once, up front, so that what follows
//! it ([`crate::decide`]) is a pure function of the gateway and this.
//!
//! The cluster comes from the runner's caches ([`crate::caches`]); the Secrets
//! the spec names are the one read that leaves the process (GET by name: the
//! controller may not list or watch Secrets); the wall clock is read here and
//! nowhere else in the reconcile.

use homelab_api::SensorGateway;
use k8s_openapi::jiff::Timestamp;
use kube::Client;

use crate::caches::{Caches, Cluster};
use crate::error::Error;
use crate::references::{self, Referenced};

/// What the world looked like when the reconcile started.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Now (to the second, as conditions carry it).
    pub now: Timestamp,
    /// What the caches hold of the gateway's objects, pods, nodes and storage.
    pub cluster: Cluster,
    /// What its spec's references point at.
    pub references: Referenced,
}

/// Reads what `sg` depends on: the caches, the Secrets it names, and the clock.
///
/// # Errors
/// [`Error::Read`] when a Secret's GET fails.
pub async fn observe(
    sg: &SensorGateway,
    caches: &Caches,
    client: &Client,
) -> Result<Observed, Error> {
    let references = references::read(client, sg, &caches.pins).await?;
    Ok(Observed {
        now: homelab_api::conditions::now(),
        cluster: caches.observe(sg),
        references,
    })
}
