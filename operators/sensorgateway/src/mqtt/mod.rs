//! The operator's own MQTT client: one connection per broker, shared by every
//! gateway that publishes there, reading availability and sensor topics.
//!
//! [`Hub`] is the only entry point. A reconcile tells it what a gateway wants
//! to hear ([`Interest`]) and gets back what was heard ([`Observation`]); the hub
//! wakes a gateway's reconcile when something it cares about changes (its
//! availability payload, a silent sensor speaking again, the connection going
//! up or down), and otherwise stays out of the way: sensors chattering every
//! second cause no reconcile at all.

pub mod broker;
pub mod budget;
mod connection;
mod hub;
pub mod payload;
pub mod topic;

pub use broker::{BrokerSpec, Credentials, Secret, TlsMaterial};
pub use budget::MqttBudget;
pub use hub::{Connection, GatewayId, Hub, Interest, Observation, Seen};
