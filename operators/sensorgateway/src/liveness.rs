//! What the gateway and its sensors are doing, and whether to restart it: a
//! pure function of what MQTT said, what the pod looks like, the last status
//! and the clock.
//!
//! The rules, in order:
//! - a broker the operator cannot reach says nothing about the gateways on it:
//!   availability is unknown and nothing is restarted;
//! - `online` is what the availability topic last said (the Last Will
//!   included); `since` moves only when that changes;
//! - a sensor is stale when its topic was silent for longer than `staleAfter`
//!   (counted from the connection's start for one never heard);
//! - a gateway that says offline for `restartAfter`, while its pod is ready and
//!   the broker connected, is restarted (failover mode Automatic only), at most
//!   once per `restartAfter`.

use std::time::Duration;

use homelab_api::sensorgateway::{GatewayRestart, SensorGatewayStatus, SensorStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::mqtt::payload::{interpret, preview};
use crate::mqtt::{Connection, Observation};
use crate::validate::Plan;

/// Restarts in a row on one node after which the gateway is moved off it.
pub const MOVE_AFTER_RESTARTS: i32 = 3;

/// The gateway's pod, as far as liveness cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    /// Pod name.
    pub name: String,
    /// Pod uid, for a delete that cannot hit its replacement.
    pub uid: String,
    /// Node it runs on.
    pub node: Option<String>,
    /// Since when it is Ready, if it is.
    pub ready_since: Option<Timestamp>,
}

/// What the availability topic says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    /// The broker is not connected: nothing can be said.
    Unknown,
    /// Nothing arrived on the topic yet.
    Silent,
    /// Something arrived that is neither payload.
    Unrecognized(String),
    /// Online (`true`) or offline (`false`), since when.
    Said(bool, Timestamp),
}

/// A decision to restart the gateway's pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Restart {
    /// The pod to delete.
    pub pod: PodView,
    /// The record for `status.lastRestart`.
    pub record: GatewayRestart,
}

/// Everything liveness concluded.
#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    /// What the availability topic says.
    pub availability: Availability,
    /// Per-sensor freshness, in spec order.
    pub sensors: Vec<SensorStatus>,
    /// Names of stale sensors, each with how long it has been silent.
    pub stale: Vec<(String, Option<Duration>)>,
    /// Restart the pod now.
    pub restart: Option<Restart>,
    /// Offline, but waiting: when a restart would be due.
    pub restart_due: Option<Timestamp>,
    /// When something will change by itself (a sensor going stale, a restart
    /// falling due): the reconcile should look again then.
    pub next_deadline: Option<Timestamp>,
}

/// Inputs of [`assess`].
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The validated spec.
    pub plan: &'a Plan,
    /// What the hub heard.
    pub observed: &'a Observation,
    /// The status as last written.
    pub previous: Option<&'a SensorGatewayStatus>,
    /// The gateway's pod; none for an external gateway or before it exists.
    pub pod: Option<&'a PodView>,
    /// Whether the operator may restart it (mode Automatic, not external).
    pub may_restart: bool,
    /// Now.
    pub now: Timestamp,
}

/// Assesses the gateway.
#[must_use]
pub fn assess(i: Inputs<'_>) -> Assessment {
    let connection = &i.observed.connection;
    let availability = availability(i);
    let (sensors, stale, sensor_deadline) = sensors(i, connection);
    let (restart, restart_due) = restart(i, &availability);
    let next_deadline = [sensor_deadline, restart_due].into_iter().flatten().min();
    Assessment {
        availability,
        sensors,
        stale,
        restart,
        restart_due,
        next_deadline,
    }
}

fn availability(i: Inputs<'_>) -> Availability {
    if !i.observed.connection.connected {
        return Availability::Unknown;
    }
    let Some(seen) = &i.observed.availability else {
        return Availability::Silent;
    };
    match interpret(&seen.payload, &i.plan.payloads) {
        None => Availability::Unrecognized(preview(&seen.payload)),
        Some(online) => {
            // Across an operator restart the hub's clock starts again; the status
            // remembers since when the gateway has said this.
            let since = match i.previous {
                Some(p) if p.online == Some(online) => {
                    p.since.as_ref().map_or(seen.changed_at, |t| t.0)
                }
                _ => seen.changed_at,
            };
            Availability::Said(online, since)
        }
    }
}

type SensorOutcome = (
    Vec<SensorStatus>,
    Vec<(String, Option<Duration>)>,
    Option<Timestamp>,
);

fn sensors(i: Inputs<'_>, connection: &Connection) -> SensorOutcome {
    let mut statuses = Vec::with_capacity(i.plan.sensors.len());
    let mut stale = Vec::new();
    let mut deadline: Option<Timestamp> = None;
    for (n, sensor) in i.plan.sensors.iter().enumerate() {
        let previous = i
            .previous
            .and_then(|p| p.sensors.iter().find(|s| s.name == sensor.name));
        let heard = i.observed.sensors.get(n).copied().flatten();
        let last_seen = [
            heard,
            previous.and_then(|p| p.last_seen.as_ref().map(|t| t.0)),
        ]
        .into_iter()
        .flatten()
        .max();
        let is_stale = if connection.connected {
            // A sensor never heard is given staleAfter from when listening began.
            let from = last_seen.unwrap_or(connection.since);
            let due = from.checked_add(signed(sensor.stale_after)).unwrap_or(from);
            if i.now < due {
                deadline = Some(deadline.map_or(due, |d| d.min(due)));
                false
            } else {
                true
            }
        } else {
            // Disconnected: silence proves nothing; keep what was last known.
            previous.is_some_and(|p| p.stale)
        };
        if is_stale {
            let silent = last_seen.map(|t| i.now.duration_since(t).unsigned_abs());
            stale.push((sensor.name.clone(), silent));
        }
        statuses.push(SensorStatus {
            name: sensor.name.clone(),
            last_seen: last_seen.map(Time),
            stale: is_stale,
        });
    }
    (statuses, stale, deadline)
}

fn restart(i: Inputs<'_>, availability: &Availability) -> (Option<Restart>, Option<Timestamp>) {
    let Availability::Said(false, offline_since) = availability else {
        return (None, None);
    };
    let Some(pod) = i.pod else {
        return (None, None);
    };
    let Some(ready_since) = pod.ready_since else {
        // Not ready: the Deployment and kubelet are on it; restarting would not help.
        return (None, None);
    };
    let last = i.previous.and_then(|p| p.last_restart.as_ref());
    let from = [
        Some(*offline_since),
        Some(i.observed.connection.since),
        Some(ready_since),
        last.map(|r| r.time.0),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(i.now);
    let due = from
        .checked_add(signed(i.plan.restart_after))
        .unwrap_or(from);
    if i.now < due || !i.may_restart {
        return (None, Some(due));
    }
    // Still the same failure when the last restart was on this node and the
    // gateway has not said anything new since.
    let count = match last {
        Some(r) if r.node == pod.node && *offline_since <= r.time.0 => r.count.saturating_add(1),
        _ => 1,
    };
    let offline_for = i.now.duration_since(*offline_since).unsigned_abs();
    let record = GatewayRestart {
        time: Time(i.now),
        reason: format!(
            "offline over MQTT for {}s while its pod {} was ready",
            offline_for.as_secs(),
            pod.name
        ),
        node: pod.node.clone(),
        count,
        avoided_node: if count >= MOVE_AFTER_RESTARTS {
            pod.node.clone()
        } else {
            last.and_then(|r| r.avoided_node.clone())
        },
    };
    (
        Some(Restart {
            pod: pod.clone(),
            record,
        }),
        None,
    )
}

fn signed(d: Duration) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::try_from(d).unwrap_or(k8s_openapi::jiff::SignedDuration::MAX)
}

/// The node to keep the gateway off: where it was last restarted
/// [`MOVE_AFTER_RESTARTS`] times in a row, if it may run elsewhere.
#[must_use]
pub fn node_to_avoid(previous: Option<&SensorGatewayStatus>, movable: bool) -> Option<String> {
    let last = previous?.last_restart.as_ref()?;
    movable.then(|| last.avoided_node.clone()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::gateway;
    use crate::mqtt::Seen;
    use crate::validate::validate;
    use serde_json::json;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn plan() -> Plan {
        validate(&gateway(
            "z",
            json!({"preset": "Zigbee2MQTT", "availability": {"restartAfter": "60s"},
                   "sensors": [{"name": "tomato-bed", "topic": "zigbee2mqtt/moisture", "staleAfter": "10m"}]}),
        ))
        .unwrap()
    }

    fn observed(connected: bool, payload: Option<(&str, i64)>, sensor: Option<i64>) -> Observation {
        Observation {
            connection: Connection {
                connected,
                since: ts(0),
                message: None,
            },
            availability: payload.map(|(p, at)| Seen {
                at: ts(at),
                payload: p.as_bytes().to_vec(),
                changed_at: ts(at),
            }),
            sensors: vec![sensor.map(ts)],
        }
    }

    fn pod(ready_since: Option<i64>) -> PodView {
        PodView {
            name: "z-abc".into(),
            uid: "p-1".into(),
            node: Some("pi4-1".into()),
            ready_since: ready_since.map(ts),
        }
    }

    fn run(
        obs: &Observation,
        previous: Option<&SensorGatewayStatus>,
        pod: Option<&PodView>,
        now: i64,
    ) -> Assessment {
        assess(Inputs {
            plan: &plan(),
            observed: obs,
            previous,
            pod,
            may_restart: true,
            now: ts(now),
        })
    }

    #[test]
    fn online_when_bridge_state_says_so() {
        let a = run(
            &observed(true, Some((r#"{"state":"online"}"#, 5)), Some(6)),
            None,
            Some(&pod(Some(1))),
            10,
        );
        assert_eq!(a.availability, Availability::Said(true, ts(5)));
        assert!(a.restart.is_none());
        assert!(a.stale.is_empty());
        assert_eq!(a.next_deadline, Some(ts(606)));
    }

    #[test]
    fn offline_restarts_after_the_grace_only() {
        let obs = observed(true, Some(("offline", 100)), Some(99));
        let a = run(&obs, None, Some(&pod(Some(1))), 130);
        assert!(a.restart.is_none());
        assert_eq!(a.restart_due, Some(ts(160)));
        let a = run(&obs, None, Some(&pod(Some(1))), 160);
        let r = a.restart.unwrap();
        assert_eq!(r.record.count, 1);
        assert_eq!(r.record.node.as_deref(), Some("pi4-1"));
        assert!(
            r.record.reason.contains("offline over MQTT for 60s"),
            "{}",
            r.record.reason
        );
    }

    #[test]
    fn no_restart_while_the_broker_is_away_or_the_pod_unready() {
        let a = run(
            &observed(false, Some(("offline", 100)), None),
            None,
            Some(&pod(Some(1))),
            1000,
        );
        assert_eq!(a.availability, Availability::Unknown);
        assert!(a.restart.is_none());
        let a = run(
            &observed(true, Some(("offline", 100)), None),
            None,
            Some(&pod(None)),
            1000,
        );
        assert!(a.restart.is_none());
    }

    #[test]
    fn manual_mode_reports_but_does_not_restart() {
        let obs = observed(true, Some(("offline", 100)), None);
        let a = assess(Inputs {
            plan: &plan(),
            observed: &obs,
            previous: None,
            pod: Some(&pod(Some(1))),
            may_restart: false,
            now: ts(1000),
        });
        assert!(a.restart.is_none());
        assert_eq!(a.restart_due, Some(ts(160)));
    }

    #[test]
    fn one_restart_per_grace_and_counted_per_node() {
        let obs = observed(true, Some(("offline", 100)), None);
        let previous = SensorGatewayStatus {
            online: Some(false),
            since: Some(Time(ts(100))),
            last_restart: Some(GatewayRestart {
                time: Time(ts(160)),
                reason: String::new(),
                node: Some("pi4-1".into()),
                count: 2,
                avoided_node: None,
            }),
            ..SensorGatewayStatus::default()
        };
        // The replacement pod became ready at 170: the next restart is due at 230.
        let a = run(&obs, Some(&previous), Some(&pod(Some(170))), 200);
        assert_eq!(a.restart_due, Some(ts(230)));
        let a = run(&obs, Some(&previous), Some(&pod(Some(170))), 230);
        let third = a.restart.unwrap().record;
        assert_eq!(third.count, 3);
        assert_eq!(third.avoided_node.as_deref(), Some("pi4-1"));
        assert_eq!(node_to_avoid(Some(&previous), true), None);
        let after = SensorGatewayStatus {
            last_restart: Some(third.clone()),
            ..previous.clone()
        };
        assert_eq!(node_to_avoid(Some(&after), true).as_deref(), Some("pi4-1"));
        assert_eq!(node_to_avoid(Some(&after), false), None);
        // Restarted on the new node: the old one stays avoided (no moving back).
        let elsewhere = PodView {
            node: Some("pi4-2".into()),
            ..pod(Some(300))
        };
        let a = run(&obs, Some(&after), Some(&elsewhere), 400);
        let fourth = a.restart.unwrap().record;
        assert_eq!(fourth.count, 1);
        assert_eq!(fourth.avoided_node.as_deref(), Some("pi4-1"));
    }

    #[test]
    fn sensors_go_stale_and_fresh() {
        let a = run(
            &observed(true, Some(("online", 1)), Some(10)),
            None,
            None,
            700,
        );
        assert_eq!(
            a.stale,
            vec![("tomato-bed".to_owned(), Some(Duration::from_secs(690)))]
        );
        assert!(a.sensors[0].stale);
        let a = run(
            &observed(true, Some(("online", 1)), Some(650)),
            None,
            None,
            700,
        );
        assert!(a.stale.is_empty());
        assert_eq!(a.sensors[0].last_seen, Some(Time(ts(650))));
    }

    #[test]
    fn a_sensor_never_heard_gets_its_grace_from_the_connection() {
        let a = run(&observed(true, Some(("online", 1)), None), None, None, 599);
        assert!(a.stale.is_empty());
        assert_eq!(a.next_deadline, Some(ts(600)));
        let a = run(&observed(true, Some(("online", 1)), None), None, None, 600);
        assert_eq!(a.stale, vec![("tomato-bed".to_owned(), None)]);
    }

    #[test]
    fn since_survives_an_operator_restart() {
        let previous = SensorGatewayStatus {
            online: Some(true),
            since: Some(Time(ts(-5000))),
            ..SensorGatewayStatus::default()
        };
        let a = run(
            &observed(true, Some(("online", 50)), None),
            Some(&previous),
            None,
            60,
        );
        assert_eq!(a.availability, Availability::Said(true, ts(-5000)));
    }

    #[test]
    fn unknown_payloads_are_shown() {
        let a = run(&observed(true, Some(("booting", 5)), None), None, None, 6);
        assert_eq!(a.availability, Availability::Unrecognized("booting".into()));
    }
}
