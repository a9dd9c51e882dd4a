//! Apply: the kit's hash-guarded server-side apply, with the write counted
//! for `/metrics` and the tests that assert a steady state writes nothing.

use homelab_kit::FieldManager;
use homelab_kit::kinds::Applied;
use kube::{Api, Resource};

use crate::metrics::Metrics;

/// Applies `desired` unless `current` already is it; returns the object as
/// it now is and whether it wrote.
///
/// # Errors
/// As [`FieldManager::apply`].
pub async fn apply<C: Applied>(
    manager: &FieldManager,
    metrics: &Metrics,
    api: &Api<C>,
    current: Option<&C>,
    desired: C,
) -> Result<(C, bool), homelab_kit::Error> {
    let applied = manager.apply_unless_current(api, current, desired).await?;
    Ok(counted(metrics, applied))
}

/// As [`apply`], for a `current` whose cache keeps no spec (see
/// [`FieldManager::apply_unless_generation_current`]).
///
/// # Errors
/// As [`FieldManager::apply`].
pub async fn apply_over_trimmed<C: Applied>(
    manager: &FieldManager,
    metrics: &Metrics,
    api: &Api<C>,
    current: Option<&C>,
    desired: C,
) -> Result<(C, bool), homelab_kit::Error> {
    let applied = manager
        .apply_unless_generation_current(api, current, desired)
        .await?;
    Ok(counted(metrics, applied))
}

/// Counts a write of `C`'s kind when the apply wrote.
fn counted<C: Resource<DynamicType = ()>>(
    metrics: &Metrics,
    (stored, wrote): (C, bool),
) -> (C, bool) {
    if wrote {
        metrics.wrote(C::kind(&()).as_ref());
    }
    (stored, wrote)
}
