//! Apply: server-side apply of the desired objects, skipped when the object
//! already is what would be applied, so a steady state makes no write at all.
//!
//! "Already is" needs two things. The object must carry the hash of the last
//! desired object applied ([`HASH_ANNOTATION`]): that sees a field the
//! controller stopped setting, which comparing fields alone cannot. And every
//! desired field must still have its value (`homelab_kit::apply::is_applied`):
//! that sees someone else's edit of a field the controller owns.

use std::fmt::Debug;

use homelab_kit::FieldManager;
use homelab_kit::apply::is_applied;
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::metrics::Metrics;

/// Annotation holding the hash of the desired object last applied.
pub const HASH_ANNOTATION: &str = "homelab.home.arpa/desired-hash";

/// Applies `desired` unless `current` already is it; returns the object as
/// it now is and whether it wrote.
///
/// # Errors
/// As [`FieldManager::apply`].
pub async fn apply<C>(
    manager: &FieldManager,
    metrics: &Metrics,
    api: &Api<C>,
    current: Option<&C>,
    mut desired: C,
) -> Result<(C, bool), homelab_kit::Error>
where
    C: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let hash = fingerprint(&desired)?;
    desired
        .meta_mut()
        .annotations
        .get_or_insert_with(Default::default)
        .insert(HASH_ANNOTATION.to_owned(), hash);
    if let Some(current) = current
        && is_applied(&to_json(current)?, &to_json(&desired)?)
    {
        return Ok((current.clone(), false));
    }
    let stored = manager.apply(api, &desired).await?;
    metrics.wrote(C::kind(&()).as_ref());
    Ok((stored, true))
}

/// FNV-1a of the object's JSON: stable across releases and platforms, unlike
/// the standard library's hasher.
fn fingerprint<C: Serialize>(obj: &C) -> Result<String, homelab_kit::Error> {
    let bytes = serde_json::to_vec(obj).map_err(|source| homelab_kit::Error::Serialize {
        what: "desired object".to_owned(),
        source,
    })?;
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    Ok(format!("{hash:016x}"))
}

fn to_json<C: Serialize>(obj: &C) -> Result<serde_json::Value, homelab_kit::Error> {
    serde_json::to_value(obj).map_err(|source| homelab_kit::Error::Serialize {
        what: "object".to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn cm(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("x".into()),
                ..ObjectMeta::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn fingerprint_changes_when_a_field_goes_away() {
        let both = fingerprint(&cm(&[("a", "1"), ("b", "2")])).unwrap();
        let one = fingerprint(&cm(&[("a", "1")])).unwrap();
        assert_ne!(both, one);
        assert_eq!(one, fingerprint(&cm(&[("a", "1")])).unwrap());
        assert_eq!(one.len(), 16);
    }
}
