//! The reconcile, as a pipeline: observe (the runner's caches, the Secrets and
//! claim the spec names: [`crate::observed`]) → decide (pure, with the clock read
//! here: [`crate::decide`]) → act (apply the CronJob, write the status, then say
//! what is new in Events and metrics). This file acts.

use std::sync::Arc;
use std::time::Duration;

use homelab_api::EtcdBackup;
use homelab_api::etcdbackup::EtcdBackupStatus;
use homelab_kit::{Action, Context, Kept, STALE_RETRY, being_deleted};
use k8s_openapi::api::batch::v1::CronJob;
use kube::{Api, ResourceExt};

use crate::build::{self, Image};
use crate::caches::Caches;
use crate::decide::{self, Decision, Note, Refusal, Run};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::observed::{Observed, observe};
use crate::policy::Policy;

pub use crate::decide::UNTRUSTED_REPORT;
pub use crate::validate::DESTINATION_MISSING;

/// What every reconcile shares.
#[derive(Clone, Debug)]
pub struct State {
    /// The runner's image (the controller's own).
    pub image: Image,
    /// Backup metrics.
    pub metrics: Metrics,
    /// How long to wait before looking again when nothing is due.
    pub resync: Duration,
    /// The namespaces and host paths an administrator allows.
    pub policy: Policy,
    /// What the reconcile reads: the runner's caches.
    pub caches: Caches,
}

impl State {
    /// Defaults: resync every 10 minutes; EtcdBackups honoured in no namespace
    /// until a [`Policy`] says where.
    #[must_use]
    pub fn new(image: Image, metrics: Metrics, caches: Caches) -> Self {
        Self {
            image,
            metrics,
            resync: Duration::from_secs(600),
            policy: Policy::nothing(),
            caches,
        }
    }
}

/// Brings the CronJob and the status of `eb` in line with its spec and its runs.
///
/// `eb` is the runner's cached object: nothing is read again. Should it lag
/// behind this controller's own last status write, that write carries its
/// resourceVersion, is refused as stale, and nothing is announced: the reconcile
/// looks again on top of the newer version.
///
/// # Errors
/// When the API server refuses or fails a request; bad input is a status.
pub async fn reconcile(eb: Arc<EtcdBackup>, ctx: Arc<Context<State>>) -> Result<Action, Error> {
    if eb.namespace().is_none() {
        return Err(Error::NoNamespace);
    }
    if being_deleted(eb.as_ref()) {
        return Ok(Action::await_change());
    }
    let state = &ctx.state;
    let now = homelab_api::conditions::now();
    let observed = observe(&eb, &state.policy, &state.caches, &ctx.client).await?;
    match decide::decide(&eb, &observed, now) {
        Decision::Refuse(refusal) => refuse(&eb, &ctx, refusal).await,
        Decision::Run(run) => act(&eb, &ctx, &observed, run).await,
    }
}

/// A spec it cannot act on: nothing applied, `Stalled` with what to fix, and a
/// Warning Event once the status says it for the first time.
async fn refuse(eb: &EtcdBackup, ctx: &Context<State>, refusal: Refusal) -> Result<Action, Error> {
    if write_status(eb, ctx, &refusal.status).await? {
        return Ok(Action::requeue(STALE_RETRY));
    }
    if refusal.warn {
        ctx.refused(eb, &refusal.problem).await;
    }
    Ok(Action::requeue(refusal.retry))
}

/// Applies the CronJob, writes the status, and only then counts and announces
/// what is new: a decision made on a cached backup older than the stored one (its
/// status write refused as stale) says nothing.
async fn act(
    eb: &EtcdBackup,
    ctx: &Context<State>,
    observed: &Observed,
    run: Run,
) -> Result<Action, Error> {
    let (ns, name) = (eb.namespace().unwrap_or_default(), eb.name_any());
    apply_cronjob(eb, &ns, ctx, observed.cluster.cronjob.as_ref()).await?;
    let metrics = &ctx.state.metrics;
    metrics.declare(&ns, &name);
    if write_status(eb, ctx, &run.status).await? {
        return Ok(Action::requeue(STALE_RETRY));
    }
    for _ in 0..run.new_failures {
        metrics.failed(&ns, &name);
    }
    publish(eb, ctx, &run.notes).await;
    Ok(Action::requeue(run.next_look(ctx.state.resync)))
}

/// The CronJob the spec builds, unless `current` (as cached) already is it. The
/// hash of what was applied sees a field the spec stopped setting (a timeZone
/// removed), which comparing fields alone cannot.
async fn apply_cronjob(
    eb: &EtcdBackup,
    ns: &str,
    ctx: &Context<State>,
    current: Option<&CronJob>,
) -> Result<(), Error> {
    let desired = build::cronjob(eb, &ctx.state.image).map_err(Error::Apply)?;
    let cronjobs: Api<CronJob> = Api::namespaced(ctx.client.clone(), ns);
    let (_, wrote) = ctx
        .manager
        .apply_unless_current(&cronjobs, current, Kept::Whole, desired)
        .await
        .map_err(Error::Apply)?;
    if wrote {
        let cronjob = build::cronjob_name(eb);
        let (reason, note) = match current {
            None => (
                "Created",
                format!("created CronJob {cronjob} ({})", eb.spec.schedule),
            ),
            Some(_) => ("Updated", format!("updated CronJob {cronjob}")),
        };
        ctx.events.normal(eb, reason, "Apply", note).await;
    }
    Ok(())
}

/// Writes `status` when it differs from the cached one; returns whether it was
/// stale. Its records (the failed run, the pods announced) are read from the
/// status again by the next reconcile, so nothing is recorded alone.
async fn write_status(
    eb: &EtcdBackup,
    ctx: &Context<State>,
    status: &EtcdBackupStatus,
) -> Result<bool, Error> {
    let none = EtcdBackupStatus::default();
    let written = ctx
        .write_status(eb, status, &none)
        .await
        .map_err(Error::Status)?;
    Ok(written.stale())
}

/// The Events decided for the status just written.
async fn publish(eb: &EtcdBackup, ctx: &Context<State>, notes: &[Note]) {
    for note in notes {
        if note.reason == UNTRUSTED_REPORT {
            tracing::warn!(note = %note.message, "a pod claims to be a backup run");
        }
        ctx.events
            .event(
                eb,
                note.warning,
                note.reason,
                "Backup",
                note.message.clone(),
            )
            .await;
    }
}
