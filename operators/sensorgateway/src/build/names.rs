//! Names and labels of what a gateway owns.

use std::collections::BTreeMap;

/// Label selecting a gateway's pods: its name.
pub const GATEWAY_LABEL: &str = "homelab.home.arpa/sensorgateway";

/// Name of the data claim the operator creates.
#[must_use]
pub fn data_claim(name: &str) -> String {
    format!("{name}-data")
}

/// The selector labels of gateway `name`'s pods.
#[must_use]
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    [(GATEWAY_LABEL.to_owned(), name.to_owned())].into()
}

/// All labels of what gateway `name` owns.
#[must_use]
pub fn labels(name: &str, app: &str, manager: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(name);
    labels.extend([
        ("app.kubernetes.io/name".to_owned(), app.to_owned()),
        ("app.kubernetes.io/instance".to_owned(), name.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            manager.to_owned(),
        ),
    ]);
    labels
}
