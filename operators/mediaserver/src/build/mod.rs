//! Build: the objects a MediaServer should own, as pure functions of its
//! spec, its [`Plan`] and what was read. Nothing here talks to the API server.

pub mod claims;
pub mod deployment;
pub mod names;
pub mod service;

use homelab_api::MediaServer;
use homelab_kit::FieldManager;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};

use crate::observed::Observed;
use crate::validate::Plan;

/// Everything one MediaServer owns.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// Claims the operator creates (config and cache), in apply order.
    pub claims: Vec<PersistentVolumeClaim>,
    /// The Service in front of the server.
    pub service: Service,
    /// The server itself.
    pub deployment: Deployment,
}

/// The desired objects of `ms`.
///
/// # Errors
/// [`homelab_kit::Error::OwnerNotPersisted`] when `ms` was never stored.
pub fn desired(
    ms: &MediaServer,
    plan: &Plan,
    observed: &Observed,
    manager: &FieldManager,
) -> Result<Desired, homelab_kit::Error> {
    Ok(Desired {
        claims: claims::claims(ms, plan, observed, manager)?,
        service: service::service(ms, plan, manager)?,
        deployment: deployment::deployment(ms, plan, manager)?,
    })
}
