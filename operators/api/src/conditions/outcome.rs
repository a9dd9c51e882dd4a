//! kstatus: `Ready`, `Reconciling` and `Stalled` set from what a reconcile
//! concluded, and read back the way Flux, Argo CD and `kubectl wait` do.
//!
//! `Reconciling` and `Stalled` have abnormal-true polarity: they are present
//! (with `status: "True"`) while they hold and removed afterwards, as Flux's
//! own controllers do; `Ready` is always present.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;

use super::ConditionStatus;
use super::edit::{find_condition, new_condition, remove_condition, set_condition};
use super::types::{READY, RECONCILING, STALLED};

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
    // Ready is always there; the abnormal-true pair only while it holds.
    let (reason, message, ready, holding) = match outcome {
        Outcome::Ready { reason, message } => (reason, message, true, None),
        Outcome::Progressing { reason, message } => (reason, message, false, Some(RECONCILING)),
        Outcome::Stalled { reason, message } => (reason, message, false, Some(STALLED)),
    };
    let cond = |type_, status| new_condition(type_, status, reason, message, generation, now);
    let mut changed = set_condition(conditions, cond(READY, ConditionStatus::from(ready)));
    for type_ in [RECONCILING, STALLED] {
        changed |= if holding == Some(type_) {
            set_condition(conditions, cond(type_, ConditionStatus::True))
        } else {
            remove_condition(conditions, type_)
        };
    }
    changed
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
            .is_some_and(|c| c.status == ConditionStatus::True.as_str())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::edit::{find_condition, is_true};

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
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
