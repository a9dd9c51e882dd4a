//! `status.lastFailover`: started when the operator acts, completed when the
//! workload is Ready on another node. Pure.

use homelab_api::failover::FailoverRecord;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The record of a failover starting now from `from`.
#[must_use]
pub fn started(
    from: &str,
    reason: &str,
    message: &str,
    fenced: bool,
    to: Option<&str>,
    now: Timestamp,
) -> FailoverRecord {
    FailoverRecord {
        from_node: Some(from.to_owned()),
        to_node: to.map(str::to_owned),
        time: Time(now),
        reason: reason.to_owned(),
        message: Some(message.to_owned()),
        fenced,
        duration_millis: None,
    }
}

/// The record completed, when the workload is now Ready on `ready_on`, another
/// node than the one it left. The duration counts from `lost_since` (the lost
/// node's last heartbeat) when known, else from when the operator acted.
#[must_use]
pub fn completed(
    record: &FailoverRecord,
    ready_on: Option<&str>,
    lost_since: Option<Timestamp>,
    now: Timestamp,
) -> Option<FailoverRecord> {
    if record.duration_millis.is_some() {
        return None;
    }
    let node = ready_on?;
    if record.from_node.as_deref() == Some(node) {
        return None;
    }
    if record.to_node.as_deref().is_some_and(|to| to != node) {
        return None;
    }
    let start = lost_since
        .filter(|s| *s <= record.time.0)
        .unwrap_or(record.time.0);
    let millis = now.duration_since(start).as_millis();
    Some(FailoverRecord {
        to_node: Some(node.to_owned()),
        duration_millis: Some(i64::try_from(millis).unwrap_or(i64::MAX)),
        ..record.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn completes_once_ready_elsewhere_counting_from_the_last_heartbeat() {
        let r = started("pi4-2", "NodeUnreachable", "m", false, None, t(40));
        assert_eq!(completed(&r, None, Some(t(5)), t(50)), None);
        assert_eq!(completed(&r, Some("pi4-2"), Some(t(5)), t(50)), None);
        let done = completed(&r, Some("pi4-3"), Some(t(5)), t(50)).unwrap();
        assert_eq!(done.to_node.as_deref(), Some("pi4-3"));
        assert_eq!(done.duration_millis, Some(45_000));
        assert_eq!(completed(&done, Some("pi4-3"), Some(t(5)), t(60)), None);
    }

    #[test]
    fn without_the_heartbeat_it_counts_from_the_action_and_waits_for_the_named_target() {
        let r = started("pi4-2", "DeviceMoved", "m", false, Some("pi4-3"), t(40));
        assert_eq!(completed(&r, Some("celeron-1"), None, t(50)), None);
        let done = completed(&r, Some("pi4-3"), None, t(52)).unwrap();
        assert_eq!(done.duration_millis, Some(12_000));
    }
}
