//! Status: computed from what was applied and observed, never guessed. Pure;
//! the clock is an argument, and conditions keep their `lastTransitionTime`
//! unless their status changes, so a steady server computes the status it
//! already has and nothing is written.

use homelab_api::conditions::{
    ConditionStatus, new_condition, remove_condition, set_condition, set_outcome,
};
use homelab_api::conditions::{reasons, types};
use homelab_api::{MediaServer, MediaServerStatus};
use homelab_kit::Outcome;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::build::service::url;
use crate::failover::Analysis;
use crate::validate::Problem;

/// Reason of `ConfigOnNFS=True`.
pub const SQLITE_ON_NFS: &str = "SQLiteOnNFS";

/// What the reconcile concluded.
#[derive(Clone, Copy, Debug)]
pub enum Verdict<'a> {
    /// The spec cannot be built or placed; nothing was applied.
    Refused(&'a Problem),
    /// Everything was applied; this is whether it can fail over.
    Applied(&'a Analysis),
}

/// The owned objects as last seen, after applying.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen<'a> {
    /// The Deployment.
    pub deployment: Option<&'a Deployment>,
    /// The Service.
    pub service: Option<&'a Service>,
    /// The server's pods.
    pub pods: &'a [Pod],
}

/// The status `ms` should have.
#[must_use]
pub fn compute(
    ms: &MediaServer,
    verdict: Verdict<'_>,
    seen: Seen<'_>,
    now: Timestamp,
) -> MediaServerStatus {
    let generation = ms.metadata.generation;
    let mut status = ms.status.clone().unwrap_or_default();
    status.observed_generation = generation;

    let pod = current_pod(seen.pods);
    status.pod = pod.map(ResourceExt::name_any);
    status.node = pod
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.node_name.clone());
    status.url = seen.service.and_then(|svc| {
        let port = svc.spec.as_ref()?.ports.as_ref()?.first()?.port;
        Some(url(&svc.name_any(), &svc.namespace()?, port))
    });

    let outcome = match verdict {
        Verdict::Refused(problem) => Outcome::stalled(problem.reason, &problem.message),
        Verdict::Applied(_) if rolled_out(seen.deployment) => {
            let node = status.node.as_deref().unwrap_or("its node");
            let at = status
                .url
                .as_deref()
                .map(|u| format!(", at {u}"))
                .unwrap_or_default();
            Outcome::ready(reasons::RECONCILED, format!("running on {node}{at}"))
        }
        Verdict::Applied(_) => Outcome::progressing(reasons::POD_NOT_READY, waiting_for(pod)),
    };
    set_outcome(&mut status.conditions, &outcome, generation, now);

    let failover = match verdict {
        Verdict::Applied(a) => {
            status.failover_possible = Some(a.possible);
            status.failover_reason = Some(a.message.clone());
            new_condition(
                types::FAILOVER_READY,
                a.possible.into(),
                a.reason,
                &a.message,
                generation,
                now,
            )
        }
        Verdict::Refused(problem) => {
            status.failover_possible = None;
            status.failover_reason = None;
            new_condition(
                types::FAILOVER_READY,
                ConditionStatus::Unknown,
                problem.reason,
                "unknown while the server cannot be placed",
                generation,
                now,
            )
        }
    };
    set_condition(&mut status.conditions, failover);

    if let Some(nfs) = &ms.spec.config.nfs {
        let message = format!(
            "the config and its SQLite database are on NFS ({}:{}); SQLite on NFS corrupts sooner or later: prefer a volumeClaim on block storage (Longhorn, Ceph RBD, iSCSI)",
            nfs.server, nfs.path
        );
        set_condition(
            &mut status.conditions,
            new_condition(
                types::CONFIG_ON_NFS,
                ConditionStatus::True,
                SQLITE_ON_NFS,
                &message,
                generation,
                now,
            ),
        );
    } else {
        remove_condition(&mut status.conditions, types::CONFIG_ON_NFS);
    }
    status
}

/// The Deployment has seen its latest spec and its one pod is up to date
/// and available.
pub(crate) fn rolled_out(deployment: Option<&Deployment>) -> bool {
    let Some(d) = deployment else { return false };
    let Some(s) = &d.status else { return false };
    s.observed_generation >= d.metadata.generation
        && s.updated_replicas == Some(1)
        && s.available_replicas == Some(1)
        && s.replicas == Some(1)
}

/// The pod that is (or is becoming) the server: not being deleted, Ready
/// ones first.
fn current_pod(pods: &[Pod]) -> Option<&Pod> {
    let live = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none());
    live.max_by_key(|p| (is_ready(p), p.metadata.creation_timestamp.clone()))
}

fn is_ready(pod: &Pod) -> bool {
    condition(pod, "Ready").is_some_and(|c| c.status == "True")
}

fn condition<'a>(
    pod: &'a Pod,
    type_: &str,
) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// What the rollout waits for, in the scheduler's words when it is a node.
fn waiting_for(pod: Option<&Pod>) -> String {
    let Some(pod) = pod else {
        return "waiting for the Deployment to create the server's pod".to_owned();
    };
    if let Some(unscheduled) = condition(pod, "PodScheduled").filter(|c| c.status == "False") {
        return format!(
            "pod {} waits for a node: {}",
            pod.name_any(),
            unscheduled
                .message
                .as_deref()
                .unwrap_or("not scheduled yet")
        );
    }
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("its node");
    format!("pod {} on {node} is not ready yet", pod.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::media_server;
    use homelab_api::ConditionedStatus;
    use k8s_openapi::api::apps::v1::DeploymentStatus;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus, ServicePort, ServiceSpec};
    use kube::api::ObjectMeta;
    use serde_json::json;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn running() -> (Deployment, Service, Vec<Pod>) {
        let deployment = Deployment {
            metadata: ObjectMeta {
                generation: Some(2),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(DeploymentStatus {
                observed_generation: Some(2),
                replicas: Some(1),
                updated_replicas: Some(1),
                available_replicas: Some(1),
                ..DeploymentStatus::default()
            }),
        };
        let service = Service {
            metadata: ObjectMeta {
                name: Some("jellyfin".into()),
                namespace: Some("media".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    port: 8096,
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            status: None,
        };
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("jellyfin-abc".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n100-1".into()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        };
        (deployment, service, vec![pod])
    }

    fn analysis() -> Analysis {
        Analysis {
            possible: false,
            reason: reasons::SINGLE_ELIGIBLE_NODE,
            message: "only n100-1".into(),
        }
    }

    #[test]
    fn running_server_reports_node_url_and_failover() {
        let ms = media_server(
            json!({"preset": "Jellyfin", "config": {"nfs": {"server": "nas", "path": "/c"}}}),
        );
        let (d, s, pods) = running();
        let a = analysis();
        let seen = Seen {
            deployment: Some(&d),
            service: Some(&s),
            pods: &pods,
        };
        let status = compute(&ms, Verdict::Applied(&a), seen, t(0));
        assert!(status.is_condition_true(types::READY));
        assert_eq!(status.node.as_deref(), Some("n100-1"));
        assert_eq!(
            status.url.as_deref(),
            Some("http://jellyfin.media.svc:8096")
        );
        assert_eq!(status.failover_possible, Some(false));
        assert_eq!(
            status.condition(types::FAILOVER_READY).unwrap().reason,
            reasons::SINGLE_ELIGIBLE_NODE
        );
        assert!(status.is_condition_true(types::CONFIG_ON_NFS));
        assert_eq!(status.observed_generation, Some(1));

        // An hour later, nothing changed: the same status, timestamps included.
        let mut again = ms.clone();
        again.status = Some(status.clone());
        assert_eq!(compute(&again, Verdict::Applied(&a), seen, t(3600)), status);
    }

    #[test]
    fn refused_spec_is_stalled_with_unknown_failover() {
        let ms =
            media_server(json!({"preset": "Jellyfin", "config": {"volumeClaim": {"size": "1Gi"}}}));
        let problem = Problem {
            reason: reasons::NO_GPU_NODE,
            message: "no node offers nvidia.com/gpu".into(),
        };
        let status = compute(&ms, Verdict::Refused(&problem), Seen::default(), t(0));
        assert!(status.is_condition_true(types::STALLED));
        assert!(!status.is_condition_true(types::READY));
        assert_eq!(
            status.condition(types::STALLED).unwrap().message,
            problem.message
        );
        assert_eq!(
            status.condition(types::FAILOVER_READY).unwrap().status,
            "Unknown"
        );
        assert_eq!(
            (status.url.as_deref(), status.failover_possible),
            (None, None)
        );
        assert!(status.condition(types::CONFIG_ON_NFS).is_none());
    }

    #[test]
    fn unscheduled_pod_says_why_in_the_schedulers_words() {
        let ms =
            media_server(json!({"preset": "Jellyfin", "config": {"volumeClaim": {"size": "1Gi"}}}));
        let pending = Pod {
            metadata: ObjectMeta {
                name: Some("jellyfin-x".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "PodScheduled".into(),
                    status: "False".into(),
                    message: Some(
                        "0/7 nodes are available: 1 Insufficient gpu.intel.com/i915.".into(),
                    ),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        };
        let a = analysis();
        let pods = [pending];
        let status = compute(
            &ms,
            Verdict::Applied(&a),
            Seen {
                pods: &pods,
                ..Seen::default()
            },
            t(0),
        );
        let reconciling = status.condition(types::RECONCILING).unwrap();
        assert!(
            reconciling
                .message
                .contains("Insufficient gpu.intel.com/i915"),
            "{}",
            reconciling.message
        );
    }
}
