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

/// A pod's tolerations: the user's own (a tainted Pi that only the Zigbee
/// gateway may use, a k3s server's `CriticalAddonsOnly`), then the policy's
/// node-lost ones for every taint key the user did not tolerate already, so a
/// user's own choice for `not-ready` or `unreachable` wins. `None` when empty.
#[must_use]
pub fn pod_tolerations(policy: &FailoverPolicy, user: &[Toleration]) -> Option<Vec<Toleration>> {
    let mut all = user.to_vec();
    for own in tolerations(policy).unwrap_or_default() {
        let covered = user.iter().any(|u| {
            (u.key.is_none() || u.key == own.key) && (u.effect.is_none() || u.effect == own.effect)
        });
        if !covered {
            all.push(own);
        }
    }
    (!all.is_empty()).then_some(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_tolerates_for_20s() {
        let t = tolerations(&FailoverPolicy::default()).unwrap();
        assert_eq!(t.len(), 2);
        assert!(t.iter().all(|t| t.toleration_seconds == Some(20)));
    }

    #[test]
    fn disabled_leaves_kubernetes_defaults() {
        let policy = FailoverPolicy {
            mode: FailoverMode::Disabled,
            ..FailoverPolicy::default()
        };
        assert!(tolerations(&policy).is_none());
    }

    fn toleration(key: Option<&str>, effect: Option<&str>, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: key.map(str::to_owned),
            operator: Some("Exists".to_owned()),
            effect: effect.map(str::to_owned),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn the_users_tolerations_come_first_and_win_for_their_keys() {
        let dedicated = toleration(Some("dedicated/zigbee"), Some("NoSchedule"), None);
        let patient = toleration(Some(NODE_LOST_TAINTS[1]), Some("NoExecute"), Some(600));
        let all = pod_tolerations(
            &FailoverPolicy::default(),
            &[dedicated.clone(), patient.clone()],
        )
        .unwrap();
        assert_eq!(all[0], dedicated);
        assert_eq!(all[1], patient);
        // not-ready keeps the policy's 20 s; unreachable is the user's 600 s only.
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].key.as_deref(), Some(NODE_LOST_TAINTS[0]));
        assert_eq!(all[2].toleration_seconds, Some(20));
    }

    #[test]
    fn a_noschedule_toleration_of_a_node_lost_key_keeps_the_policys_noexecute_one() {
        let user = toleration(Some(NODE_LOST_TAINTS[0]), Some("NoSchedule"), None);
        let all = pod_tolerations(&FailoverPolicy::default(), &[user]).unwrap();
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn nothing_to_tolerate_is_none() {
        let policy = FailoverPolicy {
            mode: FailoverMode::Disabled,
            ..FailoverPolicy::default()
        };
        assert!(pod_tolerations(&policy, &[]).is_none());
    }
}
