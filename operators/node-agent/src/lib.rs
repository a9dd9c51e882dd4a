//! The node agent, one per node (a DaemonSet): finds USB devices under sysfs,
//! reports where each UsbDevicePin's device is into the pin's `status.presence`
//! (this node's entry only, with this node's own server-side-apply field manager),
//! and hands the device to the one pod that requested it through the kubelet
//! device-plugin API, so consumers need no privileges.
//!
//! Modules, one job each: [`agent`] (the loop), [`sysfs`] (discovery), [`seen`]
//! (since when), [`matching`] (device → pin), [`metrics`], [`report`] (presence writes),
//! [`deviceplugin`] (the kubelet API), [`settings`], [`error`]. With the `fixtures`
//! feature, for tests and the demo only: `fixtures` builds real-shaped trees and
//! `fake_kubelet` plays the kubelet.

pub mod agent;
pub mod device_class;
pub mod deviceplugin;
pub mod error;
#[cfg(feature = "fixtures")]
pub mod fake_kubelet;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod matching;
pub mod metrics;
pub mod report;
pub mod seen;
pub mod settings;
pub mod sysfs;

pub use error::Error;
pub use settings::Settings;
