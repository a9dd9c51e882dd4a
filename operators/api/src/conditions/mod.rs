//! Condition types, reasons, and generic access to a status's conditions.
//!
//! Every kind carries `status.conditions` in the Kubernetes convention and
//! `status.observedGeneration`. `Ready` plus the kstatus pair `Reconciling` / `Stalled`
//! are common to all kinds, so `kubectl wait --for=condition=Ready`, Flux health checks
//! and Argo CD read them without custom code. Kind-specific types are listed below with
//! the kind that sets them.
//!
//! [`ConditionedStatus`] lets shared code (the controller kit) read and write conditions
//! and `observedGeneration` on any kind's status without knowing the kind; [`set_condition`]
//! and the other edits change a list the Kubernetes way, and [`Outcome`] sets the kstatus
//! trio from what a reconcile concluded.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

mod edit;
mod outcome;

pub use edit::{
    MAX_MESSAGE_BYTES, conditions_equal, find_condition, is_true, new_condition, now,
    remove_condition, sanitize_reason, set_condition, truncate,
};
pub use outcome::{KStatus, Outcome, kstatus, set_outcome};

/// Condition `type` values.
pub mod types {
    /// The object does what it is for (all kinds).
    pub const READY: &str = "Ready";
    /// The controller is working towards the spec and expects to get there (kstatus).
    pub const RECONCILING: &str = "Reconciling";
    /// The controller cannot get there without a person's help (kstatus); the message
    /// says what to change.
    pub const STALLED: &str = "Stalled";

    /// UsbDevicePin: a matching device is plugged into some node.
    pub const DEVICE_PRESENT: &str = "DevicePresent";
    /// UsbDevicePin: two pins claim the same device, or an exclusive device shows on two
    /// nodes at once.
    pub const CONFLICT: &str = "Conflict";

    /// SensorGateway: the gateway's availability topic says online.
    pub const GATEWAY_ONLINE: &str = "GatewayOnline";
    /// SensorGateway: every listed sensor reported within its `staleAfter`.
    pub const SENSORS_FRESH: &str = "SensorsFresh";
    /// SensorGateway: the operator is connected to the gateway's MQTT broker.
    pub const BROKER_CONNECTED: &str = "BrokerConnected";

    /// MediaServer (and any kind with a failover policy): the workload could be moved
    /// to another node if its node died.
    pub const FAILOVER_READY: &str = "FailoverReady";
    /// MediaServer: the config volume (its SQLite database) is on NFS, which corrupts
    /// SQLite sooner or later (a warning, abnormal-true).
    pub const CONFIG_ON_NFS: &str = "ConfigOnNFS";

    /// EtcdBackup: no verified backup within the allowed age (abnormal-true).
    pub const STALE: &str = "Stale";
    /// EtcdBackup: the etcd cluster has an even member count or an unreachable member
    /// (abnormal-true).
    pub const QUORUM_AT_RISK: &str = "QuorumAtRisk";
}

/// Condition `reason` values (CamelCase, stable, greppable).
pub mod reasons {
    /// Everything in the spec is in place.
    pub const RECONCILED: &str = "Reconciled";
    /// Work is in progress (a rollout, a pod starting).
    pub const PROGRESSING: &str = "Progressing";
    /// The pod the object runs is not ready yet.
    pub const POD_NOT_READY: &str = "PodNotReady";
    /// A referenced object (Secret, UsbDevicePin, PersistentVolumeClaim) does not exist.
    pub const REFERENCE_NOT_FOUND: &str = "ReferenceNotFound";
    /// The spec is valid for the API server but cannot work (the message says why).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// No node satisfies the placement (architecture, GPU, device, allowedNodes).
    pub const NO_ELIGIBLE_NODE: &str = "NoEligibleNode";

    /// The node the workload ran on is unreachable past `failover.unreachableAfter`.
    pub const NODE_UNREACHABLE: &str = "NodeUnreachable";
    /// The workload was moved to another node.
    pub const FAILED_OVER: &str = "FailedOver";
    /// `failover.mode` is `Manual` or `Disabled`.
    pub const FAILOVER_NOT_AUTOMATIC: &str = "FailoverNotAutomatic";
    /// Node-local storage (a hostPath, a volume bound to one node) keeps the workload on
    /// its node.
    pub const NODE_LOCAL_STORAGE: &str = "NodeLocalStorage";
    /// Only one node may run the workload.
    pub const SINGLE_ELIGIBLE_NODE: &str = "SingleEligibleNode";
    /// Storage two copies could both write (an NFS share) is safe to move only once
    /// the lost node is fenced, and `failover.fenceNode` is false.
    pub const FENCING_REQUIRED: &str = "FencingRequired";
    /// The state is on storage two nodes can mount at once (an NFS share, a CSI
    /// driver without an attach step, a ReadWriteMany claim), and nothing fences a
    /// lost node by itself: it is moved only once a person adds the out-of-service
    /// taint.
    pub const SHARED_STORAGE_NEEDS_FENCING: &str = "SharedStorageNeedsFencing";
    /// The state is on storage two nodes can mount at once; `failover.fenceNode`
    /// and the administrator let the operator fence a lost node before moving.
    pub const FENCES_BEFORE_MOVING: &str = "FencesBeforeMoving";
    /// The state is on storage two nodes can mount at once, but its driver attaches
    /// it to nodes: it moves once Kubernetes has detached it from the lost node.
    pub const MOVES_AFTER_DETACH: &str = "MovesAfterDetach";
    /// The state is on a ReadWriteOnce volume whose driver attaches it to one node
    /// at a time: the storage itself keeps a second copy out.
    pub const ATTACHMENT_ENFORCED: &str = "AttachmentEnforced";
    /// A lost node still holds the VolumeAttachment of shared storage: the move
    /// waits until Kubernetes detaches it (or the node is fenced).
    pub const VOLUME_STILL_ATTACHED: &str = "VolumeStillAttached";
    /// `failover.fenceNode` asks to fence a lost node, but the cluster's
    /// administrator has not enabled fencing (the chart's `fencing.enabled`).
    pub const FENCING_NOT_ALLOWED: &str = "FencingNotAllowed";
    /// Most nodes fell silent at once (the control plane or the network, not the
    /// nodes): nothing is moved, as Kubernetes' own node-lifecycle controller does.
    pub const CLUSTER_DISRUPTED: &str = "ClusterDisrupted";
    /// The last failover was less than `failover.cooldown` ago.
    pub const COOLING_DOWN: &str = "CoolingDown";

    /// UsbDevicePin: a node agent reports the device.
    pub const DEVICE_FOUND: &str = "DeviceFound";
    /// UsbDevicePin: no node agent reports the device.
    pub const DEVICE_NOT_FOUND: &str = "DeviceNotFound";
    /// UsbDevicePin: the device is now on another node.
    pub const DEVICE_MOVED: &str = "DeviceMoved";
    /// UsbDevicePin: an exclusive device is reported by several nodes.
    pub const DEVICE_ON_SEVERAL_NODES: &str = "DeviceOnSeveralNodes";
    /// UsbDevicePin: another pin matches the same device.
    pub const CLAIMED_BY_ANOTHER_PIN: &str = "ClaimedByAnotherPin";

    /// SensorGateway: its radio's UsbDevicePin reports no device in any node.
    pub const RADIO_MISSING: &str = "RadioMissing";
    /// SensorGateway: the availability topic says online.
    pub const ONLINE: &str = "Online";
    /// SensorGateway: the availability topic says offline (or its Last Will fired).
    pub const OFFLINE: &str = "Offline";
    /// SensorGateway: nothing has been published on the availability topic yet.
    pub const NO_AVAILABILITY_MESSAGE: &str = "NoAvailabilityMessage";
    /// SensorGateway: every sensor reported in time.
    pub const ALL_SENSORS_REPORTING: &str = "AllSensorsReporting";
    /// SensorGateway: at least one sensor is stale (the message names them).
    pub const SENSOR_STALE: &str = "SensorStale";
    /// SensorGateway: connected to the broker.
    pub const CONNECTED: &str = "Connected";
    /// SensorGateway: the broker cannot be reached or refused the connection.
    pub const BROKER_UNREACHABLE: &str = "BrokerUnreachable";

    /// Stalled: the API server refused an object the controller built from the
    /// spec (the message is the API server's, naming the field).
    pub const CHILD_REFUSED: &str = "ChildRefused";
    /// Stalled: a hostPath volume outside what the administrator allows.
    pub const HOST_PATH_NOT_ALLOWED: &str = "HostPathNotAllowed";

    /// MediaServer: config and media are on network storage; the server can move.
    pub const NETWORK_STORAGE: &str = "NetworkStorage";
    /// MediaServer: hardware transcoding was asked for and no node offers it.
    pub const NO_GPU_NODE: &str = "NoGPUNode";

    /// EtcdBackup: the last backup was written and verified.
    pub const BACKUP_SUCCEEDED: &str = "BackupSucceeded";
    /// EtcdBackup: the last backup failed.
    pub const BACKUP_FAILED: &str = "BackupFailed";
    /// EtcdBackup: the last backup was written but failed verification.
    pub const VERIFICATION_FAILED: &str = "VerificationFailed";
    /// EtcdBackup: the newest verified backup is older than allowed.
    pub const NO_RECENT_BACKUP: &str = "NoRecentBackup";
    /// EtcdBackup: the members are healthy and odd in number.
    pub const QUORUM_HEALTHY: &str = "QuorumHealthy";
    /// EtcdBackup: an even member count tolerates no more failures than one fewer.
    pub const EVEN_MEMBER_COUNT: &str = "EvenMemberCount";
    /// EtcdBackup: a member does not answer.
    pub const MEMBER_UNREACHABLE: &str = "MemberUnreachable";
}

/// The `status` of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// `"True"`
    True,
    /// `"False"`
    False,
    /// `"Unknown"`
    Unknown,
}

impl ConditionStatus {
    /// The value as written in `status.conditions[].status`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }

    /// Reads a condition's status; anything but `True`/`False` is `Unknown`.
    pub fn from_condition(condition: &Condition) -> Self {
        match condition.status.as_str() {
            "True" => Self::True,
            "False" => Self::False,
            _ => Self::Unknown,
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// Generic access to the conditions and observed generation of a status, implemented
/// by the status of every homelab kind.
pub trait ConditionedStatus {
    /// The conditions, keyed by `type`.
    fn conditions(&self) -> &[Condition];
    /// The conditions, for changing them.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    /// The `metadata.generation` this status was computed for.
    fn observed_generation(&self) -> Option<i64>;
    /// Records the `metadata.generation` this status was computed for.
    fn set_observed_generation(&mut self, generation: Option<i64>);

    /// The condition of the given type, if set.
    fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions().iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition of the given type is set and `True`.
    fn is_condition_true(&self, type_: &str) -> bool {
        self.condition(type_)
            .is_some_and(|c| ConditionStatus::from_condition(c) == ConditionStatus::True)
    }
}

/// Implements [`ConditionedStatus`] for a status struct with `conditions: Vec<Condition>`
/// and `observed_generation: Option<i64>` fields.
macro_rules! impl_conditioned_status {
    ($($status:ty),+ $(,)?) => {$(
        impl $crate::conditions::ConditionedStatus for $status {
            fn conditions(&self) -> &[::k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition] {
                &self.conditions
            }
            fn conditions_mut(
                &mut self,
            ) -> &mut Vec<::k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
                &mut self.conditions
            }
            fn observed_generation(&self) -> Option<i64> {
                self.observed_generation
            }
            fn set_observed_generation(&mut self, generation: Option<i64>) {
                self.observed_generation = generation;
            }
        }
    )+};
}
pub(crate) use impl_conditioned_status;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MediaServerStatus;

    #[test]
    fn generic_access_finds_conditions_by_type() {
        let mut status = MediaServerStatus::default();
        status.conditions_mut().push(Condition {
            type_: types::READY.into(),
            status: ConditionStatus::True.as_str().into(),
            reason: reasons::RECONCILED.into(),
            message: String::new(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
            observed_generation: Some(3),
        });
        status.set_observed_generation(Some(3));
        assert!(status.is_condition_true(types::READY));
        assert!(!status.is_condition_true(types::STALLED));
        assert_eq!(status.observed_generation(), Some(3));
        assert_eq!(ConditionStatus::from(false).as_str(), "False");
    }
}
