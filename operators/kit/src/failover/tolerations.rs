//! The NoExecute tolerations a workload's pods carry so that the taint manager
//! evicts them after the policy's `unreachableAfter`, not after Kubernetes'
//! default 300 s.

use homelab_api::failover::{FailoverMode, FailoverPolicy};
use k8s_openapi::api::core::v1::Toleration;

/// The taints the node-lifecycle controller puts on a node it stops hearing.
pub const NODE_LOST_TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];

/// Tolerations of the node-lost taints for the policy's `unreachableAfter`;
/// `None` with failover `Disabled` (Kubernetes' defaults then apply).
#[must_use]
pub fn tolerations(policy: &FailoverPolicy) -> Option<Vec<Toleration>> {
    if policy.mode == FailoverMode::Disabled {
        return None;
    }
    let seconds = policy.unreachable_after.to_std().ok()?.as_secs();
    let seconds = i64::try_from(seconds).ok()?;
    Some(
        NODE_LOST_TAINTS
            .into_iter()
            .map(|key| Toleration {
                key: Some(key.to_owned()),
                operator: Some("Exists".to_owned()),
                effect: Some("NoExecute".to_owned()),
                toleration_seconds: Some(seconds),
                value: None,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_tolerates_for_30s() {
        let t = tolerations(&FailoverPolicy::default()).unwrap();
        assert_eq!(t.len(), 2);
        assert!(t.iter().all(|t| t.toleration_seconds == Some(30)));
    }

    #[test]
    fn disabled_leaves_kubernetes_defaults() {
        let policy = FailoverPolicy {
            mode: FailoverMode::Disabled,
            ..FailoverPolicy::default()
        };
        assert!(tolerations(&policy).is_none());
    }
}
