//! The status, computed from what the reconcile saw: pure, and equal to the
//! stored one when nothing changed (so nothing is written).

use homelab_api::conditions::{
    ConditionStatus, Outcome, new_condition, remove_condition, set_condition, set_outcome,
};
use homelab_api::conditions::{reasons, types};
use homelab_api::sensorgateway::{BrokerStatus, SensorGatewayStatus};
use homelab_api::{ConditionedStatus, SensorGateway, UsbDevicePin};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::liveness::{Assessment, Availability, PodView};
use crate::mqtt::Connection;
use crate::validate::{Plan, Problem};

/// Reason while the first connection to the broker is under way.
pub const CONNECTING: &str = "Connecting";

/// What the reconcile concluded.
#[derive(Debug)]
pub enum Verdict<'a> {
    /// The spec cannot run: nothing was applied.
    Refused(&'a Problem),
    /// The gateway is applied and watched.
    Watched(Watched<'a>),
}

/// A gateway that is applied and watched.
#[derive(Debug)]
pub struct Watched<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// The connection to its broker.
    pub connection: &'a Connection,
    /// The broker's `host:port`.
    pub address: &'a str,
    /// What liveness concluded.
    pub assessment: &'a Assessment,
    /// Its pod, if any.
    pub pod: Option<&'a PodView>,
    /// Why its radio's stick is missing, when its UsbDevicePin reports no device.
    pub radio_missing: Option<&'a str>,
}

/// Why the gateway's radio is missing: its UsbDevicePin says that no node has
/// the stick. `None` while the pin has not looked yet, or has found it.
#[must_use]
pub fn radio_missing(pin: &UsbDevicePin) -> Option<String> {
    let present = pin.status.as_ref()?.condition(types::DEVICE_PRESENT)?;
    (present.status != "True").then(|| {
        format!(
            "its radio is missing: UsbDevicePin {} says {}",
            pin.name_any(),
            present.message
        )
    })
}

/// How long a new broker connection may take to learn what the broker
/// retained before "do not know yet" replaces a gateway's Ready status.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// Until when a Ready gateway's status stands unchanged: its broker connection
/// is new (a newly elected controller's first seconds, a reconnect) and has not
/// yet delivered the retained availability message. Without this, every
/// takeover would turn every gateway `Ready=False` for a moment, and alerts on
/// Ready would fire for nothing.
#[must_use]
pub fn settling_until(sg: &SensorGateway, w: &Watched<'_>, now: Timestamp) -> Option<Timestamp> {
    let status = sg.status.as_ref()?;
    let not_yet_told = match w.assessment.availability {
        Availability::Unknown => w.connection.message.is_none(),
        Availability::Silent => true,
        Availability::Unrecognized(_) | Availability::Said(..) => false,
    };
    let pod_fine = sg.spec.external || w.pod.is_some_and(|p| p.ready_since.is_some());
    let until = w.connection.since.checked_add(SETTLE).ok()?;
    (status.is_condition_true(types::READY)
        && status.observed_generation == sg.metadata.generation
        && not_yet_told
        && pod_fine
        && w.radio_missing.is_none()
        && now < until)
        .then_some(until)
}

/// The status for `sg`.
#[must_use]
pub fn compute(sg: &SensorGateway, verdict: Verdict<'_>, now: Timestamp) -> SensorGatewayStatus {
    let generation = sg.metadata.generation;
    let previous = sg.status.clone().unwrap_or_default();
    if let Verdict::Watched(w) = &verdict
        && settling_until(sg, w, now).is_some()
    {
        return previous;
    }
    let mut status = SensorGatewayStatus {
        observed_generation: generation,
        conditions: previous.conditions.clone(),
        last_restart: previous.last_restart.clone(),
        last_failover: previous.last_failover.clone(),
        ..SensorGatewayStatus::default()
    };
    let conditions = &mut status.conditions;
    let outcome = match verdict {
        Verdict::Refused(problem) => {
            for t in [
                types::BROKER_CONNECTED,
                types::GATEWAY_ONLINE,
                types::SENSORS_FRESH,
            ] {
                remove_condition(conditions, t);
            }
            Outcome::stalled(problem.reason, problem.message.clone())
        }
        Verdict::Watched(w) => {
            let cond = |t: &str, s: ConditionStatus, r: &str, m: &str| {
                new_condition(t, s, r, m, generation, now)
            };
            let (broker_status, broker_reason, broker_message) =
                match (w.connection.connected, &w.connection.message) {
                    (true, _) => (
                        ConditionStatus::True,
                        reasons::CONNECTED,
                        format!("connected to {}", w.address),
                    ),
                    (false, None) => (
                        ConditionStatus::Unknown,
                        CONNECTING,
                        format!("connecting to {}", w.address),
                    ),
                    (false, Some(m)) => (
                        ConditionStatus::False,
                        reasons::BROKER_UNREACHABLE,
                        m.clone(),
                    ),
                };
            set_condition(
                conditions,
                cond(
                    types::BROKER_CONNECTED,
                    broker_status,
                    broker_reason,
                    &broker_message,
                ),
            );
            let topic = &w.plan.availability_topic;
            let (s, r, m) = match &w.assessment.availability {
                Availability::Unknown => (
                    ConditionStatus::Unknown,
                    broker_reason,
                    format!("cannot tell: {broker_message}"),
                ),
                Availability::Silent => (
                    ConditionStatus::Unknown,
                    reasons::NO_AVAILABILITY_MESSAGE,
                    format!("nothing on {topic} yet"),
                ),
                Availability::Unrecognized(p) => (
                    ConditionStatus::Unknown,
                    reasons::NO_AVAILABILITY_MESSAGE,
                    format!(
                        "{topic} says {p:?}, which is neither {:?} nor {:?}: set availability.onlinePayload and offlinePayload",
                        w.plan.payloads.online, w.plan.payloads.offline
                    ),
                ),
                Availability::Said(true, _) => (
                    ConditionStatus::True,
                    reasons::ONLINE,
                    format!("{topic} says online"),
                ),
                Availability::Said(false, _) => (
                    ConditionStatus::False,
                    reasons::OFFLINE,
                    format!("{topic} says offline"),
                ),
            };
            set_condition(conditions, cond(types::GATEWAY_ONLINE, s, r, &m));
            // The count for `kubectl get`'s Stale column: only when it is known.
            status.stale_sensors = (!w.plan.sensors.is_empty() && w.connection.connected)
                .then(|| i32::try_from(w.assessment.stale.len()).unwrap_or(i32::MAX));
            if w.plan.sensors.is_empty() {
                remove_condition(conditions, types::SENSORS_FRESH);
            } else if !w.connection.connected {
                set_condition(
                    conditions,
                    cond(
                        types::SENSORS_FRESH,
                        ConditionStatus::Unknown,
                        broker_reason,
                        &format!("cannot tell: {broker_message}"),
                    ),
                );
            } else if w.assessment.stale.is_empty() {
                let m = format!("all {} sensors reported in time", w.plan.sensors.len());
                set_condition(
                    conditions,
                    cond(
                        types::SENSORS_FRESH,
                        ConditionStatus::True,
                        reasons::ALL_SENSORS_REPORTING,
                        &m,
                    ),
                );
            } else {
                let m = stale_message(&w.assessment.stale, w.plan);
                set_condition(
                    conditions,
                    cond(
                        types::SENSORS_FRESH,
                        ConditionStatus::False,
                        reasons::SENSOR_STALE,
                        &m,
                    ),
                );
            }
            status.online = match w.assessment.availability {
                Availability::Said(online, _) => Some(online),
                _ => None,
            };
            status.since = match w.assessment.availability {
                Availability::Said(_, since) => Some(Time(since)),
                _ => None,
            };
            status.node = w.pod.and_then(|p| p.node.clone());
            status.pod = w.pod.map(|p| p.name.clone());
            status.broker = Some(BrokerStatus {
                connected: w.connection.connected,
                since: Some(Time(truncate(w.connection.since))),
                message: w.connection.message.clone(),
            });
            status.sensors = w
                .assessment
                .sensors
                .iter()
                .cloned()
                .map(|mut s| {
                    s.last_seen = s.last_seen.map(|t| Time(truncate(t.0)));
                    s
                })
                .collect();
            outcome(sg, &w, &broker_message)
        }
    };
    set_outcome(conditions, &outcome, generation, now);
    status
}

/// `FailoverReady`: `False` while a lost node blocks moving the gateway (or
/// Manual mode only reports it); otherwise what its data's storage means for a
/// node loss (`standing`); no such condition when neither says anything (an
/// external gateway, a claim not there yet).
pub fn failover_blocked(
    status: &mut SensorGatewayStatus,
    standing: Option<&homelab_kit::failover::Readiness>,
    blocked: Option<&homelab_kit::failover::workload::Block>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let (state, reason, message) = match (blocked, standing) {
        (Some(b), _) => (ConditionStatus::False, b.reason, b.message.as_str()),
        (None, Some(r)) => (r.possible.into(), r.reason, r.message.as_str()),
        (None, None) => {
            remove_condition(&mut status.conditions, types::FAILOVER_READY);
            return;
        }
    };
    set_condition(
        &mut status.conditions,
        new_condition(
            types::FAILOVER_READY,
            state,
            reason,
            message,
            generation,
            now,
        ),
    );
}

fn outcome(sg: &SensorGateway, w: &Watched<'_>, broker_message: &str) -> Outcome {
    let external = sg.spec.external;
    if !external {
        match w.pod {
            None => {
                return Outcome::progressing(
                    reasons::POD_NOT_READY,
                    "waiting for the gateway's pod to be created",
                );
            }
            Some(p) if p.ready_since.is_none() => {
                return Outcome::progressing(
                    reasons::POD_NOT_READY,
                    format!("waiting for pod {} to become ready", p.name),
                );
            }
            Some(_) => {}
        }
    }
    if let Some(why) = w.radio_missing {
        // Whatever the gateway says: without its coordinator it controls nothing.
        return Outcome::progressing(reasons::RADIO_MISSING, why);
    }
    let topic = &w.plan.availability_topic;
    match &w.assessment.availability {
        Availability::Unknown if w.connection.message.is_none() => {
            Outcome::progressing(CONNECTING, broker_message)
        }
        Availability::Unknown => Outcome::progressing(reasons::BROKER_UNREACHABLE, broker_message),
        Availability::Silent | Availability::Unrecognized(_) => Outcome::progressing(
            reasons::NO_AVAILABILITY_MESSAGE,
            format!("waiting for the gateway to say online on {topic}"),
        ),
        Availability::Said(false, _) => {
            let next = match (w.assessment.restart_due, external) {
                (_, true) => "it runs outside the cluster: check the device".to_owned(),
                (Some(due), false)
                    if sg.spec.failover.mode == homelab_api::failover::FailoverMode::Automatic =>
                {
                    format!(
                        "restarting its pod at {} unless it comes back",
                        truncate(due)
                    )
                }
                (_, false) => "failover mode is not Automatic: restart it by hand".to_owned(),
            };
            Outcome::progressing(reasons::OFFLINE, format!("{topic} says offline; {next}"))
        }
        Availability::Said(true, _) => {
            let place = w.pod.and_then(|p| p.node.as_deref()).map_or_else(
                || "outside the cluster".to_owned(),
                |n| format!("on node {n}"),
            );
            Outcome::ready(reasons::ONLINE, format!("online {place}"))
        }
    }
}

/// "tomato-bed silent for 12m (staleAfter 10m); attic never heard (staleAfter 5m)"
fn stale_message(stale: &[(String, Option<std::time::Duration>)], plan: &Plan) -> String {
    stale
        .iter()
        .map(|(name, silent)| {
            let after = plan
                .sensors
                .iter()
                .find(|s| &s.name == name)
                .map_or_else(String::new, |s| {
                    format!(" (staleAfter {})", human(s.stale_after))
                });
            match silent {
                Some(d) => format!("{name} silent for {}{after}", human(*d)),
                None => format!("{name} never heard{after}"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn human(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

/// Timestamps in status have second precision on the wire; truncating here
/// makes what is written compare equal to what is read back.
fn truncate(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::gateway;
    use crate::liveness::{Inputs, assess};
    use crate::mqtt::{Observation, Seen};
    use crate::validate::validate;
    use homelab_api::ConditionedStatus;
    use serde_json::json;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    /// A connection opened at `since` that has heard nothing yet, for a
    /// gateway with `sensors` listed sensors.
    fn heard_nothing(since: Timestamp, sensors: usize) -> Observation {
        Observation {
            connection: Connection {
                connected: false,
                since,
                message: None,
            },
            availability: None,
            sensors: vec![None; sensors],
        }
    }

    /// The gateway's pod, ready on pi4-2 since ts(0).
    fn ready_pod() -> PodView {
        PodView {
            name: "z-1".into(),
            uid: "u".into(),
            node: Some("pi4-2".into()),
            ready_since: Some(ts(0)),
        }
    }

    fn watched(
        payload: &str,
        connected: bool,
        sensor_at: Option<i64>,
        now: i64,
    ) -> SensorGatewayStatus {
        watched_with_radio(payload, connected, sensor_at, now, None)
    }

    fn watched_with_radio(
        payload: &str,
        connected: bool,
        sensor_at: Option<i64>,
        now: i64,
        radio_missing: Option<&str>,
    ) -> SensorGatewayStatus {
        let sg = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "sensors": [{"name": "tomato-bed", "topic": "zigbee2mqtt/moisture", "staleAfter": "10m"}]}),
        );
        let connection = Connection {
            connected,
            since: ts(0),
            message: (!connected).then(|| "cannot reach the broker at b:1883: refused".into()),
        };
        let observed = Observation {
            connection,
            availability: Some(Seen {
                at: ts(1),
                payload: payload.into(),
                changed_at: ts(1),
            }),
            sensors: vec![sensor_at.map(ts)],
        };
        assessed(&sg, &observed, Some(&ready_pod()), radio_missing, now).1
    }

    /// What the status of `sg` says at `now`, given what the hub heard
    /// (`observed`) and its pod, and until when a new connection keeps the
    /// status as it was.
    fn assessed(
        sg: &SensorGateway,
        observed: &Observation,
        pod: Option<&PodView>,
        radio_missing: Option<&str>,
        now: i64,
    ) -> (Option<Timestamp>, SensorGatewayStatus) {
        let plan = validate(sg).unwrap();
        let assessment = assess(Inputs {
            plan: &plan,
            observed,
            previous: sg.status.as_ref(),
            pod,
            may_restart: true,
            now: ts(now),
        });
        let w = Watched {
            plan: &plan,
            connection: &observed.connection,
            address: "b:1883",
            assessment: &assessment,
            pod,
            radio_missing,
        };
        (
            settling_until(sg, &w, ts(now)),
            compute(sg, Verdict::Watched(w), ts(now)),
        )
    }

    #[test]
    fn a_new_connection_keeps_a_ready_status_until_it_learns_or_settles() {
        let mut sg = gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "sensors": [{"name": "tomato-bed", "topic": "zigbee2mqtt/moisture", "staleAfter": "10m"}]}),
        );
        sg.metadata.generation = Some(3);
        // The previous leader's status: Ready.
        sg.status = Some(watched("online", true, Some(5), 10));
        // The new leader's connection, just opened at ts(100): nothing known yet.
        let observed = heard_nothing(ts(100), 1);
        let pod = ready_pod();
        let at = |now: i64| assessed(&sg, &observed, Some(&pod), None, now);
        let (until, kept) = at(103);
        assert_eq!(until, Some(ts(110)));
        assert_eq!(Some(&kept), sg.status.as_ref(), "nothing to write");
        let (until, after) = at(111);
        assert_eq!(until, None);
        let ready = after.condition(types::READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", CONNECTING)
        );
    }

    #[test]
    fn a_gateway_without_its_stick_is_not_ready_whatever_it_says() {
        let pin: UsbDevicePin = serde_json::from_value(json!({
            "apiVersion": "homelab.home.arpa/v1alpha1", "kind": "UsbDevicePin",
            "metadata": {"name": "sonoff", "namespace": "home"},
            "spec": {"vendorId": "10c4", "productId": "ea60"},
            "status": {"conditions": [{
                "type": "DevicePresent", "status": "False", "reason": "DeviceNotFound",
                "message": "no node agent reports USB device 10c4:ea60",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }]},
        }))
        .unwrap();
        let why = radio_missing(&pin).unwrap();
        assert_eq!(
            why,
            "its radio is missing: UsbDevicePin sonoff says no node agent reports USB device 10c4:ea60"
        );
        let s = watched_with_radio("online", true, Some(5), 10, Some(&why));
        let ready = s.condition(types::READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reasons::RADIO_MISSING)
        );
        assert_eq!(ready.message, why);
    }

    #[test]
    fn a_pin_that_has_not_looked_yet_is_not_a_missing_radio() {
        let pin: UsbDevicePin = serde_json::from_value(json!({
            "apiVersion": "homelab.home.arpa/v1alpha1", "kind": "UsbDevicePin",
            "metadata": {"name": "sonoff", "namespace": "home"},
            "spec": {"vendorId": "10c4", "productId": "ea60"},
        }))
        .unwrap();
        assert_eq!(radio_missing(&pin), None);
    }

    #[test]
    fn online_and_fresh_is_ready() {
        let s = watched("online", true, Some(5), 10);
        assert!(s.is_condition_true(types::READY));
        assert!(s.is_condition_true(types::GATEWAY_ONLINE));
        assert!(s.is_condition_true(types::SENSORS_FRESH));
        assert!(s.is_condition_true(types::BROKER_CONNECTED));
        assert_eq!(s.online, Some(true));
        assert_eq!(s.node.as_deref(), Some("pi4-2"));
        assert_eq!(s.observed_generation, Some(3));
    }

    #[test]
    fn a_stale_sensor_is_named_but_the_gateway_stays_ready() {
        let s = watched("online", true, Some(5), 900);
        let c = s.condition(types::SENSORS_FRESH).unwrap();
        assert_eq!(c.status, "False");
        assert_eq!(c.message, "tomato-bed silent for 14m (staleAfter 10m)");
        assert!(s.is_condition_true(types::READY));
        assert_eq!(s.stale_sensors, Some(1), "kubectl get shows the count");
    }

    #[test]
    fn the_stale_count_is_zero_when_fresh_and_unset_when_unknown() {
        assert_eq!(watched("online", true, Some(5), 10).stale_sensors, Some(0));
        assert_eq!(watched("online", false, Some(5), 900).stale_sensors, None);
        // The same observation twice: the same status, so nothing is written.
        assert_eq!(
            watched("online", true, Some(5), 900),
            watched("online", true, Some(5), 900)
        );
    }

    #[test]
    fn offline_is_not_ready_and_says_when_it_restarts() {
        let s = watched("offline", true, None, 10);
        let ready = s.condition(types::READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reasons::OFFLINE)
        );
        assert!(
            ready.message.contains("restarting its pod at"),
            "{}",
            ready.message
        );
        assert_eq!(s.online, Some(false));
    }

    #[test]
    fn broker_away_is_unknown_not_offline() {
        let s = watched("offline", false, None, 10);
        assert_eq!(
            s.condition(types::BROKER_CONNECTED).unwrap().status,
            "False"
        );
        assert_eq!(
            s.condition(types::GATEWAY_ONLINE).unwrap().status,
            "Unknown"
        );
        assert_eq!(s.condition(types::SENSORS_FRESH).unwrap().status, "Unknown");
        assert_eq!(s.online, None);
        assert_eq!(
            s.condition(types::READY).unwrap().reason,
            reasons::BROKER_UNREACHABLE
        );
    }

    #[test]
    fn connecting_is_unknown_not_unreachable() {
        let sg = gateway("z", json!({"preset": "Zigbee2MQTT"}));
        let (_, s) = assessed(&sg, &heard_nothing(ts(0), 0), None, None, 1);
        let c = s.condition(types::BROKER_CONNECTED).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("Unknown", CONNECTING)
        );
        assert_eq!(c.message, "connecting to b:1883");
    }

    #[test]
    fn refused_is_stalled_and_drops_the_watch_conditions() {
        let sg = gateway("z", json!({"preset": "Zigbee2MQTT"}));
        let problem = Problem {
            reason: "SecretNotFound",
            message: "Secret mqtt not found".into(),
        };
        let s = compute(&sg, Verdict::Refused(&problem), ts(0));
        assert!(s.is_condition_true(types::STALLED));
        assert!(s.condition(types::GATEWAY_ONLINE).is_none());
    }
}
