//! Kubernetes Events (`events.k8s.io/v1`) about the objects a controller
//! reconciles: what it did and what went wrong, in `kubectl describe` and
//! `kubectl get events --field-selector reason=<Reason>`.
//!
//! Reasons are CamelCase words a person can grep for (`FailedOver`,
//! `SecretNotFound`); repeats of the same reason on the same object are
//! folded into one Event series by kube's [`Recorder`].
//!
//! Publishing is best effort: a refused Event is logged, never a reconcile
//! error.

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use crate::Error;
use homelab_api::conditions::{sanitize_reason, truncate};

/// Reason of the Warning the runner publishes when a reconcile fails,
/// unless the error names its own ([`crate::ReconcileError::event_reason`]).
pub const RECONCILE_FAILED: &str = "ReconcileFailed";

/// Longest `reason` the Events API accepts.
const MAX_REASON_BYTES: usize = 128;
/// Longest `note` the Events API accepts.
const MAX_NOTE_BYTES: usize = 1_024;

/// Publishes Events as one controller (`reportingController`) from one
/// replica (`reportingInstance`). Cheap to clone.
#[derive(Clone)]
pub struct EventPublisher {
    /// kube's recorder, which folds repeats into series.
    recorder: Recorder,
}

crate::debug_by_name!(EventPublisher);

impl EventPublisher {
    /// A publisher for `controller` (e.g. `"homelab.home.arpa/mediaserver-controller"`),
    /// reporting as `instance` (the pod name) when given.
    #[must_use]
    pub fn new(client: Client, controller: impl Into<String>, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: controller.into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// A `Normal` Event about `obj`: something happened as it should.
    pub async fn normal<K>(&self, obj: &K, reason: &str, action: &str, note: impl Into<String>)
    where
        K: Resource<DynamicType = ()>,
    {
        self.event(obj, false, reason, action, note).await;
    }

    /// A `Warning` Event about `obj`: something a person may need to fix.
    pub async fn warning<K>(&self, obj: &K, reason: &str, action: &str, note: impl Into<String>)
    where
        K: Resource<DynamicType = ()>,
    {
        self.event(obj, true, reason, action, note).await;
    }

    /// A `Warning` Event about `obj` when `warning`, else a `Normal` one: for
    /// Events a pure decide step chose.
    pub async fn event<K>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let type_ = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let event = build_event(type_, reason, action, note.into());
        // An Event is a courtesy to the reader: failing to publish one must
        // not fail the reconcile that had something to say.
        if let Err(err) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            let err = Error::kube(format!("publish Event {}", event.reason), err);
            tracing::warn!(error = %crate::error::report(&err), "could not publish Event");
        }
    }
}

/// The Event with `reason` and `action` made valid and `note` cut to size,
/// ending in `…` when cut so that a reader knows there was more.
fn build_event(type_: EventType, reason: &str, action: &str, note: String) -> Event {
    const CUT: &str = "…";
    let note = if note.len() > MAX_NOTE_BYTES {
        format!("{}{CUT}", truncate(&note, MAX_NOTE_BYTES - CUT.len()))
    } else {
        note
    };
    Event {
        type_,
        reason: truncate(&sanitize_reason(reason), MAX_REASON_BYTES).to_owned(),
        action: truncate(&sanitize_reason(action), MAX_REASON_BYTES).to_owned(),
        note: (!note.is_empty()).then_some(note),
        secondary: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_fields_fit_the_api() {
        let ev = build_event(
            EventType::Warning,
            "secret not found",
            "Reconcile",
            "x".repeat(5000),
        );
        assert_eq!(ev.reason, "SecretNotFound");
        assert_eq!(ev.action, "Reconcile");
        assert_eq!(ev.note.as_deref().map(str::len), Some(MAX_NOTE_BYTES));
        assert!(ev.note.as_deref().is_some_and(|n| n.ends_with('…')));
        // A note that fits is left whole.
        let fits = build_event(EventType::Warning, "R", "A", "é".repeat(512));
        assert_eq!(fits.note.as_deref().map(str::len), Some(MAX_NOTE_BYTES));
        assert!(fits.note.as_deref().is_some_and(|n| !n.ends_with('…')));
        assert_eq!(ev.type_, EventType::Warning);
    }

    #[test]
    fn empty_note_is_left_out() {
        let ev = build_event(EventType::Normal, "FailedOver", "Failover", String::new());
        assert!(ev.note.is_none());
        assert_eq!(ev.reason.len(), "FailedOver".len());
        assert_eq!(
            build_event(EventType::Normal, &"A".repeat(300), "a", String::new())
                .reason
                .len(),
            MAX_REASON_BYTES
        );
    }
}
