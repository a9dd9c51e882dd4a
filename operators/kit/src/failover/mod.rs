//! Node-loss failover, shared by every controller whose kind has a `failover` block.
//!
//! - [`observe`]: is a node heard from (kubelet Lease, `Ready`), is it fenced;
//! - [`decide`]: the decision, a pure function of what was observed;
//! - [`fence`]: marking a lost node, force-removing a stuck pod, unmarking;
//! - [`heartbeats`]: a trigger when a node falls silent or speaks again;
//! - [`record`]: the `status.lastFailover` record;
//! - [`tolerations`]: NoExecute tolerations for the policy's grace;
//! - [`workload`]: all of it for one workload, in a reconcile;
//! - [`metrics`]: counts and durations with bounded labels.
//!
//! A consumer, in its reconcile: observe the node its pod runs on, say what the
//! pod holds, call [`decide::decide`], and act on the [`Decision`] (the
//! MediaServer controller's `node_loss` module is the worked example).

pub mod decide;
pub mod fence;
pub mod heartbeats;
pub mod metrics;
pub mod observe;
pub mod record;
pub mod tolerations;
pub mod workload;

pub use decide::{Decision, Holds, Observation, decide};
pub use metrics::FailoverMetrics;
pub use observe::{NodeView, Reachability, observe_node};
pub use tolerations::{pod_tolerations, tolerations};
