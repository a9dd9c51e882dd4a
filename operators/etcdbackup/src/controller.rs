//! The reconcile: admit (pure: the namespace and host paths an administrator
//! allows) → read (the Secrets and claim it names, its runs' Jobs and Pods) →
//! validate (pure) → build the CronJob (pure) → apply (skipped when unchanged) →
//! status (pure, from the reports of the pods its CronJob's Jobs ran) → Events and
//! metrics.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use homelab_api::EtcdBackup;
use homelab_api::conditions::{reasons, types};
use homelab_api::etcdbackup::Datastore;
use homelab_kit::{Action, Context, Outcome, StatusPatch};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::build::{self, BACKUP_LABEL, Image};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::provenance::{self, Distrust};
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
    /// Pods whose report was ignored and announced as not from a run.
    pub seen_untrusted: Arc<Mutex<HashSet<String>>>,
    /// How long to wait before looking again when nothing is due.
    pub resync: Duration,
    /// The namespaces and host paths an administrator allows.
    pub policy: Policy,
}

impl State {
    /// Defaults: resync every 10 minutes; EtcdBackups honoured in no namespace
    /// until a [`Policy`] says where.
    #[must_use]
    pub fn new(image: Image, metrics: Metrics) -> Self {
        Self {
            image,
            metrics,
            seen_failures: Arc::default(),
            seen_untrusted: Arc::default(),
            resync: Duration::from_secs(600),
            policy: Policy::nothing(),
        }
    }
}

/// Condition reason: `spec.destination.pvc.claimName` names no claim in the namespace.
pub const DESTINATION_MISSING: &str = "DestinationMissing";

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

/// The PVC destination of `eb` when it does not exist (`claim_exists` says whether
/// the claim it names was found), as a [`Problem`].
#[must_use]
pub fn missing_destination(eb: &EtcdBackup, claim_exists: bool) -> Option<Problem> {
    let claim = &eb.spec.destination.pvc.as_ref()?.claim_name;
    (!claim_exists).then(|| Problem {
        reason: DESTINATION_MISSING,
        message: format!(
            "PersistentVolumeClaim {claim} (spec.destination.pvc.claimName) does not exist in namespace {}: create it, or name an existing claim; backups start once it exists",
            eb.namespace().unwrap_or_default()
        ),
    })
}

/// Whether the claim `eb` backs up to exists (true when it names none).
async fn claim_exists(api: &Api<PersistentVolumeClaim>, eb: &EtcdBackup) -> Result<bool, Error> {
    let Some(pvc) = &eb.spec.destination.pvc else {
        return Ok(true);
    };
    let found = api.get_metadata_opt(&pvc.claim_name).await.map_err(|e| {
        Error::Read(homelab_kit::Error::kube(
            format!("get PersistentVolumeClaim {}", pvc.claim_name),
            e,
        ))
    })?;
    Ok(found.is_some())
}

/// How long until a refused EtcdBackup is looked at again: soon for what appears
/// without its spec changing (a Secret or claim created), else only now and then
/// (a spec change wakes the reconcile at once).
fn retry_after(problem: &Problem) -> Duration {
    if [reasons::REFERENCE_NOT_FOUND, DESTINATION_MISSING].contains(&problem.reason) {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(300)
    }
}

/// The pods whose reports count for `eb` (see [`provenance`]), and the rest with
/// why not. `cronjob` is the CronJob as read, `jobs` the namespace's Jobs with the
/// backup's label.
#[must_use]
pub fn trusted_pods(
    eb: &EtcdBackup,
    cronjob: Option<&CronJob>,
    jobs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta],
    pods: Vec<Pod>,
) -> (Vec<Pod>, Vec<(Pod, Distrust)>) {
    let uid = eb.uid().unwrap_or_default();
    let cronjob_uid = cronjob.and_then(|cj| provenance::owned_cronjob_uid(&cj.metadata, &uid));
    let mut trusted = Vec::new();
    let mut ignored = Vec::new();
    for pod in pods {
        match provenance::check(&pod.metadata, jobs, cronjob_uid) {
            Ok(()) => trusted.push(pod),
            Err(why) => ignored.push((pod, why)),
        }
    }
    (trusted, ignored)
}

/// The finished runs of `eb`, from its Pods' termination messages (only pods
/// [`trusted_pods`] lets through).
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
    // Before anything is read or written on its behalf: outside the allowed
    // namespaces the controller has no business there (nor the rights).
    if let Err(problem) = ctx.state.policy.admit(&eb) {
        return refuse(&api, &eb, &ctx, &problem).await;
    }
    let now = homelab_kit::conditions::now();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let missing = missing_secret_keys(&secrets, &eb).await?;
    let plan = match validate(&eb, &missing, now) {
        Ok(plan) => plan,
        Err(problem) => return refuse(&api, &eb, &ctx, &problem).await,
    };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(problem) = missing_destination(&eb, claim_exists(&claims, &eb).await?) {
        return refuse(&api, &eb, &ctx, &problem).await;
    }

    let cronjobs: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let desired = build::cronjob(&eb, &ctx.state.image).map_err(Error::Apply)?;
    let current = cronjobs
        .get_opt(&build::cronjob_name(&eb))
        .await
        .map_err(|e| Error::Read(homelab_kit::Error::kube("get the backup CronJob", e)))?;
    let created = current.is_none();
    // The hash of what was applied sees a field the spec stopped setting (a
    // timeZone removed), which comparing fields alone cannot.
    let (_, wrote) = ctx
        .manager
        .apply_unless_current(&cronjobs, current.as_ref(), desired)
        .await
        .map_err(Error::Apply)?;
    if wrote {
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

    let selector = ListParams::default().labels(&format!("{BACKUP_LABEL}={name}"));
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs: Vec<_> = jobs
        .list_metadata(&selector)
        .await
        .map_err(|e| Error::Read(homelab_kit::Error::kube("list the backup Jobs", e)))?
        .items
        .into_iter()
        .map(|j| j.metadata)
        .collect();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = pods
        .list(&selector)
        .await
        .map_err(|e| Error::Read(homelab_kit::Error::kube("list the backup pods", e)))?
        .items;
    let (pods, ignored) = trusted_pods(&eb, current.as_ref(), &jobs, pods);
    ignore(&eb, &ns, &ctx, &ignored).await;
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
    metrics.declare(ns, &name);
    if let Some(b) = &status.last_successful_backup
        && before.and_then(|s| s.last_successful_backup.as_ref()) != Some(b)
    {
        let note = format!("verified backup {} ({} bytes)", b.location, b.size_bytes);
        ctx.events
            .normal(eb, reasons::BACKUP_SUCCEEDED, "Backup", note)
            .await;
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

/// Pods that carry the backup's label but are no run of its CronJob: their reports
/// are left out, and each pod that plainly is not a run is announced once, in the
/// log and in a Warning Event about the backup (later ones join the first Event's
/// series). A pod whose Job was merely deleted is no news.
async fn ignore(eb: &EtcdBackup, ns: &str, ctx: &Context<State>, ignored: &[(Pod, Distrust)]) {
    for (pod, why) in ignored {
        let pod = pod.name_any();
        tracing::debug!(pod, %why, "report not counted");
        if !why.is_definite() {
            continue;
        }
        let new = ctx
            .state
            .seen_untrusted
            .lock()
            .map(|mut seen| seen.insert(format!("{ns}/{pod}")))
            .unwrap_or(false);
        if new {
            let note = format!(
                "ignored pod {pod}: it carries the label {BACKUP_LABEL}={} but is no run of CronJob {}: {why}",
                eb.name_any(),
                build::cronjob_name(eb)
            );
            tracing::warn!(pod, %why, "a pod claims to be a backup run");
            ctx.events
                .warning(eb, UNTRUSTED_REPORT, "Backup", note)
                .await;
        }
    }
}

/// Event reason: a labelled pod's report was ignored.
pub const UNTRUSTED_REPORT: &str = "UntrustedReport";

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
    Ok(Action::requeue(retry_after(problem)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use homelab_api::etcdbackup::EtcdBackupSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn backup(destination: serde_json::Value) -> EtcdBackup {
        let spec: EtcdBackupSpec = serde_json::from_value(serde_json::json!({
            "schedule": "@hourly",
            "source": {"distribution": "Kubeadm"},
            "destination": destination,
        }))
        .unwrap();
        let mut b = EtcdBackup::new("cluster", spec);
        b.metadata.namespace = Some("homelab".into());
        b.metadata.uid = Some("eb-uid".into());
        b
    }

    #[test]
    fn a_missing_claim_is_a_problem_that_is_looked_at_again_soon() {
        let b = backup(serde_json::json!({"pvc": {"claimName": "etcd-backups"}}));
        assert_eq!(missing_destination(&b, true), None);
        let problem = missing_destination(&b, false).unwrap();
        assert_eq!(problem.reason, DESTINATION_MISSING);
        assert!(
            problem
                .message
                .contains("PersistentVolumeClaim etcd-backups (spec.destination.pvc.claimName) does not exist in namespace homelab"),
            "{}",
            problem.message
        );
        assert_eq!(retry_after(&problem), Duration::from_secs(30));
        // Other destinations name no claim.
        let b = backup(serde_json::json!({"hostPath": {"path": "/var/backups"}}));
        assert_eq!(missing_destination(&b, false), None);
        // A refusal only a spec change (or an administrator) lifts waits longer.
        let refused = crate::policy::Policy::only("elsewhere")
            .admit(&b)
            .unwrap_err();
        assert_eq!(retry_after(&refused), Duration::from_secs(300));
    }

    fn owned(kind: &str, name: &str, uid: &str) -> Option<Vec<OwnerReference>> {
        Some(vec![OwnerReference {
            api_version: if kind == "EtcdBackup" {
                "homelab.home.arpa/v1alpha1".into()
            } else {
                "batch/v1".into()
            },
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }])
    }

    #[test]
    fn only_pods_of_the_cronjobs_jobs_are_trusted() {
        let b = backup(serde_json::json!({"hostPath": {"path": "/var/backups"}}));
        let cronjob = CronJob {
            metadata: ObjectMeta {
                name: Some("cluster-etcd-backup".into()),
                uid: Some("cj-uid".into()),
                owner_references: owned("EtcdBackup", "cluster", "eb-uid"),
                ..ObjectMeta::default()
            },
            ..CronJob::default()
        };
        let jobs = [ObjectMeta {
            name: Some("run-1".into()),
            uid: Some("job-uid".into()),
            owner_references: owned("CronJob", "cluster-etcd-backup", "cj-uid"),
            ..ObjectMeta::default()
        }];
        let pod = |name: &str, owners| Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                owner_references: owners,
                ..ObjectMeta::default()
            },
            ..Pod::default()
        };
        let pods = vec![
            pod("real", owned("Job", "run-1", "job-uid")),
            pod("forged", None),
        ];
        let (trusted, ignored) = trusted_pods(&b, Some(&cronjob), &jobs, pods.clone());
        assert_eq!(
            trusted
                .iter()
                .map(ResourceExt::name_any)
                .collect::<Vec<_>>(),
            ["real"]
        );
        assert_eq!(ignored.len(), 1);
        assert_eq!(ignored[0].1, Distrust::NoController);
        // Before the CronJob is read (just created), nothing counts.
        let (trusted, _) = trusted_pods(&b, None, &jobs, pods);
        assert!(trusted.is_empty());
    }
}
