//! Test objects.

use homelab_api::SensorGateway;
use serde_json::{Value, json};

/// A SensorGateway `name` in namespace `home` with `spec` (the broker URL is
/// filled in when missing), as if stored: uid and generation set.
pub fn gateway(name: &str, mut spec: Value) -> SensorGateway {
    if spec.get("mqtt").is_none() {
        spec["mqtt"] = json!({"url": "mqtt://mosquitto.home.svc:1883"});
    }
    serde_json::from_value(json!({
        "apiVersion": "homelab.home.arpa/v1alpha1",
        "kind": "SensorGateway",
        "metadata": {"name": name, "namespace": "home", "uid": "u-1", "generation": 3},
        "spec": spec,
    }))
    .unwrap()
}
