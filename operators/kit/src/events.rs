//! Kubernetes Events (`events.k8s.io/v1`) about the objects a controller
//! reconciles: what it did and what went wrong, in `kubectl describe` and
//! `kubectl get events --field-selector reason=<Reason>`.
//!
//! Reasons are CamelCase words a person can grep for (`FailedOver`,
//! `SecretNotFound`); a repeat of the same Event about the same object within
//! [`SERIES_WINDOW`] joins the first one's series (its count and last time)
//! instead of adding an Event, as client-go's and kube's recorders do.
//!
//! The publisher remembers only what recognises a repeat and the name of the
//! Event to count it into. kube's own recorder keeps each whole Event in a
//! table that never shrinks: about 6 MB after a burst of 1,000 new objects,
//! held for as long as the controller runs.
//!
//! Publishing is best effort: a refused Event is logged, never a reconcile
//! error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use homelab_api::conditions::{sanitize_reason, truncate};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use serde_json::json;

use crate::Error;

/// Reason of the Warning the runner publishes when a reconcile fails,
/// unless the error names its own ([`crate::ReconcileError::event_reason`]).
pub const RECONCILE_FAILED: &str = "ReconcileFailed";

/// A repeat this soon after the last one of its series joins it.
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// Longest `reason` the Events API accepts.
const MAX_REASON_BYTES: usize = 128;
/// Longest `note` the Events API accepts.
const MAX_NOTE_BYTES: usize = 1_024;

/// Publishes Events as one controller (`reportingController`) from one
/// replica (`reportingInstance`). Cheap to clone.
#[derive(Clone)]
pub struct EventPublisher {
    client: Client,
    controller: String,
    instance: String,
    recent: Arc<Mutex<Recent>>,
}

crate::debug_by_name!(EventPublisher);

impl EventPublisher {
    /// A publisher for `controller` (e.g. `"homelab.home.arpa/mediaserver-controller"`),
    /// reporting as `instance` (the pod name) when given.
    #[must_use]
    pub fn new(client: Client, controller: impl Into<String>, instance: Option<String>) -> Self {
        let controller = controller.into();
        Self {
            client,
            instance: instance.unwrap_or_else(|| controller.clone()),
            controller,
            recent: Arc::default(),
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
    /// Events a pure decide step chose. Returns at once; the Event is published
    /// in the background.
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
        let event = self.build(obj.object_ref(&()), warning, reason, action, note.into());
        // An Event is a courtesy to the reader: failing to publish one must
        // not fail the reconcile that had something to say, and waiting for
        // it must not hold the reconcile up (two Events are two of the five
        // round trips of a new MediaServer's first reconcile).
        let publisher = self.clone();
        tokio::spawn(async move {
            if let Err(err) = publisher.publish(event).await {
                tracing::warn!(error = %crate::error::report(&err), "could not publish Event");
            }
        });
    }

    /// Creates `event`, or counts it into the series of the same Event
    /// published within [`SERIES_WINDOW`].
    async fn publish(&self, event: Event) -> Result<(), Error> {
        let now = event
            .event_time
            .as_ref()
            .map_or_else(Timestamp::now, |t| t.0);
        let key = series_key(&event);
        let reason = event.reason.clone().unwrap_or_default();
        let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let repeat = self.recent().repeat(&key, now);
        let written = match &repeat {
            Some((name, count)) => {
                let series =
                    json!({"series": {"count": count, "lastObservedTime": MicroTime(now)}});
                events
                    .patch(name, &PatchParams::default(), &Patch::Merge(&series))
                    .await
                    .map(drop)
            }
            None => events
                .create(&PostParams::default(), &event)
                .await
                .map(drop),
        };
        match (written, repeat) {
            (Ok(()), Some(_)) => Ok(()),
            (Ok(()), None) => {
                let name = event.metadata.name.unwrap_or_default();
                self.recent().remember(key, name, now);
                Ok(())
            }
            // The Event may be gone (the API server keeps Events an hour):
            // the next repeat starts a series of its own.
            (Err(e), _) => {
                self.recent().forget(&key);
                Err(Error::kube(format!("publish Event {reason}"), e))
            }
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The Event about `regarding` with `reason` and `action` made valid and
    /// `note` cut to size, ending in `…` when cut so that a reader knows there
    /// was more.
    fn build(
        &self,
        regarding: ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) -> Event {
        const CUT: &str = "…";
        let note = if note.len() > MAX_NOTE_BYTES {
            format!("{}{CUT}", truncate(&note, MAX_NOTE_BYTES - CUT.len()))
        } else {
            note
        };
        let now = Timestamp::now();
        Event {
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                ..ObjectMeta::default()
            },
            type_: Some(if warning { "Warning" } else { "Normal" }.to_owned()),
            reason: Some(truncate(&sanitize_reason(reason), MAX_REASON_BYTES).to_owned()),
            action: Some(truncate(&sanitize_reason(action), MAX_REASON_BYTES).to_owned()),
            note: (!note.is_empty()).then_some(note),
            event_time: Some(MicroTime(now)),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            regarding: Some(regarding),
            ..Event::default()
        }
    }
}

/// What makes a repeat: the same type, reason and action about the same
/// object as the same version of it.
fn series_key(event: &Event) -> String {
    let r = event.regarding.clone().unwrap_or_default();
    [
        event.type_.as_deref(),
        event.reason.as_deref(),
        event.action.as_deref(),
        r.api_version.as_deref(),
        r.kind.as_deref(),
        r.namespace.as_deref(),
        r.name.as_deref(),
        r.uid.as_deref(),
        r.resource_version.as_deref(),
        r.field_path.as_deref(),
    ]
    .map(Option::unwrap_or_default)
    .join("\0")
}

/// The series published within [`SERIES_WINDOW`]: the name of each one's
/// Event, its count and when it was last seen.
#[derive(Debug, Default)]
struct Recent {
    series: HashMap<String, Series>,
}

#[derive(Debug)]
struct Series {
    name: String,
    count: i32,
    last: Timestamp,
}

impl Recent {
    /// For a repeat within the window: the Event's name and its new count.
    /// Forgets series that ended before the window, and gives back the room
    /// a burst of them took.
    fn repeat(&mut self, key: &str, now: Timestamp) -> Option<(String, i32)> {
        self.series.retain(|_, s| s.last + SERIES_WINDOW > now);
        if self.series.capacity() > 4 * self.series.len().max(16) {
            self.series.shrink_to_fit();
        }
        let s = self.series.get_mut(key)?;
        s.count += 1;
        s.last = now;
        Some((s.name.clone(), s.count))
    }

    fn remember(&mut self, key: String, name: String, now: Timestamp) {
        let series = Series {
            name,
            count: 1,
            last: now,
        };
        self.series.insert(key, series);
    }

    fn forget(&mut self, key: &str) {
        self.series.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher() -> EventPublisher {
        // A client that is never called: building an Event needs none.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        EventPublisher::new(client, "homelab.home.arpa/test-controller", None)
    }

    fn server() -> ObjectReference {
        ObjectReference {
            api_version: Some("homelab.home.arpa/v1alpha1".into()),
            kind: Some("MediaServer".into()),
            namespace: Some("media".into()),
            name: Some("jellyfin".into()),
            uid: Some("u-1".into()),
            resource_version: Some("7".into()),
            field_path: None,
        }
    }

    #[tokio::test]
    async fn event_fields_fit_the_api() {
        let p = publisher();
        let ev = p.build(
            server(),
            true,
            "secret not found",
            "Reconcile",
            "x".repeat(5000),
        );
        assert_eq!(ev.reason.as_deref(), Some("SecretNotFound"));
        assert_eq!(ev.action.as_deref(), Some("Reconcile"));
        assert_eq!(ev.type_.as_deref(), Some("Warning"));
        assert_eq!(ev.note.as_deref().map(str::len), Some(MAX_NOTE_BYTES));
        assert!(ev.note.as_deref().is_some_and(|n| n.ends_with('…')));
        assert_eq!(ev.metadata.namespace.as_deref(), Some("media"));
        assert!(
            ev.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("jellyfin."))
        );
        assert_eq!(ev.reporting_instance, ev.reporting_controller);
        // A note that fits is left whole.
        let fits = p.build(server(), false, "R", "A", "é".repeat(512));
        assert_eq!(fits.note.as_deref().map(str::len), Some(MAX_NOTE_BYTES));
        assert!(fits.note.as_deref().is_some_and(|n| !n.ends_with('…')));
        assert_eq!(fits.type_.as_deref(), Some("Normal"));
    }

    #[tokio::test]
    async fn empty_note_is_left_out() {
        let p = publisher();
        let ev = p.build(server(), false, "FailedOver", "Failover", String::new());
        assert!(ev.note.is_none());
        let long = p.build(server(), false, &"A".repeat(300), "a", String::new());
        assert_eq!(long.reason.map(|r| r.len()), Some(MAX_REASON_BYTES));
    }

    #[tokio::test]
    async fn a_repeat_is_the_same_event_about_the_same_object_version() {
        let p = publisher();
        let key = |reason: &str, rv: &str| {
            let mut r = server();
            r.resource_version = Some(rv.into());
            series_key(&p.build(r, true, reason, "Reconcile", "note".into()))
        };
        assert_eq!(key("SecretNotFound", "7"), key("SecretNotFound", "7"));
        assert_ne!(key("SecretNotFound", "7"), key("InvalidSpec", "7"));
        assert_ne!(key("SecretNotFound", "7"), key("SecretNotFound", "8"));
    }

    #[test]
    fn repeats_within_the_window_count_into_one_series() {
        let t0 = Timestamp::UNIX_EPOCH;
        let mut recent = Recent::default();
        assert_eq!(recent.repeat("k", t0), None);
        recent.remember("k".into(), "jellyfin.1".into(), t0);
        let soon = t0 + SignedDuration::from_mins(5);
        assert_eq!(recent.repeat("k", soon), Some(("jellyfin.1".into(), 2)));
        // The window runs from the last repeat.
        let later = soon + SignedDuration::from_mins(5);
        assert_eq!(recent.repeat("k", later), Some(("jellyfin.1".into(), 3)));
        // After a quiet window the next one starts a series of its own.
        let quiet = later + SERIES_WINDOW;
        assert_eq!(recent.repeat("k", quiet), None);
    }

    #[test]
    fn a_burst_gives_its_room_back_once_its_window_has_passed() {
        let t0 = Timestamp::UNIX_EPOCH;
        let mut recent = Recent::default();
        for i in 0..2_000 {
            recent.remember(format!("k{i}"), format!("e{i}"), t0);
        }
        let grown = recent.series.capacity();
        assert!(grown >= 2_000);
        assert_eq!(recent.repeat("k1", t0 + SERIES_WINDOW), None);
        assert!(recent.series.is_empty());
        assert!(
            recent.series.capacity() < grown / 4,
            "{}",
            recent.series.capacity()
        );
    }
}
