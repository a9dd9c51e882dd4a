//! Editing a condition list: pure, with the clock as an argument. The one rule
//! that makes a steady state write nothing: `lastTransitionTime` changes only
//! when a condition's `status` changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::ConditionStatus;

/// Longest `message` the API server accepts on a condition.
pub const MAX_MESSAGE_BYTES: usize = 32_768;
/// Longest `reason` the API server accepts on a condition.
const MAX_REASON_BYTES: usize = 1_024;

/// Now, to the second: the precision `lastTransitionTime` has on the wire,
/// so that what is written compares equal to what is read back.
#[must_use]
pub fn now() -> Timestamp {
    truncate_to_second(Timestamp::now())
}

fn truncate_to_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// Builds a condition. `reason` is made to fit the API's pattern
/// (CamelCase letters, digits, `_`, `,`, `:`) and `message` its size limit.
#[must_use]
pub fn new_condition(
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.as_str().to_owned(),
        reason: sanitize_reason(reason),
        message: truncate(message, MAX_MESSAGE_BYTES).to_owned(),
        observed_generation,
        last_transition_time: Time(truncate_to_second(now)),
    }
}

/// Puts `new` into `conditions`, replacing the condition of the same type.
///
/// The old `lastTransitionTime` is kept unless `status` changes, whatever
/// happens to `reason`, `message` or `observedGeneration`. Returns whether
/// anything changed.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            if *old == new {
                false
            } else {
                *old = new;
                true
            }
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// Removes the condition of the given type. Returns whether there was one.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

/// The condition of the given type.
#[must_use]
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of the given type is present with status `True`.
#[must_use]
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True.as_str())
}

/// Whether two condition lists say the same thing: same types with equal
/// fields, in any order. Timestamps are compared too — [`set_condition`]
/// keeps them unchanged when nothing happened, so equal means "no write".
#[must_use]
pub fn conditions_equal(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len() && a.iter().all(|x| find_condition(b, &x.type_) == Some(x))
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Makes a reason match `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`:
/// drops other characters, capitalising the letter after a dropped one
/// ("no node fits" → "NoNodeFits").
pub fn sanitize_reason(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut upper_next = true;
    for ch in reason.chars() {
        let allowed = ch.is_ascii_alphanumeric() || matches!(ch, '_' | ',' | ':');
        if !allowed || (out.is_empty() && !ch.is_ascii_alphabetic()) {
            upper_next = true;
            continue;
        }
        if upper_next {
            out.push(ch.to_ascii_uppercase());
        } else {
            out.push(ch);
        }
        upper_next = false;
    }
    while out.ends_with([',', ':']) {
        out.pop();
    }
    let out = truncate(&out, MAX_REASON_BYTES).to_owned();
    if out.is_empty() {
        "Unknown".to_owned()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::types::READY;
    use k8s_openapi::jiff::SignedDuration;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn ready(status: ConditionStatus, reason: &str, generation: i64, at: Timestamp) -> Condition {
        new_condition(READY, status, reason, "msg", Some(generation), at)
    }

    #[test]
    fn new_condition_is_added() {
        let mut conds = vec![];
        assert!(set_condition(
            &mut conds,
            ready(ConditionStatus::True, "Running", 1, t(0))
        ));
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].status, "True");
        assert_eq!(conds[0].last_transition_time.0, t(0));
    }

    #[test]
    fn same_status_keeps_transition_time_and_reports_no_change() {
        let mut conds = vec![ready(ConditionStatus::True, "Running", 1, t(0))];
        assert!(!set_condition(
            &mut conds,
            ready(ConditionStatus::True, "Running", 1, t(60))
        ));
        assert_eq!(conds[0].last_transition_time.0, t(0));
    }

    #[test]
    fn new_reason_or_generation_keeps_transition_time_but_changes() {
        let mut conds = vec![ready(ConditionStatus::False, "Pending", 1, t(0))];
        assert!(set_condition(
            &mut conds,
            ready(ConditionStatus::False, "NoNode", 2, t(60))
        ));
        assert_eq!(conds[0].reason, "NoNode");
        assert_eq!(conds[0].observed_generation, Some(2));
        assert_eq!(conds[0].last_transition_time.0, t(0));
    }

    #[test]
    fn status_change_moves_transition_time() {
        let mut conds = vec![ready(ConditionStatus::False, "Pending", 1, t(0))];
        assert!(set_condition(
            &mut conds,
            ready(ConditionStatus::True, "Running", 1, t(60))
        ));
        assert_eq!(conds[0].last_transition_time.0, t(60));
    }

    #[test]
    fn other_types_are_untouched() {
        let other = new_condition("Stale", ConditionStatus::False, "Fresh", "", None, t(0));
        let mut conds = vec![other.clone()];
        set_condition(&mut conds, ready(ConditionStatus::True, "Running", 1, t(5)));
        assert_eq!(conds[0], other);
        assert_eq!(conds.len(), 2);
    }

    #[test]
    fn timestamps_are_whole_seconds() {
        let c = new_condition(
            READY,
            ConditionStatus::True,
            "R",
            "",
            None,
            t(0) + SignedDuration::from_millis(750),
        );
        assert_eq!(c.last_transition_time.0, t(0));
        assert_eq!(now().subsec_nanosecond(), 0);
    }

    #[test]
    fn reasons_are_made_valid() {
        assert_eq!(sanitize_reason("Running"), "Running");
        assert_eq!(sanitize_reason("no node fits"), "NoNodeFits");
        assert_eq!(sanitize_reason("usb-device_missing"), "UsbDevice_missing");
        assert_eq!(sanitize_reason("42abc:"), "Abc");
        assert_eq!(sanitize_reason("!!!"), "Unknown");
        assert_eq!(sanitize_reason(""), "Unknown");
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let c = new_condition(READY, ConditionStatus::True, "R", &long, None, t(0));
        assert!(c.message.len() <= MAX_MESSAGE_BYTES);
        assert!(c.message.chars().all(|ch| ch == 'é'));
    }

    #[test]
    fn conditions_compare_in_any_order() {
        let a = ready(ConditionStatus::True, "Running", 1, t(0));
        let b = new_condition("Stale", ConditionStatus::False, "Fresh", "", None, t(0));
        assert!(conditions_equal(
            &[a.clone(), b.clone()],
            &[b.clone(), a.clone()]
        ));
        assert!(!conditions_equal(
            std::slice::from_ref(&a),
            &[a.clone(), b.clone()]
        ));
        let mut a2 = a.clone();
        a2.message = "other".into();
        assert!(!conditions_equal(&[a], &[a2]));
    }
}
