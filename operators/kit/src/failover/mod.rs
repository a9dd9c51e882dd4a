//! Node-loss failover, shared by every controller whose kind has a `failover` block.
//!
//! - [`observe`]: is a node heard from (kubelet Lease, `Ready`), is it fenced;
//! - [`decide`]: the decision, a pure function of what was observed;
//! - [`fence`]: marking a lost node, force-removing a stuck pod, unmarking;
//! - [`storage`]: what a claim's storage means for a second copy (node-local,
//!   attached to one node, or shared), read by [`claims`];
//! - [`readiness`]: the FailoverReady verdict of a workload's state storage;
//! - [`heartbeats`]: a trigger when a node falls silent or speaks again;
//! - [`record`]: the `status.lastFailover` record;
//! - [`tolerations`]: NoExecute tolerations for the policy's grace;
//! - [`workload`]: all of it for one workload, in a reconcile;
//! - [`metrics`]: counts and durations with bounded labels.
//!
//! A consumer, in its reconcile: observe the node its pod runs on, say what the
//! pod holds, call [`decide::decide`], and act on the [`Decision`] (the
//! MediaServer controller's `node_loss` module is the worked example).

pub mod claims;
pub mod decide;
pub mod fence;
pub mod heartbeats;
pub mod metrics;
pub mod observe;
pub mod readiness;
pub mod record;
pub mod storage;
pub mod tolerations;
pub mod workload;

pub use decide::{Decision, Holds, Observation, decide};
pub use metrics::FailoverMetrics;
pub use observe::{NodeView, Reachability, observe_node};
pub use readiness::Readiness;
pub use storage::Storage;
pub use tolerations::{pod_tolerations, tolerations};
