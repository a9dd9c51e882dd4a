//! The `homelab.home.arpa/v1alpha1` custom resources as Rust types.
//!
//! One module per kind ([`mediaserver`], [`sensorgateway`], [`usbdevicepin`],
//! [`etcdbackup`]) and the pieces they share: the [`failover`] policy, [`conditions`]
//! (types, reasons, and [`ConditionedStatus`] for generic access), Secret
//! [`references`], [`storage`] volumes, [`workload`] settings, Go-style
//! [`duration`]s and the [`formats`] (names, ports, paths) several kinds check.
//!
//! Validation lives in the schema, so the API server refuses bad input with a message
//! for a person: plain schema keywords (enums, ranges, lengths, list types) where they
//! say it, CEL rules (`x-kubernetes-validations`) for formats, one-of choices, cross-field
//! checks and immutable fields.
//!
//! The CRD YAML in `crds/` is generated from these types with
//! `cargo run -p homelab-api --bin crdgen`; the `crd_drift` test fails when it is stale.
//! This crate depends on nothing else of the project.

pub mod conditions;
pub mod crd;
pub mod duration;
pub mod etcdbackup;
pub mod failover;
pub mod formats;
pub mod mediaserver;
pub mod references;
pub mod sensorgateway;
pub mod storage;
pub mod usbdevicepin;
pub mod workload;

pub use conditions::{ConditionStatus, ConditionedStatus};
pub use duration::GoDuration;
pub use etcdbackup::{EtcdBackup, EtcdBackupSpec, EtcdBackupStatus};
pub use failover::{
    FailoverMode, FailoverPolicy, FailoverRecord, FailoverStatus, HasFailoverPolicy,
};
pub use mediaserver::{MediaServer, MediaServerSpec, MediaServerStatus};
pub use references::{SecretKeyRef, UsbDevicePinRef};
pub use sensorgateway::{SensorGateway, SensorGatewaySpec, SensorGatewayStatus};
pub use usbdevicepin::{UsbDevicePin, UsbDevicePinSpec, UsbDevicePinStatus};

/// The API group of every homelab kind.
pub const GROUP: &str = "homelab.home.arpa";
/// The API version of every homelab kind.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every homelab object.
pub const API_VERSION: &str = "homelab.home.arpa/v1alpha1";
/// The category every homelab kind is in: `kubectl get homelab` lists them all.
pub const CATEGORY: &str = "homelab";
