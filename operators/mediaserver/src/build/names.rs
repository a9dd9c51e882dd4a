//! Names and labels of what a MediaServer owns, in one place so the reader,
//! the builders and the watches agree.

use std::collections::BTreeMap;

use homelab_api::MediaServer;
use kube::ResourceExt;

/// Label on everything a MediaServer owns, with its name as value: the
/// Deployment's selector, and how a pod finds its way back to its server.
pub const SERVER_LABEL: &str = "homelab.home.arpa/mediaserver";
/// Annotation on a claim the user asked to keep (`keepOnDelete`): it has no
/// owner reference, so deleting the MediaServer leaves it and its data.
pub const KEEP_ANNOTATION: &str = "homelab.home.arpa/keep-on-delete";
/// Longest label value, and longest Service name.
const MAX_LABEL: usize = 63;

/// The config claim the operator creates.
#[must_use]
pub fn config_claim(server: &str) -> String {
    format!("{server}-config")
}

/// The cache claim the operator creates.
#[must_use]
pub fn cache_claim(server: &str) -> String {
    format!("{server}-cache")
}

/// Every claim the server mounts: the ones it references and the ones the
/// operator creates for it.
#[must_use]
pub fn claims_of(ms: &MediaServer) -> Vec<String> {
    let name = ms.name_any();
    let spec = &ms.spec;
    let mut claims = Vec::new();
    if let Some(existing) = &spec.config.existing_claim {
        claims.push(existing.clone());
    }
    if spec.config.volume_claim.is_some() {
        claims.push(config_claim(&name));
    }
    if spec.cache.is_some() {
        claims.push(cache_claim(&name));
    }
    claims.extend(spec.media.iter().filter_map(|m| m.existing_claim.clone()));
    claims.sort();
    claims.dedup();
    claims
}

/// The label selector of the server's pods, when its name can be a label
/// value at all (validation refuses the others).
#[must_use]
pub fn selector(server: &str) -> Option<String> {
    (server.len() <= MAX_LABEL).then(|| format!("{SERVER_LABEL}={server}"))
}

/// Whether `name` can name a Service (an RFC 1035 label).
#[must_use]
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LABEL
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && !name.ends_with('-')
}

/// Labels of every owned object; the first is the selector.
#[must_use]
pub fn labels(server: &str, app: &str, manager: &str) -> BTreeMap<String, String> {
    [
        (SERVER_LABEL, server),
        ("app.kubernetes.io/name", app),
        ("app.kubernetes.io/instance", server),
        ("app.kubernetes.io/component", "media-server"),
        ("app.kubernetes.io/managed-by", manager),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The selector labels alone.
#[must_use]
pub fn selector_labels(server: &str) -> BTreeMap<String, String> {
    [(SERVER_LABEL.to_owned(), server.to_owned())].into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_dns_labels() {
        assert!(is_dns_label("jellyfin"));
        assert!(is_dns_label("media-2"));
        assert!(!is_dns_label("2media"));
        assert!(!is_dns_label("media.home"));
        assert!(!is_dns_label("media-"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert_eq!(selector(&"a".repeat(64)), None);
    }
}
