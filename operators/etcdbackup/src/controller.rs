//! The reconcile: read (the EtcdBackup, the Secrets it names, its runs' Pods) →
//! validate (pure) → build the CronJob (pure) → apply (skipped when unchanged) →
//! status (pure, from the runs' reports) → Events and metrics.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use homelab_api::EtcdBackup;
use homelab_api::conditions::{reasons, types};
use homelab_api::etcdbackup::Datastore;
use homelab_kit::{Action, Context, Outcome, StatusPatch};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::build::{self, BACKUP_LABEL, Image};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::report::RunReport;
use crate::schedule::{self, Schedule};
use crate::status::{self, Facts, Run};

/// What every reconcile shares.
#[derive(Clone, Debug)]
pub struct State {
    /// The runner's image (the controller's own).
    pub image: Image,
    /// Backup metrics.
    pub metrics: Metrics,
    /// Pods whose failure was already counted and announced.
    pub seen_failures: Arc<Mutex<HashSet<String>>>,
    /// How long to wait before looking again when nothing is due.
    pub resync: Duration,
}

impl State {
    /// Defaults: resync every 10 minutes.
    #[must_use]
    pub fn new(image: Image, metrics: Metrics) -> Self {
        Self {
            image,
            metrics,
            seen_failures: Arc::default(),
            resync: Duration::from_secs(600),
        }
    }
}

/// A spec the controller cannot act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Condition reason.
    pub reason: &'static str,
    /// What to do about it.
    pub message: String,
}

/// What validation settles.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The schedule.
    pub schedule: Schedule,
    /// Its time zone.
    pub tz: jiff::tz::TimeZone,
    /// When backups count as stale.
    pub stale_after: Duration,
}

/// Checks what only the controller can: the schedule and time zone, the name's
/// length, and that the Secrets it names hold the keys it needs (`missing` lists
/// the `secret/key` pairs that are not there).
///
/// # Errors
/// A [`Problem`] for the status.
pub fn validate(eb: &EtcdBackup, missing: &[String], now: Timestamp) -> Result<Plan, Problem> {
    let invalid = |message: String| Problem {
        reason: reasons::INVALID_SPEC,
        message,
    };
    let name = eb.name_any();
    if name.len() > build::MAX_NAME {
        return Err(invalid(format!(
            "the name is {} characters; its CronJob's name needs it to be at most {}",
            name.len(),
            build::MAX_NAME
        )));
    }
    let schedule = Schedule::parse(&eb.spec.schedule).map_err(|e| invalid(e.to_string()))?;
    let tz = schedule::time_zone(eb.spec.time_zone.as_deref()).map_err(invalid)?;
    let stale_after = match &eb.spec.stale_after {
        Some(d) => d
            .to_std()
            .map_err(|e| invalid(format!("staleAfter: {e}")))?,
        None => schedule
            .interval(now, &tz)
            .map(|i| i * 2)
            .ok_or_else(|| invalid(format!("schedule {:?} never fires", eb.spec.schedule)))?,
    };
    if !missing.is_empty() {
        return Err(Problem {
            reason: reasons::REFERENCE_NOT_FOUND,
            message: format!(
                "missing in namespace {}: {}",
                eb.namespace().unwrap_or_default(),
                missing.join(", ")
            ),
        });
    }
    Ok(Plan {
        schedule,
        tz,
        stale_after,
    })
}

/// The `secret/key` pairs the spec names, for [`validate`].
fn secret_keys(eb: &EtcdBackup) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    if let Some(s3) = &eb.spec.destination.s3 {
        for r in [
            Some(&s3.access_key_id_secret_ref),
            Some(&s3.secret_access_key_secret_ref),
            s3.ca_secret_ref.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            keys.push((r.name.clone(), r.key.clone()));
        }
    }
    if eb.spec.source.datastore == Datastore::Etcd
        && let Some(secret) = eb
            .spec
            .source
            .tls
            .as_ref()
            .and_then(|t| t.secret_name.clone())
    {
        for key in ["ca.crt", "tls.crt", "tls.key"] {
            keys.push((secret.clone(), key.to_owned()));
        }
    }
    keys
}

/// Reads each named Secret (get, never list) and returns the pairs not found.
async fn missing_secret_keys(api: &Api<Secret>, eb: &EtcdBackup) -> Result<Vec<String>, Error> {
    let mut missing = Vec::new();
    let mut cache: std::collections::HashMap<String, Option<Secret>> = Default::default();
    for (name, key) in secret_keys(eb) {
        if !cache.contains_key(&name) {
            let got = api.get_opt(&name).await.map_err(|e| {
                Error::Read(homelab_kit::Error::kube(format!("get Secret {name}"), e))
            })?;
            cache.insert(name.clone(), got);
        }
        let has = cache.get(&name).and_then(Option::as_ref).is_some_and(|s| {
            s.data.as_ref().is_some_and(|d| d.contains_key(&key))
                || s.string_data.as_ref().is_some_and(|d| d.contains_key(&key))
        });
        if !has {
            missing.push(format!("Secret {name} key {key}"));
        }
    }
    Ok(missing)
}

/// The finished runs of `eb`, from its Pods' termination messages.
#[must_use]
pub fn runs_from_pods(pods: &[Pod]) -> Vec<Run> {
    pods.iter()
        .filter_map(|pod| {
            let status = pod.status.as_ref()?;
            let terminated = status
                .container_statuses
                .iter()
                .flatten()
                .find_map(|c| c.state.as_ref().and_then(|s| s.terminated.clone()))?;
            let parsed = terminated.message.as_deref().and_then(RunReport::parse);
            let finished = terminated.finished_at.map(|t| t.0).or_else(|| {
                parsed
                    .as_ref()
                    .and_then(|r| r.finished.as_ref().map(|t| t.0))
            })?;
            let report = parsed.unwrap_or_else(|| RunReport {
                ok: false,
                error: Some(format!(
                    "the backup container ended without a report (exit code {}, {})",
                    terminated.exit_code,
                    terminated.reason.as_deref().unwrap_or("no reason given")
                )),
                ..RunReport::default()
            });
            Some(Run {
                pod: pod.name_any(),
                finished,
                report,
            })
        })
        .collect()
}

/// Brings the CronJob and the status of `eb` in line with its spec and its runs.
///
/// # Errors
/// When the API server refuses or fails a request.
pub async fn reconcile(cached: Arc<EtcdBackup>, ctx: Arc<Context<State>>) -> Result<Action, Error> {
    let ns = cached.namespace().ok_or(Error::NoNamespace)?;
    let name = cached.name_any();
    let api: Api<EtcdBackup> = Api::namespaced(ctx.client.clone(), &ns);
    // The cache may lag behind our last status write: one fresh read.
    let Some(eb) = api.get_opt(&name).await.map_err(|e| {
        Error::Read(homelab_kit::Error::kube(
            format!("get EtcdBackup {ns}/{name}"),
            e,
        ))
    })?
    else {
        return Ok(Action::await_change());
    };
    if eb.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = homelab_kit::conditions::now();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let missing = missing_secret_keys(&secrets, &eb).await?;
    let plan = match validate(&eb, &missing, now) {
        Ok(plan) => plan,
        Err(problem) => return refuse(&api, &eb, &ctx, &problem).await,
    };

    let cronjobs: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let desired = build::cronjob(&eb, &ctx.state.image).map_err(Error::Apply)?;
    let current = cronjobs
        .get_opt(&build::cronjob_name(&eb))
        .await
        .map_err(|e| Error::Read(homelab_kit::Error::kube("get the backup CronJob", e)))?;
    let created = current.is_none();
    if ctx
        .manager
        .apply_if_changed(&cronjobs, current.as_ref(), &desired)
        .await
        .map_err(Error::Apply)?
    {
        let note = if created {
            format!(
                "created CronJob {} ({})",
                build::cronjob_name(&eb),
                eb.spec.schedule
            )
        } else {
            format!("updated CronJob {}", build::cronjob_name(&eb))
        };
        ctx.events
            .normal(
                &eb,
                if created { "Created" } else { "Updated" },
                "Apply",
                note,
            )
            .await;
    }

    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = pods
        .list(&ListParams::default().labels(&format!("{BACKUP_LABEL}={name}")))
        .await
        .map_err(|e| Error::Read(homelab_kit::Error::kube("list the backup pods", e)))?
        .items;
    let runs = runs_from_pods(&pods);
    let facts = Facts {
        now,
        next_run: (!eb.spec.suspend)
            .then(|| plan.schedule.next_after(now, &plan.tz))
            .flatten(),
        stale_after: plan.stale_after,
        created: eb.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0),
    };
    let computed = status::compute(&eb, &runs, &facts);
    announce(&eb, &ns, &ctx, &runs, &computed.status).await;

    if ctx
        .manager
        .apply_status(
            &api,
            &eb,
            eb.status.as_ref(),
            &computed.status,
            StatusPatch::Apply,
        )
        .await
        .map_err(Error::Status)?
        .wrote()
    {
        tracing::debug!("status written");
    }
    let mut next = ctx.state.resync;
    for at in [computed.stale_at, facts.next_run].into_iter().flatten() {
        let wait = at.duration_since(now).unsigned_abs() + Duration::from_secs(1);
        next = next.min(wait);
    }
    Ok(Action::requeue(next))
}

/// Events and metrics for what changed: a new verified backup, a new failed run,
/// Stale turning.
async fn announce(
    eb: &EtcdBackup,
    ns: &str,
    ctx: &Context<State>,
    runs: &[Run],
    status: &homelab_api::etcdbackup::EtcdBackupStatus,
) {
    let name = eb.name_any();
    let metrics = &ctx.state.metrics;
    let before = eb.status.as_ref();
    if let Some(b) = &status.last_successful_backup {
        metrics.success(
            ns,
            &name,
            b.time.0.as_second(),
            b.size_bytes,
            b.duration_millis,
        );
        if before.and_then(|s| s.last_successful_backup.as_ref()) != Some(b) {
            let note = format!("verified backup {} ({} bytes)", b.location, b.size_bytes);
            ctx.events
                .normal(eb, reasons::BACKUP_SUCCEEDED, "Backup", note)
                .await;
        }
    }
    for run in runs.iter().filter(|r| !r.report.ok) {
        let key = format!("{ns}/{}", run.pod);
        let new = ctx
            .state
            .seen_failures
            .lock()
            .map(|mut seen| seen.insert(key))
            .unwrap_or(false);
        if new {
            metrics.failed(ns, &name);
            let note = format!(
                "backup run {} failed: {}",
                run.pod,
                run.report.error.as_deref().unwrap_or("no reason given")
            );
            ctx.events
                .warning(eb, reasons::BACKUP_FAILED, "Backup", note)
                .await;
        }
    }
    let stale = status::is_stale(status);
    metrics.set_stale(ns, &name, stale);
    if stale && !before.is_some_and(status::is_stale) {
        let message = status
            .conditions
            .iter()
            .find(|c| c.type_ == types::STALE)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        ctx.events
            .warning(eb, reasons::NO_RECENT_BACKUP, "Backup", message)
            .await;
    }
}

/// A spec it cannot act on: Stalled, one Warning Event per distinct problem.
async fn refuse(
    api: &Api<EtcdBackup>,
    eb: &EtcdBackup,
    ctx: &Context<State>,
    problem: &Problem,
) -> Result<Action, Error> {
    let mut status = eb.status.clone().unwrap_or_default();
    let known = status.conditions.iter().any(|c| {
        c.type_ == types::STALLED && c.reason == problem.reason && c.message == problem.message
    });
    if !known {
        ctx.events
            .warning(eb, problem.reason, "Reconcile", problem.message.clone())
            .await;
    }
    status.observed_generation = eb.metadata.generation;
    homelab_kit::conditions::set_outcome(
        &mut status.conditions,
        &Outcome::stalled(problem.reason, &problem.message),
        eb.metadata.generation,
        homelab_kit::conditions::now(),
    );
    ctx.manager
        .apply_status(api, eb, eb.status.as_ref(), &status, StatusPatch::Apply)
        .await
        .map_err(Error::Status)?;
    Ok(Action::requeue(Duration::from_secs(300)))
}
