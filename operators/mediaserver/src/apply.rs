//! Apply: the kit's hash-guarded server-side apply, with the write counted
//! for `/metrics` and the tests that assert a steady state writes nothing.

use homelab_kit::kinds::Applied;
use homelab_kit::{FieldManager, Kept};
use kube::Api;

use crate::metrics::Metrics;

/// Applies `desired` unless `current`, read from a cache that keeps `kept`
/// of it, already is it; returns the object as it now is and whether it
/// wrote.
///
/// # Errors
/// As [`FieldManager::apply`].
pub async fn apply<C: Applied>(
    manager: &FieldManager,
    metrics: &Metrics,
    api: &Api<C>,
    current: Option<&C>,
    kept: Kept,
    desired: C,
) -> Result<(C, bool), homelab_kit::Error> {
    let (stored, wrote) = manager
        .apply_unless_current(api, current, kept, desired)
        .await?;
    if wrote {
        metrics.wrote(C::kind(&()).as_ref());
    }
    Ok((stored, wrote))
}
