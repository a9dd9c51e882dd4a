//! The Service in front of the gateway's web UI, when it has one.

use homelab_api::SensorGateway;
use homelab_kit::FieldManager;
use homelab_kit::apply::owned_metadata;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::names;
use crate::preset;
use crate::validate::Plan;

/// Name of the web UI port.
pub const PORT_NAME: &str = "http";

/// The Service of `sg`, or none for an external gateway or one without a port.
///
/// # Errors
/// [`homelab_kit::Error::OwnerNotPersisted`].
pub fn service(
    sg: &SensorGateway,
    plan: &Plan,
    manager: &FieldManager,
) -> Result<Option<Service>, homelab_kit::Error> {
    let Some(port) = preset::port(sg).filter(|_| !sg.spec.external) else {
        return Ok(None);
    };
    let name = sg.name_any();
    let mut metadata = owned_metadata(sg, &name, manager)?;
    metadata.labels = Some(names::labels(&name, plan.preset.app, manager.name()));
    let target = plan.preset.port.unwrap_or(port);
    Ok(Some(Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(sg.spec.service.type_.as_str().to_owned()),
            selector: Some(names::selector_labels(&name)),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.to_owned()),
                port,
                target_port: Some(IntOrString::Int(target)),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }))
}
