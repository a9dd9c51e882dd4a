//! The desired objects, built from the spec, the plan and what the references
//! resolved to: pure functions, unit-tested on their output.

pub mod claim;
pub mod deployment;
pub mod env;
pub mod names;
pub mod service;
pub mod zwave;

use homelab_api::{SensorGateway, UsbDevicePin};
use homelab_kit::FieldManager;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};

use crate::validate::Plan;

/// Inputs beyond the spec that shape the objects.
#[derive(Clone, Copy, Debug, Default)]
pub struct Inputs<'a> {
    /// The radio's pin, resolved.
    pub pin: Option<&'a UsbDevicePin>,
    /// A node the gateway kept failing on, to keep it off.
    pub avoid_node: Option<&'a str>,
}

/// Everything a running gateway consists of.
#[derive(Clone, Debug)]
pub struct Desired {
    /// The data claim the operator creates, if the spec asks for one.
    pub claim: Option<PersistentVolumeClaim>,
    /// The Service, when the gateway has a port.
    pub service: Option<Service>,
    /// The gateway's Deployment.
    pub deployment: Deployment,
}

/// The objects `sg` should own.
///
/// # Errors
/// [`homelab_kit::Error::OwnerNotPersisted`] for an object without a uid.
pub fn desired(
    sg: &SensorGateway,
    plan: &Plan,
    inputs: Inputs<'_>,
    manager: &FieldManager,
) -> Result<Desired, homelab_kit::Error> {
    Ok(Desired {
        claim: claim::claim(sg, plan, manager)?,
        service: service::service(sg, plan, manager)?,
        deployment: deployment::deployment(sg, plan, inputs, manager)?,
    })
}
