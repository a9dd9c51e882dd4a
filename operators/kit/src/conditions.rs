//! Status conditions in the Kubernetes convention, and the kstatus trio
//! `Ready` / `Reconciling` / `Stalled`.
//!
//! Everything here is pure: it edits a `Vec<Condition>` and takes the clock as
//! an argument. The one rule that makes a steady state write nothing:
//! `lastTransitionTime` changes only when a condition's `status` changes.
//!
//! `Reconciling` and `Stalled` have abnormal-true polarity: they are present
//! (with `status: "True"`) while they hold and removed afterwards, as Flux's
//! own controllers do; `Ready` is always present.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The summary condition: `True` when the object does what its spec asks.
pub const READY: &str = "Ready";
/// kstatus: the controller is working towards the spec.
pub const RECONCILING: &str = "Reconciling";
/// kstatus: the controller cannot make progress without a person.
pub const STALLED: &str = "Stalled";

/// Reason of `Stalled`: the API server refused an object the controller built
/// from the spec (the message is the API server's, naming the field).
pub const CHILD_REFUSED: &str = "ChildRefused";
/// Reason of `Stalled`: a hostPath volume outside what the administrator
/// allows (see [`crate::settings::AllowedHostPaths`]).
pub const HOST_PATH_NOT_ALLOWED: &str = "HostPathNotAllowed";

/// Longest `message` the API server accepts on a condition.
const MAX_MESSAGE_BYTES: usize = 32_768;
/// Longest `reason` the API server accepts on a condition.
const MAX_REASON_BYTES: usize = 1_024;

/// A condition's `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `"True"`
    True,
    /// `"False"`
    False,
    /// `"Unknown"`
    Unknown,
}

impl Status {
    /// The wire form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Status {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

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
    status: Status,
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
    find_condition(conditions, type_).is_some_and(|c| c.status == Status::True.as_str())
}

/// Whether two condition lists say the same thing: same types with equal
/// fields, in any order. Timestamps are compared too — [`set_condition`]
/// keeps them unchanged when nothing happened, so equal means "no write".
#[must_use]
pub fn conditions_equal(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len() && a.iter().all(|x| find_condition(b, &x.type_) == Some(x))
}

/// What one reconcile concluded, in kstatus terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything the spec asks for is in place: `Ready=True`.
    Ready {
        /// CamelCase reason, e.g. `Running`.
        reason: String,
        /// For a person, e.g. "running on node pi-3".
        message: String,
    },
    /// Work is under way and should finish without help:
    /// `Ready=False` and `Reconciling=True`.
    Progressing {
        /// CamelCase reason, e.g. `RolloutInProgress`.
        reason: String,
        /// For a person, e.g. "waiting for 1 pod to become ready".
        message: String,
    },
    /// Nothing will change until a person acts: `Ready=False` and
    /// `Stalled=True`.
    Stalled {
        /// CamelCase reason, e.g. `SecretNotFound`.
        reason: String,
        /// What to do, e.g. "Secret mqtt-credentials not found in namespace home".
        message: String,
    },
}

impl Outcome {
    /// Shorthand for [`Outcome::Ready`].
    pub fn ready(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Ready {
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`Outcome::Progressing`].
    pub fn progressing(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Progressing {
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`Outcome::Stalled`].
    pub fn stalled(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Stalled {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Writes `Ready`, `Reconciling` and `Stalled` for an outcome, each stamped
/// with `observedGeneration = generation` (the `metadata.generation` the
/// reconcile read). Set `status.observedGeneration` to the same value.
/// Returns whether anything changed.
pub fn set_outcome(
    conditions: &mut Vec<Condition>,
    outcome: &Outcome,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let cond = |type_, status, reason: &str, message: &str| {
        new_condition(type_, status, reason, message, generation, now)
    };
    match outcome {
        Outcome::Ready { reason, message } => {
            let a = set_condition(conditions, cond(READY, Status::True, reason, message));
            let b = remove_condition(conditions, RECONCILING);
            let c = remove_condition(conditions, STALLED);
            a | b | c
        }
        Outcome::Progressing { reason, message } => {
            let a = set_condition(conditions, cond(READY, Status::False, reason, message));
            let b = set_condition(conditions, cond(RECONCILING, Status::True, reason, message));
            let c = remove_condition(conditions, STALLED);
            a | b | c
        }
        Outcome::Stalled { reason, message } => {
            let a = set_condition(conditions, cond(READY, Status::False, reason, message));
            let b = remove_condition(conditions, RECONCILING);
            let c = set_condition(conditions, cond(STALLED, Status::True, reason, message));
            a | b | c
        }
    }
}

/// What a kstatus reader (Flux, Argo CD, `kubectl wait`) makes of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KStatus {
    /// The controller has seen the latest spec and the object is `Ready`.
    Current,
    /// The controller has not caught up, or is still working.
    InProgress,
    /// The controller has seen the latest spec and says it is `Stalled`.
    Failed,
}

/// Reads conditions the way kstatus does: a status about an older
/// generation (object-level or on the conditions) is `InProgress`.
#[must_use]
pub fn kstatus(
    generation: Option<i64>,
    observed_generation: Option<i64>,
    conditions: &[Condition],
) -> KStatus {
    if generation.is_some() && observed_generation != generation {
        return KStatus::InProgress;
    }
    let fresh =
        |c: &&Condition| c.observed_generation.is_none() || c.observed_generation == generation;
    let holds = |type_| {
        find_condition(conditions, type_)
            .filter(fresh)
            .is_some_and(|c| c.status == Status::True.as_str())
    };
    if holds(STALLED) {
        KStatus::Failed
    } else if holds(RECONCILING) {
        KStatus::InProgress
    } else if holds(READY) {
        KStatus::Current
    } else {
        KStatus::InProgress
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
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
pub(crate) fn sanitize_reason(reason: &str) -> String {
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
    use k8s_openapi::jiff::SignedDuration;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn ready(status: Status, reason: &str, generation: i64, at: Timestamp) -> Condition {
        new_condition(READY, status, reason, "msg", Some(generation), at)
    }

    #[test]
    fn new_condition_is_added() {
        let mut conds = vec![];
        assert!(set_condition(
            &mut conds,
            ready(Status::True, "Running", 1, t(0))
        ));
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].status, "True");
        assert_eq!(conds[0].last_transition_time.0, t(0));
    }

    #[test]
    fn same_status_keeps_transition_time_and_reports_no_change() {
        let mut conds = vec![ready(Status::True, "Running", 1, t(0))];
        assert!(!set_condition(
            &mut conds,
            ready(Status::True, "Running", 1, t(60))
        ));
        assert_eq!(conds[0].last_transition_time.0, t(0));
    }

    #[test]
    fn new_reason_or_generation_keeps_transition_time_but_changes() {
        let mut conds = vec![ready(Status::False, "Pending", 1, t(0))];
        assert!(set_condition(
            &mut conds,
            ready(Status::False, "NoNode", 2, t(60))
        ));
        assert_eq!(conds[0].reason, "NoNode");
        assert_eq!(conds[0].observed_generation, Some(2));
        assert_eq!(conds[0].last_transition_time.0, t(0));
    }

    #[test]
    fn status_change_moves_transition_time() {
        let mut conds = vec![ready(Status::False, "Pending", 1, t(0))];
        assert!(set_condition(
            &mut conds,
            ready(Status::True, "Running", 1, t(60))
        ));
        assert_eq!(conds[0].last_transition_time.0, t(60));
    }

    #[test]
    fn other_types_are_untouched() {
        let other = new_condition("Stale", Status::False, "Fresh", "", None, t(0));
        let mut conds = vec![other.clone()];
        set_condition(&mut conds, ready(Status::True, "Running", 1, t(5)));
        assert_eq!(conds[0], other);
        assert_eq!(conds.len(), 2);
    }

    #[test]
    fn timestamps_are_whole_seconds() {
        let c = new_condition(
            READY,
            Status::True,
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
        let c = new_condition(READY, Status::True, "R", &long, None, t(0));
        assert!(c.message.len() <= MAX_MESSAGE_BYTES);
        assert!(c.message.chars().all(|ch| ch == 'é'));
    }

    #[test]
    fn outcome_ready_clears_abnormal_conditions() {
        let mut conds = vec![];
        set_outcome(
            &mut conds,
            &Outcome::progressing("Deploying", "1 pod starting"),
            Some(3),
            t(0),
        );
        assert!(is_true(&conds, RECONCILING));
        assert!(!is_true(&conds, READY));
        assert!(set_outcome(
            &mut conds,
            &Outcome::ready("Running", "on pi-3"),
            Some(3),
            t(10)
        ));
        assert!(is_true(&conds, READY));
        assert!(find_condition(&conds, RECONCILING).is_none());
        assert!(find_condition(&conds, STALLED).is_none());
        assert!(conds.iter().all(|c| c.observed_generation == Some(3)));
        assert_eq!(
            find_condition(&conds, READY)
                .unwrap()
                .last_transition_time
                .0,
            t(10)
        );
    }

    #[test]
    fn outcome_stalled_sets_stalled_and_not_ready() {
        let mut conds = vec![];
        set_outcome(&mut conds, &Outcome::ready("Running", ""), Some(1), t(0));
        set_outcome(
            &mut conds,
            &Outcome::stalled("SecretNotFound", "create it"),
            Some(2),
            t(5),
        );
        assert!(is_true(&conds, STALLED));
        assert_eq!(find_condition(&conds, READY).unwrap().status, "False");
        assert_eq!(
            find_condition(&conds, READY).unwrap().reason,
            "SecretNotFound"
        );
        assert!(find_condition(&conds, RECONCILING).is_none());
    }

    #[test]
    fn repeating_an_outcome_changes_nothing() {
        let mut conds = vec![];
        let outcome = Outcome::stalled("NoEligibleNode", "no amd64 node");
        assert!(set_outcome(&mut conds, &outcome, Some(4), t(0)));
        let before = conds.clone();
        assert!(!set_outcome(&mut conds, &outcome, Some(4), t(600)));
        assert_eq!(conds, before);
    }

    #[test]
    fn conditions_compare_in_any_order() {
        let a = ready(Status::True, "Running", 1, t(0));
        let b = new_condition("Stale", Status::False, "Fresh", "", None, t(0));
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

    #[test]
    fn kstatus_follows_observed_generation() {
        let mut conds = vec![];
        set_outcome(&mut conds, &Outcome::ready("Running", ""), Some(2), t(0));
        assert_eq!(kstatus(Some(2), Some(2), &conds), KStatus::Current);
        // Spec changed, controller has not caught up.
        assert_eq!(kstatus(Some(3), Some(2), &conds), KStatus::InProgress);
        // Object-level observedGeneration updated but conditions are stale.
        assert_eq!(kstatus(Some(3), Some(3), &conds), KStatus::InProgress);
        set_outcome(&mut conds, &Outcome::stalled("Bad", ""), Some(3), t(1));
        assert_eq!(kstatus(Some(3), Some(3), &conds), KStatus::Failed);
        set_outcome(
            &mut conds,
            &Outcome::progressing("Rolling", ""),
            Some(3),
            t(2),
        );
        assert_eq!(kstatus(Some(3), Some(3), &conds), KStatus::InProgress);
        assert_eq!(kstatus(Some(1), Some(1), &[]), KStatus::InProgress);
    }
}
