//! The Service in front of the server.

use homelab_api::MediaServer;
use homelab_kit::FieldManager;
use homelab_kit::apply::owned_metadata;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::names;
use crate::validate::Plan;

/// Name of the container port the Service targets.
pub const PORT_NAME: &str = "http";

/// The Service: the spec's type, the plan's port, to the pod's named port.
///
/// # Errors
/// [`homelab_kit::Error::OwnerNotPersisted`].
pub fn service(
    ms: &MediaServer,
    plan: &Plan,
    manager: &FieldManager,
) -> Result<Service, homelab_kit::Error> {
    let name = ms.name_any();
    let mut metadata = owned_metadata(ms, &name, manager)?;
    metadata.labels = Some(names::labels(&name, plan.preset.app, manager.name()));
    Ok(Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(ms.spec.service.type_.as_str().to_owned()),
            selector: Some(names::selector_labels(&name)),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.to_owned()),
                port: plan.service_port,
                target_port: Some(IntOrString::String(PORT_NAME.to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// The in-cluster URL of the server behind `service`.
#[must_use]
pub fn url(service: &str, namespace: &str, port: i32) -> String {
    format!("http://{service}.{namespace}.svc:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{homelab, media_server};
    use crate::observed::Observed;
    use crate::validate::validate;
    use serde_json::json;

    #[test]
    fn load_balancer_on_request_with_its_own_port() {
        let ms = media_server(json!({
            "preset": "Jellyfin",
            "config": {"nfs": {"server": "nas", "path": "/c"}},
            "service": {"type": "LoadBalancer", "port": 80},
        }));
        let observed = Observed {
            nodes: homelab(),
            ..Observed::default()
        };
        let plan = validate(&ms, &observed, &crate::fixtures::allowed()).unwrap();
        let svc = service(&ms, &plan, &FieldManager::new("mediaserver-controller")).unwrap();
        let spec = svc.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        let port = &spec.ports.unwrap()[0];
        assert_eq!(port.port, 80);
        assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
        assert_eq!(spec.selector.unwrap()[names::SERVER_LABEL], "jellyfin");
        assert_eq!(url("jellyfin", "media", 80), "http://jellyfin.media.svc:80");
    }
}
