//! The steps every homelab reconcile shares, around its own observe → decide →
//! act: leave an object that is being deleted alone, say a refused spec once,
//! and write the status only when it changed, over the version that was read.

use std::fmt::Debug;
use std::time::Duration;

use homelab_api::ConditionedStatus;
use homelab_api::conditions::types;
use kube::api::Api;
use kube::core::object::HasStatus;
use kube::core::{NamespaceResourceScope, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::apply::{StatusPatch, StatusWrite};
use crate::error::Error;
use crate::runner::Context;
use homelab_api::conditions::Outcome;

/// How soon to look again after a status write was refused as stale: the
/// decision was made on a cached object older than the stored one, and a
/// status change wakes no reconcile by itself.
pub const STALE_RETRY: Duration = Duration::from_secs(1);

/// Whether `obj` is being deleted. Foreground deletion waits for what it owns:
/// applying now would recreate the very children the garbage collector is
/// removing, and the deletion would never finish.
#[must_use]
pub fn being_deleted<K: Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some()
}

/// Why a controller refuses a spec: nothing is applied until a person fixes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason, from [`homelab_api::conditions::reasons`].
    pub reason: &'static str,
    /// What to fix, for a person.
    pub message: String,
}

impl Problem {
    /// A problem with `reason`, saying `message`.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// Whether `status` says this problem already: its `Stalled` condition has
    /// this reason and message. What the status says needs no second Event.
    pub fn already_said<S: ConditionedStatus>(&self, status: Option<&S>) -> bool {
        status
            .and_then(|s| s.condition(types::STALLED))
            .is_some_and(|c| c.reason == self.reason && c.message == self.message)
    }

    /// The kstatus outcome: `Ready=False` and `Stalled=True` with this reason.
    #[must_use]
    pub fn outcome(&self) -> Outcome {
        Outcome::stalled(self.reason, self.message.clone())
    }
}

/// A refused spec, as the pure decide step settles it: what to fix, the status
/// that says so, whether to say it in an Event, and when to look again.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal<S> {
    /// What to fix.
    pub problem: Problem,
    /// The status to write.
    pub status: S,
    /// The status does not say this problem yet: say it in an Event.
    pub warn: bool,
    /// When to look again (what cannot be watched is read again then).
    pub retry: Duration,
}

/// What [`Context::write_status`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusWritten {
    /// The full status.
    pub status: StatusWrite,
    /// Whether the records alone were written, the full status being stale.
    pub records: bool,
}

impl StatusWritten {
    /// How many writes reached the API server (0 to 2).
    #[must_use]
    pub fn writes(self) -> u64 {
        u64::from(self.status.wrote()) + u64::from(self.records)
    }

    /// Whether the full status was refused as stale: the reconcile looks again
    /// on top of the newer version ([`STALE_RETRY`]) and does nothing more.
    #[must_use]
    pub fn stale(self) -> bool {
        self.status == StatusWrite::Stale
    }
}

impl<S> Context<S> {
    /// Says `problem` in a Warning Event, unless the status of `obj` says it
    /// already: once per distinct problem, for the status says it for as long
    /// as it lasts. Returns whether it was said now.
    pub async fn refused<K>(&self, obj: &K, problem: &Problem) -> bool
    where
        K: Resource<DynamicType = ()> + HasStatus,
        K::Status: ConditionedStatus,
    {
        if problem.already_said(obj.status()) {
            return false;
        }
        tracing::info!(reason = problem.reason, message = %problem.message, "spec refused; nothing applied");
        self.events
            .warning(obj, problem.reason, "Reconcile", problem.message.clone())
            .await;
        true
    }

    /// Writes `status` for `obj` when it differs from the status `obj` was
    /// read with, over that version (see [`crate::FieldManager::apply_status`]).
    /// Should `obj` have changed since it was read, `records` — what this
    /// reconcile did that cannot be observed again, a failover — are written
    /// alone, unless they are empty (the default status).
    ///
    /// # Errors
    /// When the API server refuses or fails a write.
    pub async fn write_status<K>(
        &self,
        obj: &K,
        status: &K::Status,
        records: &K::Status,
    ) -> Result<StatusWritten, Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + HasStatus
            + DeserializeOwned
            + Clone
            + Debug,
        K::Status: Serialize + Default + PartialEq,
    {
        let api: Api<K> = match obj.meta().namespace.as_deref() {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::default_namespaced(self.client.clone()),
        };
        let written = self
            .manager
            .apply_status(&api, obj, obj.status(), status, StatusPatch::Apply)
            .await?;
        let record = written == StatusWrite::Stale && *records != K::Status::default();
        if record {
            self.manager.record_in_status(&api, obj, records).await?;
        }
        Ok(StatusWritten {
            status: written,
            records: record,
        })
    }
}
