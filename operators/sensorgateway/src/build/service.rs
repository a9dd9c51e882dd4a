//! The Service in front of the gateway's web UI, when it has one, and of the
//! other ports its preset serves (zwave-js-ui's Z-Wave JS websocket).

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
    let tcp = |name: &str, port: i32, target: i32| ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::Int(target)),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    };
    let ports = std::iter::once(tcp(PORT_NAME, port, target))
        .chain(plan.preset.extra_ports.iter().map(|(n, p)| tcp(n, *p, *p)))
        .collect();
    Ok(Some(Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(sg.spec.service.type_.as_str().to_owned()),
            selector: Some(names::selector_labels(&name)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::gateway;
    use crate::validate::validate;
    use serde_json::json;

    fn ports(spec: serde_json::Value) -> Vec<(String, i32)> {
        let sg = gateway("attic", spec);
        let plan = validate(&sg).unwrap();
        let svc = service(&sg, &plan, &FieldManager::new("sensorgateway-controller"))
            .unwrap()
            .unwrap();
        svc.spec
            .unwrap()
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap_or_default(), p.port))
            .collect()
    }

    #[test]
    fn zwave_js_ui_serves_its_ui_and_the_websocket_home_assistant_uses() {
        assert_eq!(
            ports(json!({"preset": "ZWaveJSUI"})),
            [("http".to_owned(), 8091), ("zwave-ws".to_owned(), 3000)]
        );
        assert_eq!(
            ports(json!({"preset": "Zigbee2MQTT"})),
            [("http".to_owned(), 8080)]
        );
    }
}
