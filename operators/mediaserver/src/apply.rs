//! Apply: the kit's hash-guarded server-side apply, with the write counted
//! for `/metrics` and the tests that assert a steady state writes nothing.

use std::fmt::Debug;

use homelab_kit::FieldManager;
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::metrics::Metrics;

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
    desired: C,
) -> Result<(C, bool), homelab_kit::Error>
where
    C: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let (stored, wrote) = manager.apply_unless_current(api, current, desired).await?;
    if wrote {
        metrics.wrote(C::kind(&()).as_ref());
    }
    Ok((stored, wrote))
}

/// As [`apply`], for a `current` whose cache keeps no spec (see
/// [`FieldManager::apply_unless_generation_current`]).
///
/// # Errors
/// As [`FieldManager::apply`].
pub async fn apply_over_trimmed<C>(
    manager: &FieldManager,
    metrics: &Metrics,
    api: &Api<C>,
    current: Option<&C>,
    desired: C,
) -> Result<(C, bool), homelab_kit::Error>
where
    C: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let (stored, wrote) = manager
        .apply_unless_generation_current(api, current, desired)
        .await?;
    if wrote {
        metrics.wrote(C::kind(&()).as_ref());
    }
    Ok((stored, wrote))
}
