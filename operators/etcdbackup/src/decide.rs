//! Decide (pure): the whole decision of one reconcile, from the backup, what was
//! observed ([`crate::observed`]) and the clock. Either a refusal (the status says
//! why, the CronJob is left alone) or a run: the status from the runs' reports, the
//! Events that say what is new in it, and when to look again. What is news is
//! judged against the status alone (the newest failed run announced, the pods
//! already reported as no run), so a restarted controller says nothing twice.
//! [`crate::controller`] acts on it.

use std::collections::BTreeMap;
use std::time::Duration;

use homelab_api::EtcdBackup;
use homelab_api::conditions::{reasons, types};
use homelab_api::etcdbackup::{EtcdBackupStatus, IgnoredPod};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::build::{self, BACKUP_LABEL};
use crate::observed::Observed;
use crate::provenance::{self, Distrust};
use crate::status::{self, Facts, FinishedRun};
use crate::validate::{self, DESTINATION_MISSING, Plan, Problem};

/// Event reason: a labelled pod's report was ignored.
pub const UNTRUSTED_REPORT: &str = "UntrustedReport";

/// The most pods `status.ignoredPods` lists: anyone who may create pods in the
/// namespace can make more, and the status must stay small. Pods beyond it are
/// ignored all the same, without an Event of their own.
pub const MAX_IGNORED_PODS: usize = 20;

/// What one reconcile does.
#[derive(Clone, Debug)]
pub enum Decision {
    /// The spec cannot be acted on.
    Refuse(Refusal),
    /// Apply the CronJob the spec builds, then write the status and say what is new.
    Run(Run),
}

/// A spec the controller cannot act on: `Stalled`, and a Warning Event the first
/// time the status says it.
pub type Refusal = homelab_kit::Refusal<EtcdBackupStatus>;

/// A backup that runs.
#[derive(Clone, Debug)]
pub struct Run {
    /// The status to write.
    pub status: EtcdBackupStatus,
    /// The Events for what the status newly says, to publish once it is written.
    pub notes: Vec<Note>,
    /// How many failed runs are new (each counts once in the failures metric).
    pub new_failures: usize,
    /// How soon something changes by time alone (the next run, Stale turning).
    pub wake_in: Option<Duration>,
}

impl Run {
    /// How long to wait before looking again: when something is due, or after
    /// `resync` at the latest.
    #[must_use]
    pub fn next_look(&self, resync: Duration) -> Duration {
        self.wake_in.map_or(resync, |wake| wake.min(resync))
    }
}

/// One Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// A Warning, else Normal.
    pub warning: bool,
    /// Its reason.
    pub reason: &'static str,
    /// Its note.
    pub message: String,
}

/// The decision for `eb`, given what was observed, at `now`. The order of the
/// checks is the order of what a user fixes: where it is honoured, the spec, the
/// Secrets it names, then its claim.
#[must_use]
pub fn decide(eb: &EtcdBackup, observed: &Observed, now: Timestamp) -> Decision {
    if let Err(problem) = &observed.admitted {
        return refuse(eb, problem.clone(), now);
    }
    let missing = validate::missing_keys(eb, &observed.secrets);
    let plan = match validate::validate(eb, &missing, now) {
        Ok(plan) => plan,
        Err(problem) => return refuse(eb, problem, now),
    };
    if let Some(problem) = validate::missing_destination(eb, observed.claim_exists) {
        return refuse(eb, problem, now);
    }
    Decision::Run(run(eb, observed, &plan, now))
}

fn refuse(eb: &EtcdBackup, problem: Problem, now: Timestamp) -> Decision {
    let mut status = eb.status.clone().unwrap_or_default();
    status.observed_generation = eb.metadata.generation;
    homelab_api::conditions::set_outcome(
        &mut status.conditions,
        &problem.outcome(),
        eb.metadata.generation,
        now,
    );
    Decision::Refuse(Refusal {
        retry: retry_after(&problem),
        warn: !problem.already_said(eb.status.as_ref()),
        problem,
        status,
    })
}

/// How long until a refused EtcdBackup is looked at again: soon for what appears
/// without its spec changing (a Secret or claim created, neither of which the
/// controller may watch), else only now and then (a spec change wakes the
/// reconcile at once).
fn retry_after(problem: &Problem) -> Duration {
    if [reasons::REFERENCE_NOT_FOUND, DESTINATION_MISSING].contains(&problem.reason) {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(300)
    }
}

fn run(eb: &EtcdBackup, observed: &Observed, plan: &Plan, now: Timestamp) -> Run {
    let cluster = &observed.cluster;
    let uid = eb.uid().unwrap_or_default();
    let cronjob = cluster.cronjob.as_ref().map(|cj| &cj.metadata);
    let (trusted, ignored) =
        provenance::trusted_pods(&uid, cronjob, &cluster.jobs, cluster.pods.clone());
    let runs = status::runs_from_pods(&trusted);
    let facts = Facts {
        now,
        next_run: (!eb.spec.suspend)
            .then(|| plan.schedule.next_after(now, &plan.tz))
            .flatten(),
        stale_after: plan.stale_after,
        created: eb.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0),
    };
    let computed = status::compute(eb, &runs, &facts);
    let mut status = computed.status;
    let before = eb.status.clone().unwrap_or_default();
    let (listed, newly_ignored) = ignored_pods(&before.ignored_pods, &ignored);
    status.ignored_pods = listed;

    let mut notes: Vec<Note> = newly_ignored
        .iter()
        .map(|(pod, why)| Note {
            warning: true,
            reason: UNTRUSTED_REPORT,
            message: format!(
                "ignored pod {pod}: it carries the label {BACKUP_LABEL}={} but is no run of CronJob {}: {why}",
                eb.name_any(),
                build::cronjob_name(eb)
            ),
        })
        .collect();
    if let Some(b) = &status.last_successful_backup
        && before.last_successful_backup.as_ref() != Some(b)
    {
        notes.push(Note {
            warning: false,
            reason: reasons::BACKUP_SUCCEEDED,
            message: format!("verified backup {} ({} bytes)", b.location, b.size_bytes),
        });
    }
    let failures = status::new_failures(before.last_failed_run.as_ref(), &runs);
    notes.extend(failures.iter().map(|run: &&FinishedRun| Note {
        warning: true,
        reason: reasons::BACKUP_FAILED,
        message: format!("backup run {} failed: {}", run.pod, run.error()),
    }));
    if status::is_stale(&status) && !status::is_stale(&before) {
        let message = status
            .conditions
            .iter()
            .find(|c| c.type_ == types::STALE)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        notes.push(Note {
            warning: true,
            reason: reasons::NO_RECENT_BACKUP,
            message,
        });
    }
    let wake_in = [computed.stale_at, facts.next_run]
        .into_iter()
        .flatten()
        .map(|at| at.duration_since(now).unsigned_abs() + Duration::from_secs(1))
        .min();
    Run {
        status,
        notes,
        new_failures: failures.len(),
        wake_in,
    }
}

/// The pods `status.ignoredPods` lists, and those among them it did not list
/// before (with why), to announce. A pod is listed once it plainly is no run of the
/// backup ([`Distrust::is_definite`]), and stays listed while it exists and its
/// report is ignored; at most [`MAX_IGNORED_PODS`], those listed before first.
fn ignored_pods(
    listed: &[IgnoredPod],
    ignored: &[(Pod, Distrust)],
) -> (Vec<IgnoredPod>, Vec<(String, Distrust)>) {
    let before: BTreeMap<&str, &IgnoredPod> = listed.iter().map(|p| (p.pod.as_str(), p)).collect();
    let mut candidates: Vec<(bool, IgnoredPod, &Distrust)> = ignored
        .iter()
        .filter_map(|(pod, why)| {
            let name = pod.name_any();
            let was = before.get(name.as_str()).copied();
            let listed = if why.is_definite() {
                IgnoredPod {
                    pod: name,
                    reason: why.to_string(),
                }
            } else {
                was?.clone()
            };
            Some((was.is_none(), listed, why))
        })
        .collect();
    candidates.sort_by(|a, b| (a.0, &a.1.pod).cmp(&(b.0, &b.1.pod)));
    candidates.truncate(MAX_IGNORED_PODS);
    let newly = candidates
        .iter()
        .filter(|(new, _, _)| *new)
        .map(|(_, p, why)| (p.pod.clone(), (*why).clone()))
        .collect();
    let mut pods: Vec<IgnoredPod> = candidates.into_iter().map(|(_, p, _)| p).collect();
    pods.sort_by(|a, b| a.pod.cmp(&b.pod));
    (pods, newly)
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
