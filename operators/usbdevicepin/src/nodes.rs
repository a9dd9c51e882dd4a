//! Is a node that reports a device, or runs a consumer, still there? Read from the
//! kit's [`NodeView`] (its kubelet heartbeat Lease, its `Ready` condition), against
//! the pin's `failover.unreachableAfter`. Pure.
//!
//! A node agent on a dead node can never withdraw its `status.presence` entry: the
//! entry of a node lost past the grace is disregarded, so it neither holds the
//! consumers there nor makes an exclusive pin look in conflict with a backup stick.

use std::time::Duration;

use homelab_kit::failover::{NodeView, Reachability};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// What the controller makes of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Heard from, or not observed at all (nothing says it is gone).
    Heard,
    /// Silent, for less than the grace: wait, and look again after `remaining`.
    Silent {
        /// Until the grace ends.
        remaining: Duration,
    },
    /// Silent past the grace (or removed from the cluster): its entries are stale and
    /// its pods can never confirm their deletion.
    Lost {
        /// The last heartbeat, when known.
        since: Option<Timestamp>,
    },
}

impl Health {
    /// Whether the node counts as lost.
    #[must_use]
    pub fn is_lost(self) -> bool {
        matches!(self, Self::Lost { .. })
    }
}

/// The health of `node` among `views` as of `now`, given the pin's `grace`.
#[must_use]
pub fn health(views: &[NodeView], node: &str, grace: SignedDuration, now: Timestamp) -> Health {
    let Some(view) = views.iter().find(|v| v.name == node) else {
        return Health::Heard;
    };
    match view.reachability {
        Reachability::Reachable => Health::Heard,
        Reachability::Gone => Health::Lost { since: None },
        Reachability::Lost { since } => {
            let silent = now.duration_since(since);
            if silent >= grace {
                Health::Lost { since: Some(since) }
            } else {
                Health::Silent {
                    remaining: (grace - silent).unsigned_abs(),
                }
            }
        }
    }
}

/// Nodes that `controller` marked lost and that heartbeat again: its marks come off.
#[must_use]
pub fn releasable(views: &[NodeView], controller: &str) -> Vec<String> {
    views
        .iter()
        .filter(|v| {
            v.reachability == Reachability::Reachable && v.fenced_by.as_deref() == Some(controller)
        })
        .map(|v| v.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn silent(name: &str, since: i64) -> NodeView {
        NodeView {
            reachability: Reachability::Lost { since: t(since) },
            ..NodeView::reachable(name)
        }
    }

    #[test]
    fn a_node_is_lost_only_once_silent_for_the_whole_grace() {
        let grace = SignedDuration::from_secs(30);
        let views = [silent("pi4-2", 100), NodeView::gone("pi4-3")];
        assert_eq!(
            health(&views, "pi4-2", grace, t(110)),
            Health::Silent {
                remaining: Duration::from_secs(20)
            }
        );
        assert_eq!(
            health(&views, "pi4-2", grace, t(130)),
            Health::Lost {
                since: Some(t(100))
            }
        );
        assert!(health(&views, "pi4-3", grace, t(0)).is_lost());
        // A node nobody observed is taken as heard: no move on missing data.
        assert_eq!(health(&views, "pi4-1", grace, t(999)), Health::Heard);
    }

    #[test]
    fn only_our_own_marks_come_off_and_only_from_nodes_heard_again() {
        let mut back = NodeView::reachable("pi4-2");
        back.fenced_by = Some("usbdevicepin-controller".into());
        let mut others = NodeView::reachable("pi4-3");
        others.fenced_by = Some("mediaserver-controller".into());
        let mut still = silent("pi4-1", 0);
        still.fenced_by = Some("usbdevicepin-controller".into());
        assert_eq!(
            releasable(&[back, others, still], "usbdevicepin-controller"),
            ["pi4-2"]
        );
    }
}
