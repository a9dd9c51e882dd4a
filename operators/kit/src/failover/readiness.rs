//! What a workload's state storage means for `FailoverReady`, the same for every
//! kind: which of the cases of [`super::storage::Storage`] applies, what happens
//! on a node loss, and what to change when it cannot fail over. Pure.

use homelab_api::conditions::reasons;
use homelab_api::failover::FailoverPolicy;

use super::storage::Storage;

/// What to do about state that lives on one node.
pub const FIX_NODE_LOCAL: &str = "keep it on storage other nodes can reach and copy the data over: a volumeClaim with storageClassName set to a network class (Longhorn, Ceph RBD, iSCSI; NFS with fencing), or make such a class the cluster's default (k3s' default, local-path, keeps each volume on one node)";

/// The FailoverReady verdict of the state's storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// Whether the workload moves off a lost node without a person.
    pub possible: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Which case applies, and what to change when it cannot move.
    pub message: String,
}

/// The verdict for state (`subject`, such as "claim zigbee2mqtt-data" or "the
/// config") on `storage`, under `policy`.
#[must_use]
pub fn of_state(
    subject: &str,
    storage: &Storage,
    policy: &FailoverPolicy,
    fencing_allowed: bool,
) -> Readiness {
    let why = storage.why();
    let (possible, reason, tail) = match storage {
        Storage::NodeLocal { .. } => (
            false,
            reasons::NODE_LOCAL_STORAGE,
            format!("no other node can run it, so it does not fail over. To allow failover, {FIX_NODE_LOCAL}"),
        ),
        Storage::SingleAttach { .. } => (
            true,
            reasons::ATTACHMENT_ENFORCED,
            "a replacement on another node mounts it only once the lost node's attachment is released, so two copies never write it at once".to_owned(),
        ),
        Storage::Shared { .. } | Storage::Undetermined { .. } if policy.fence_node => {
            if fencing_allowed {
                (
                    true,
                    reasons::FENCES_BEFORE_MOVING,
                    "two nodes could write it at once, so the operator fences a lost node (the node.kubernetes.io/out-of-service taint) before moving the workload, as failover.fenceNode asks".to_owned(),
                )
            } else {
                (
                    false,
                    reasons::FENCING_NOT_ALLOWED,
                    "two nodes could write it at once; failover.fenceNode asks to fence a lost node first, but the cluster's administrator has not enabled fencing (chart value fencing.enabled): until then it moves only once someone adds the node.kubernetes.io/out-of-service taint to the lost node".to_owned(),
                )
            }
        }
        Storage::Shared {
            attached_volume: Some(_),
            ..
        } => (
            true,
            reasons::MOVES_AFTER_DETACH,
            "two nodes could mount it at once, so a lost node's workload moves only once Kubernetes has detached the volume from that node (or the node is fenced)".to_owned(),
        ),
        Storage::Shared { .. } | Storage::Undetermined { .. } => (
            false,
            reasons::SHARED_STORAGE_NEEDS_FENCING,
            "two copies could write it if a silent node is in fact still running, so the workload is moved off a lost node only once that node is fenced. Add the node.kubernetes.io/out-of-service taint to the node once it is off, or set failover.fenceNode to let the operator add it (the administrator must enable fencing, chart value fencing.enabled); or keep the data on block storage whose driver attaches it to one node at a time (Longhorn, Ceph RBD, iSCSI)".to_owned(),
        ),
    };
    Readiness {
        possible,
        reason,
        message: format!("{subject} {why}: {tail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that `message` mentions every one of `words`.
    fn mentions(message: &str, words: &[&str]) {
        for w in words {
            assert!(message.contains(w), "{w:?} not in: {message}");
        }
    }

    fn shared(attached: Option<&str>) -> Storage {
        Storage::Shared {
            why: "is bound to volume pv-1, an NFS share (nas:/z) that every node can mount at once"
                .into(),
            attached_volume: attached.map(Into::into),
        }
    }

    #[test]
    fn each_case_has_its_reason() {
        let policy = FailoverPolicy::default();
        let fencing = FailoverPolicy {
            fence_node: true,
            ..FailoverPolicy::default()
        };
        let cases = [
            (
                Storage::NodeLocal {
                    why: "uses StorageClass local-path".into(),
                },
                &policy,
                true,
                (false, reasons::NODE_LOCAL_STORAGE),
            ),
            (
                Storage::SingleAttach {
                    why: "is on longhorn".into(),
                },
                &policy,
                true,
                (true, reasons::ATTACHMENT_ENFORCED),
            ),
            (
                shared(None),
                &policy,
                true,
                (false, reasons::SHARED_STORAGE_NEEDS_FENCING),
            ),
            (
                shared(None),
                &fencing,
                true,
                (true, reasons::FENCES_BEFORE_MOVING),
            ),
            (
                shared(None),
                &fencing,
                false,
                (false, reasons::FENCING_NOT_ALLOWED),
            ),
            (
                shared(Some("pv-1")),
                &policy,
                false,
                (true, reasons::MOVES_AFTER_DETACH),
            ),
        ];
        for (storage, policy, allowed, want) in cases {
            let r = of_state("claim data", &storage, policy, allowed);
            assert_eq!((r.possible, r.reason), want, "{}", r.message);
            assert!(r.message.starts_with("claim data "), "{}", r.message);
        }
    }

    #[test]
    fn the_messages_say_what_to_change() {
        let r = of_state(
            "claim data",
            &shared(None),
            &FailoverPolicy::default(),
            false,
        );
        mentions(
            &r.message,
            &["nas:/z", "out-of-service", "failover.fenceNode"],
        );
        let local = Storage::NodeLocal {
            why:
                "uses StorageClass local-path (rancher.io/local-path, the cluster's default class)"
                    .into(),
        };
        let r = of_state("claim data", &local, &FailoverPolicy::default(), false);
        mentions(&r.message, &["storageClassName", "local-path"]);
    }
}
