//! The `failover` block shared by MediaServer, SensorGateway and UsbDevicePin, and the
//! `status.lastFailover` record.
//!
//! Kubernetes alone moves a workload off a lost node slowly (300 s of default toleration
//! after the node is declared NotReady) and sometimes never (a `Recreate` Deployment
//! waiting for a pod a dead kubelet cannot confirm deleted). The policy here says, per
//! object, what the operator may do instead.
//!
//! EtcdBackup has no failover block: every backup is a fresh Job that the scheduler
//! places on any healthy control-plane node, so there is nothing running to move; a
//! lost node shows as a missed backup (`Stale`) and an etcd member at risk
//! (`QuorumAtRisk`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::GoDuration;
use crate::formats::{NODE_NAMES_MESSAGE, NODE_NAMES_RULE};

/// Default for [`FailoverPolicy::unreachable_after`]: 20 s, two missed renewals of the
/// kubelet's heartbeat Lease (renewed every 10 s), against Kubernetes' 300 s.
pub const DEFAULT_UNREACHABLE_AFTER: &str = "20s";
/// Default for [`FailoverPolicy::cooldown`].
pub const DEFAULT_COOLDOWN: &str = "10m";
/// The taint that tells Kubernetes a node is off: pods on it are force-deleted and their
/// volumes detached (non-graceful node shutdown).
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

/// What the operator may do when the node running this object's workload is lost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.allowedNodes) || self.allowedNodes.size() == 0 || !has(self.preferredNodes) || self.preferredNodes.all(n, n in self.allowedNodes)"
).message("every node in preferredNodes must also be in allowedNodes"))]
#[x_kube(validation = Rule::new(
    "!self.unreachableAfter.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+)$') || duration(self.unreachableAfter) >= duration('10s')"
).message("unreachableAfter must be at least 10s: kubelets renew their heartbeat every 10s, so a shorter wait would act on healthy nodes"))]
pub struct FailoverPolicy {
    /// What the operator does when the node is lost. Automatic (default): move the
    /// workload to another eligible node once it is safe. Manual: report in status and
    /// Events what it would do, and do nothing. Disabled: neither report nor act;
    /// Kubernetes' own behaviour applies.
    #[serde(default)]
    pub mode: FailoverMode,

    /// How long the node may be unreachable (NotReady, or its kubelet heartbeat Lease
    /// not renewed) before the operator acts, as a duration such as 30s or 2m. Pods the
    /// operator creates tolerate the not-ready and unreachable taints for this long.
    /// Defaults to 20s, two missed heartbeats (the kubelet renews every 10s);
    /// Kubernetes alone waits 300s.
    #[serde(default = "default_unreachable_after")]
    pub unreachable_after: GoDuration,

    /// Nodes to run on when they can; the first eligible one in this list wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253)))]
    #[x_kube(validation = Rule::new(NODE_NAMES_RULE).message(NODE_NAMES_MESSAGE))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub preferred_nodes: Vec<String>,

    /// The only nodes the workload may run on. Empty (the default) allows every node
    /// that can run it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253)))]
    #[x_kube(validation = Rule::new(NODE_NAMES_RULE).message(NODE_NAMES_MESSAGE))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub allowed_nodes: Vec<String>,

    /// Allow the operator to fence a lost node by adding the
    /// node.kubernetes.io/out-of-service taint once unreachableAfter has passed, so
    /// Kubernetes force-deletes its pods and detaches their volumes; the operator
    /// removes the taint when the node is Ready again. Only set this when a node that
    /// stops answering is really off (a power cut, not a network split): a fenced node
    /// that is in fact running would run the workload twice. Without fencing, a pod on
    /// a lost node is force-removed only when holding it twice is impossible (its USB
    /// device is reported on another node, or its node-local volume is gone with the
    /// node). Defaults to false.
    #[serde(default)]
    pub fence_node: bool,

    /// The shortest time between two failovers of this object, so a flapping node does
    /// not move the workload back and forth. Defaults to 10m; 0 lets a failover follow
    /// another at once (unreachableAfter still applies to each).
    #[serde(default = "default_cooldown")]
    pub cooldown: GoDuration,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        Self {
            mode: FailoverMode::default(),
            unreachable_after: default_unreachable_after(),
            preferred_nodes: Vec::new(),
            allowed_nodes: Vec::new(),
            fence_node: false,
            cooldown: default_cooldown(),
        }
    }
}

impl FailoverPolicy {
    /// Whether `node` may run the workload under this policy.
    pub fn allows(&self, node: &str) -> bool {
        self.allowed_nodes.is_empty() || self.allowed_nodes.iter().any(|n| n == node)
    }
}

fn default_unreachable_after() -> GoDuration {
    GoDuration::from_static(DEFAULT_UNREACHABLE_AFTER)
}

fn default_cooldown() -> GoDuration {
    GoDuration::from_static(DEFAULT_COOLDOWN)
}

/// What the operator may do when a node is lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum FailoverMode {
    /// Move the workload once it is safe.
    #[default]
    Automatic,
    /// Report what would be done; do nothing.
    Manual,
    /// Neither report nor act.
    Disabled,
}

/// One failover, as recorded in `status.lastFailover`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord {
    /// The node the workload was moved away from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_node: Option<String>,

    /// The node the workload was moved to, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_node: Option<String>,

    /// When the operator started the failover.
    pub time: Time,

    /// Why, as a CamelCase reason (for example NodeUnreachable or DeviceMoved).
    pub reason: String,

    /// Why, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// Whether the operator fenced the lost node with the out-of-service taint.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fenced: bool,

    /// Milliseconds from the node being lost to the workload Ready on the new node,
    /// once it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_millis: Option<i64>,
}

/// Kinds whose spec carries a [`FailoverPolicy`].
pub trait HasFailoverPolicy {
    /// The object's failover policy.
    fn failover_policy(&self) -> &FailoverPolicy;
}

/// Statuses that record the last failover.
pub trait FailoverStatus {
    /// The last failover, if any.
    fn last_failover(&self) -> Option<&FailoverRecord>;
    /// Records a failover.
    fn set_last_failover(&mut self, record: Option<FailoverRecord>);
}

/// Implements [`HasFailoverPolicy`] for kinds whose spec has `failover`, and
/// [`FailoverStatus`] for their status with `last_failover`.
macro_rules! impl_failover {
    ($($kind:ty => $status:ty),+ $(,)?) => {$(
        impl $crate::failover::HasFailoverPolicy for $kind {
            fn failover_policy(&self) -> &$crate::failover::FailoverPolicy {
                &self.spec.failover
            }
        }
        impl $crate::failover::FailoverStatus for $status {
            fn last_failover(&self) -> Option<&$crate::failover::FailoverRecord> {
                self.last_failover.as_ref()
            }
            fn set_last_failover(&mut self, record: Option<$crate::failover::FailoverRecord>) {
                self.last_failover = record;
            }
        }
    )+};
}
pub(crate) use impl_failover;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_act_well_before_kubernetes_does() {
        let policy: FailoverPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(policy, FailoverPolicy::default());
        assert_eq!(policy.mode, FailoverMode::Automatic);
        let grace = policy.unreachable_after.to_std().unwrap();
        assert!(grace.as_secs() < 300 && grace.as_secs() >= 10);
        assert!(!policy.fence_node);
        assert!(policy.allows("any-node"));
    }

    #[test]
    fn allowed_nodes_restrict_placement() {
        let policy = FailoverPolicy {
            allowed_nodes: vec!["pi-1".into(), "pi-2".into()],
            ..FailoverPolicy::default()
        };
        assert!(policy.allows("pi-2"));
        assert!(!policy.allows("nuc-1"));
    }

    #[test]
    fn serializes_defaults_explicitly() {
        // The API server fills the same defaults, so what a controller reads back
        // compares equal to what it would build from an empty block.
        let json = serde_json::to_value(FailoverPolicy::default()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "mode": "Automatic",
                "unreachableAfter": "20s",
                "fenceNode": false,
                "cooldown": "10m",
            })
        );
    }
}
