//! The part of a pin's status this controller owns and writes.
//!
//! Node agents own `status.presence` (one entry each): the controller compares and
//! server-side applies only the fields below, so its writes never touch theirs.

use homelab_api::UsbDevicePinStatus;
use homelab_api::failover::FailoverRecord;
use homelab_api::usbdevicepin::DeviceMove;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::Serialize;

/// `UsbDevicePinStatus` without `presence`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnedStatus {
    /// See `UsbDevicePinStatus::observed_generation`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// See `UsbDevicePinStatus::conditions`.
    pub conditions: Vec<Condition>,
    /// See `UsbDevicePinStatus::current_node`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_node: Option<String>,
    /// See `UsbDevicePinStatus::by_id_path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_id_path: Option<String>,
    /// See `UsbDevicePinStatus::holder_pod`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder_pod: Option<String>,
    /// See `UsbDevicePinStatus::since`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// See `UsbDevicePinStatus::last_move`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_move: Option<DeviceMove>,
    /// See `UsbDevicePinStatus::last_failover`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
}

impl From<&UsbDevicePinStatus> for OwnedStatus {
    fn from(s: &UsbDevicePinStatus) -> Self {
        Self {
            observed_generation: s.observed_generation,
            conditions: s.conditions.clone(),
            current_node: s.current_node.clone(),
            by_id_path: s.by_id_path.clone(),
            holder_pod: s.holder_pod.clone(),
            since: s.since.clone(),
            last_move: s.last_move.clone(),
            last_failover: s.last_failover.clone(),
        }
    }
}
