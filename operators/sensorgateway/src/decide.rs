//! Decide: the whole decision of one reconcile, as pure functions of the
//! gateway, what was observed ([`crate::observed`], the clock included) and
//! what MQTT heard. Which refusal, if any; what to apply; whether to restart
//! the pod; what node-loss failover needs; the status; the Events; when to
//! look again. [`crate::controller`] acts on it.
//!
//! Two steps, because what MQTT heard depends on what the spec asks to hear:
//! [`watch`] (validate, dereference: the topics and the broker, or a refusal)
//! and [`decide`] (everything else, with what the hub heard of those topics).

use std::time::Duration;

use homelab_api::conditions::types;
use homelab_api::failover::FailoverMode;
use homelab_api::sensorgateway::SensorGatewayStatus;
use homelab_api::{ConditionedStatus, SensorGateway};
use homelab_kit::FieldManager;
use homelab_kit::failover::Readiness;
use homelab_kit::failover::workload;
use homelab_kit::settings::AllowedHostPaths;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::build::{self, Desired, Inputs};
use crate::liveness::{self, PodView, Restart};
use crate::mqtt::{Interest, Observation};
use crate::node_loss::{self, Failover};
use crate::observed::Observed;
use crate::references::{self, Resolved};
use crate::status::{self, Verdict, Watched};
use crate::validate::{Plan, Problem, check_host_paths, validate};

/// Reason of a broker TLS setting that cannot be used.
pub const INVALID_TLS: &str = "InvalidTLS";

/// How soon to look again after a restart, to see its replacement.
const AFTER_RESTART: Duration = Duration::from_secs(5);

/// A spec that can run: what it means and what its references resolved to.
#[derive(Debug)]
pub struct Watch {
    /// The validated spec.
    pub plan: Plan,
    /// The broker and the pin.
    pub resolved: Resolved,
}

impl Watch {
    /// What to hear on the broker: the availability topic and the sensors'.
    #[must_use]
    pub fn interest(&self) -> Interest {
        Interest {
            availability: Some(self.plan.availability_topic.clone()),
            sensors: self
                .plan
                .sensors
                .iter()
                .map(|s| (s.filter.clone(), s.stale_after))
                .collect(),
        }
    }
}

/// What to watch over MQTT, or why the spec cannot run: validation, the host
/// paths the administrator allows, then the references, in that order.
///
/// # Errors
/// The first [`Problem`].
pub fn watch(
    sg: &SensorGateway,
    observed: &Observed,
    allowed: &AllowedHostPaths,
) -> Result<Watch, Problem> {
    let plan = validate(sg)?;
    check_host_paths(sg, allowed)?;
    let resolved = references::resolve(sg, &plan, &observed.references)?;
    Ok(Watch { plan, resolved })
}

/// What the hub answered when told what to hear: what it heard, or why the
/// broker's TLS material cannot be used.
pub type Heard = Result<Observation, String>;

/// What the controller brings to a decision besides what it observed.
#[derive(Clone, Copy, Debug)]
pub struct Given<'a> {
    /// Owner references and labels of the built objects.
    pub manager: &'a FieldManager,
    /// The administrator lets failover fence a lost node.
    pub fencing_allowed: bool,
    /// How long to wait before looking again at a gateway that is fine.
    pub resync: Duration,
    /// How long to wait before looking again at a refused spec.
    pub retry_refused: Duration,
}

/// What one reconcile does.
#[derive(Debug)]
pub enum Decision {
    /// The spec cannot run.
    Refuse(Box<Refusal>),
    /// The gateway is applied and watched.
    Run(Box<Run>),
}

/// A refused spec: nothing applied, nothing watched, `Stalled` with what to
/// fix, and a Warning Event once per distinct problem. A Secret cannot be
/// watched, so it is read again at `retry`.
pub type Refusal = homelab_kit::Refusal<SensorGatewayStatus>;

/// An Event about the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Warning rather than Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// For a person.
    pub message: String,
}

/// A gateway that runs.
#[derive(Debug)]
pub struct Run {
    /// What to apply (nothing for an external gateway).
    pub desired: Option<Desired>,
    /// What node-loss failover needs, when it applies and there is a pod.
    pub failover: Option<Failover>,
    /// The status, before failover adds what it did ([`with_failover`]).
    pub status: SensorGatewayStatus,
    /// What `FailoverReady` says while no node is lost.
    pub standing: Option<Readiness>,
    /// The pod to restart.
    pub restart: Option<Restart>,
    /// Events for the transitions the status shows, published once written.
    pub notes: Vec<Note>,
    /// When to look again (failover may ask sooner).
    pub next: Duration,
}

/// Decides what to do with `sg`, given what was observed, what the spec asks
/// to watch (or why it cannot run) and what MQTT heard of it.
///
/// # Errors
/// [`homelab_kit::Error::OwnerNotPersisted`] for a gateway without a uid.
pub fn decide(
    sg: &SensorGateway,
    observed: &Observed,
    listened: Result<(Watch, Heard), Problem>,
    given: Given<'_>,
) -> Result<Decision, homelab_kit::Error> {
    let (watch, heard) = match listened {
        Ok((watch, Ok(heard))) => (watch, heard),
        Ok((_, Err(message))) => {
            let problem = Problem::new(INVALID_TLS, format!("mqtt.tls: {message}"));
            return Ok(Decision::Refuse(Box::new(refuse(
                sg,
                problem,
                observed.now,
                given,
            ))));
        }
        Err(problem) => {
            return Ok(Decision::Refuse(Box::new(refuse(
                sg,
                problem,
                observed.now,
                given,
            ))));
        }
    };
    run(sg, observed, &watch, &heard, given).map(|r| Decision::Run(Box::new(r)))
}

fn refuse(sg: &SensorGateway, problem: Problem, now: Timestamp, given: Given<'_>) -> Refusal {
    Refusal {
        status: status::compute(sg, Verdict::Refused(&problem), now),
        warn: !problem.already_said(sg.status.as_ref()),
        problem,
        retry: given.retry_refused,
    }
}

fn run(
    sg: &SensorGateway,
    observed: &Observed,
    watch: &Watch,
    heard: &Observation,
    given: Given<'_>,
) -> Result<Run, homelab_kit::Error> {
    let (now, cluster) = (observed.now, &observed.cluster);
    let (plan, resolved) = (&watch.plan, &watch.resolved);
    let movable = sg.spec.data.pinned_node().is_none()
        && resolved.pin.is_none()
        && sg.spec.failover.mode == FailoverMode::Automatic;
    let avoid = liveness::node_to_avoid(sg.status.as_ref(), movable);
    let (desired, pods) = if sg.spec.external {
        (None, &[][..])
    } else {
        let inputs = Inputs {
            pin: resolved.pin.as_ref(),
            avoid_node: avoid.as_deref(),
        };
        let desired = build::desired(sg, plan, inputs, given.manager)?;
        (Some(desired), &cluster.pods[..])
    };
    let pod = current_pod(pods, now);
    let data = node_loss::data_storage(sg, cluster);
    let failover = node_loss::failover(sg, cluster, data.as_ref());

    let may_restart = !sg.spec.external && sg.spec.failover.mode == FailoverMode::Automatic;
    let assessment = liveness::assess(liveness::Inputs {
        plan,
        observed: heard,
        previous: sg.status.as_ref(),
        pod: pod.as_ref(),
        may_restart,
        now,
    });
    let address = resolved.broker.address();
    let radio_missing = resolved.pin.as_ref().and_then(status::radio_missing);
    let watched = Watched {
        plan,
        connection: &heard.connection,
        address: &address,
        assessment: &assessment,
        pod: pod.as_ref(),
        radio_missing: radio_missing.as_deref(),
    };
    let settling = status::settling_until(sg, &watched, now);
    let mut status = status::compute(sg, Verdict::Watched(watched), now);
    if let Some(restart) = &assessment.restart {
        status.last_restart = Some(restart.record.clone());
    }
    let standing = node_loss::readiness(sg, data.as_ref(), given.fencing_allowed);
    let notes = transitions(sg.status.as_ref(), &status);

    // One second past a deadline, so it has passed when we look.
    let after = |t: Timestamp| t.duration_since(now).unsigned_abs() + Duration::from_secs(1);
    let next = assessment
        .next_deadline
        .map(after)
        .map_or(given.resync, |d| d.min(given.resync));
    // Look again when the new connection's grace ends, if nothing woke us first.
    let next = settling.map_or(next, |until| next.min(after(until)));
    let next = if assessment.restart.is_some() {
        AFTER_RESTART
    } else {
        next
    };
    Ok(Run {
        desired,
        failover,
        status,
        standing,
        restart: assessment.restart,
        notes,
        next,
    })
}

/// The status once node-loss failover said what it did: its record (also
/// returned alone, to be recorded even if the object changed under the
/// reconcile) and `FailoverReady`.
#[must_use]
pub fn with_failover(
    sg: &SensorGateway,
    mut status: SensorGatewayStatus,
    standing: Option<&Readiness>,
    lost: workload::Outcome,
    now: Timestamp,
) -> (SensorGatewayStatus, SensorGatewayStatus) {
    let mut records = SensorGatewayStatus::default();
    if let Some(record) = lost.record {
        records.last_failover = Some(record.clone());
        status.last_failover = Some(record);
    }
    status::failover_blocked(
        &mut status,
        standing,
        lost.blocked.as_ref(),
        sg.metadata.generation,
        now,
    );
    (status, records)
}

/// When to look again once failover said how soon it wants to: a restart's
/// replacement is looked at first.
#[must_use]
pub fn next_look(run: &Run, failover_wants: Option<Duration>) -> Duration {
    if run.restart.is_some() {
        return run.next;
    }
    failover_wants.map_or(run.next, |soon| soon.min(run.next))
}

/// The gateway's live pod: the newest one not being deleted.
fn current_pod(pods: &[Pod], now: Timestamp) -> Option<PodView> {
    // A pod its kubelet refused or that ended is history, not the gateway.
    let finished = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|phase| phase == "Failed" || phase == "Succeeded")
    };
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !finished(p))
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .map(|p| pod_view(p, now))
}

fn pod_view(pod: &Pod, now: Timestamp) -> PodView {
    let ready_since = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
        .map(|c| c.last_transition_time.as_ref().map_or(now, |t| t.0));
    PodView {
        name: pod.name_any(),
        uid: pod.uid().unwrap_or_default(),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        ready_since,
    }
}

/// Events for the transitions a person cares about: a condition turning
/// False (Warning) or from False back to True (Normal). A new gateway coming
/// online, or a broker connecting for the first time, is no news.
fn transitions(old: Option<&SensorGatewayStatus>, new: &SensorGatewayStatus) -> Vec<Note> {
    let mut notes = Vec::new();
    for (t, bad, good) in [
        (
            types::BROKER_CONNECTED,
            "BrokerUnreachable",
            "BrokerConnected",
        ),
        (types::GATEWAY_ONLINE, "GatewayOffline", "GatewayOnline"),
        (types::SENSORS_FRESH, "SensorStale", "SensorsFresh"),
    ] {
        let Some(after) = new.condition(t) else {
            continue;
        };
        let before = old.and_then(|s| s.condition(t)).map(|c| c.status.as_str());
        if before == Some(after.status.as_str()) {
            continue;
        }
        let (warning, reason) = match after.status.as_str() {
            "False" => (true, bad),
            "True" if before == Some("False") => (false, good),
            _ => continue,
        };
        notes.push(Note {
            warning,
            reason,
            message: after.message.clone(),
        });
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caches::Cluster;
    use crate::fixtures::gateway;
    use crate::references::{Referenced, SECRET_NOT_FOUND};
    use homelab_api::conditions::reasons;
    use serde_json::json;

    fn observed(at: i64) -> Observed {
        Observed {
            now: Timestamp::from_second(at).unwrap(),
            cluster: Cluster::default(),
            references: Referenced {
                broker_host: "mosquitto.home.svc".into(),
                ..Referenced::default()
            },
        }
    }

    fn given(manager: &FieldManager) -> Given<'_> {
        Given {
            manager,
            fencing_allowed: false,
            resync: Duration::from_secs(300),
            retry_refused: Duration::from_secs(30),
        }
    }

    fn heard() -> Observation {
        Observation {
            connection: crate::mqtt::Connection {
                connected: true,
                since: Timestamp::from_second(1_000).unwrap(),
                message: None,
            },
            availability: None,
            sensors: Vec::new(),
        }
    }

    #[test]
    fn each_refusal_is_an_outcome_and_warns_once() {
        let manager = FieldManager::new("test");
        let sg = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT",
                   "mqtt": {"url": "mqtt://mosquitto.home.svc:1883",
                            "usernameSecretRef": {"name": "mqtt", "key": "username"}}}),
        );
        let seen = observed(2_000);
        // The Secret was not found when observed.
        let listened = watch(&sg, &seen, &AllowedHostPaths::none()).map(|w| (w, Ok(heard())));
        let Ok(Decision::Refuse(refusal)) = decide(&sg, &seen, listened, given(&manager)) else {
            panic!("a missing Secret is refused");
        };
        assert_eq!(refusal.problem.reason, SECRET_NOT_FOUND);
        assert!(refusal.warn);
        assert_eq!(refusal.retry, Duration::from_secs(30));
        assert!(refusal.status.is_condition_true(types::STALLED));

        // Shown already: no second Warning.
        let mut shown = sg.clone();
        shown.status = Some(refusal.status);
        let listened = watch(&shown, &seen, &AllowedHostPaths::none()).map(|w| (w, Ok(heard())));
        let Ok(Decision::Refuse(again)) = decide(&shown, &seen, listened, given(&manager)) else {
            panic!("still refused");
        };
        assert!(!again.warn);

        // TLS material the hub cannot use.
        let plain = gateway("z", json!({"preset": "Zigbee2MQTT"}));
        let listened =
            watch(&plain, &seen, &AllowedHostPaths::none()).map(|w| (w, Err("bad PEM".to_owned())));
        let Ok(Decision::Refuse(tls)) = decide(&plain, &seen, listened, given(&manager)) else {
            panic!("bad TLS is refused");
        };
        assert_eq!(
            (tls.problem.reason, tls.problem.message.as_str()),
            (INVALID_TLS, "mqtt.tls: bad PEM")
        );
    }

    #[test]
    fn a_missing_pin_is_refused_naming_it() {
        let sg = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "radio": {"usbDevicePin": {"name": "stick"}}}),
        );
        let problem = watch(&sg, &observed(2_000), &AllowedHostPaths::none()).unwrap_err();
        assert_eq!(problem.reason, reasons::REFERENCE_NOT_FOUND);
        assert!(
            problem
                .message
                .contains("UsbDevicePin stick not found in namespace home"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn a_running_gateway_is_built_and_looked_at_again_with_the_observed_clock() {
        let manager = FieldManager::new("test");
        let sg = gateway("z", json!({"preset": "Zigbee2MQTT"}));
        let seen = observed(1_003);
        let listened = watch(&sg, &seen, &AllowedHostPaths::none()).map(|w| (w, Ok(heard())));
        let Ok(Decision::Run(run)) = decide(&sg, &seen, listened, given(&manager)) else {
            panic!("a valid spec runs");
        };
        assert!(run.desired.is_some());
        assert!(run.restart.is_none());
        // No pod yet: nothing for failover to do.
        assert!(run.failover.is_none());
        assert!(run.next <= Duration::from_secs(300));
        assert_eq!(
            next_look(&run, Some(Duration::from_secs(2))),
            Duration::from_secs(2).min(run.next)
        );
        // A new gateway coming online is no news.
        assert!(run.notes.is_empty());
    }

    #[test]
    fn transitions_warn_on_false_and_tell_of_recovery() {
        let sg = gateway("z", json!({"preset": "Zigbee2MQTT"}));
        let cond = |s: &str| {
            homelab_api::conditions::new_condition(
                types::GATEWAY_ONLINE,
                match s {
                    "True" => homelab_api::ConditionStatus::True,
                    _ => homelab_api::ConditionStatus::False,
                },
                "R",
                "m",
                sg.metadata.generation,
                Timestamp::from_second(1).unwrap(),
            )
        };
        let with = |s: &str| SensorGatewayStatus {
            conditions: vec![cond(s)],
            ..SensorGatewayStatus::default()
        };
        let down = transitions(Some(&with("True")), &with("False"));
        assert_eq!(down.len(), 1);
        assert!(down[0].warning && down[0].reason == "GatewayOffline");
        let up = transitions(Some(&with("False")), &with("True"));
        assert!(!up[0].warning && up[0].reason == "GatewayOnline");
        assert!(transitions(None, &with("True")).is_empty());
    }
}
