//! The caches an EtcdBackup's reconcile reads instead of the API server, each
//! filled by one of the runner's watches (the EtcdBackups themselves are the
//! runner's own store), and what of each watched object wakes which backups.
//!
//! Secrets and claims are not among them: the controller may only `get` those, and
//! only in the namespaces it honours, so it reads the few a backup names by name
//! ([`crate::observed`]).

use homelab_api::EtcdBackup;
use homelab_kit::Runner;
use homelab_kit::cache::{self, hash_of};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::build::{self, BACKUP_LABEL};

/// Every cache a reconcile reads.
#[derive(Clone)]
pub struct Caches {
    /// The CronJobs backups own, without their status.
    pub cronjobs: Store<CronJob>,
    /// The Jobs with the backup label, metadata only: a Job matters only as the
    /// link between a pod and the CronJob that made it.
    pub jobs: Store<PartialObjectMeta<Job>>,
    /// The pods with the backup label, trimmed to their owners and how their
    /// containers ended ([`trim_pod`]).
    pub pods: Store<Pod>,
}

homelab_kit::debug_by_name!(Caches);

/// What the caches hold of one backup's runs when its reconcile starts.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    /// Its CronJob as it is now.
    pub cronjob: Option<CronJob>,
    /// The metadata of the Jobs that carry its label.
    pub jobs: Vec<ObjectMeta>,
    /// The pods that carry its label, whoever made them.
    pub pods: Vec<Pod>,
}

impl Caches {
    /// Adds the watches to `runner` (in its watched namespace, or every namespace):
    /// the CronJobs it owns, and the Jobs and pods with the backup label. A run
    /// starting or ending (or its Job deleted by the history limit) changes which
    /// pods' reports count; a finished run's report arrives as a pod status change.
    pub fn watch(runner: &mut Runner<EtcdBackup>) -> Self {
        let cronjobs = runner.owns_cached(trim_cronjob, cronjob_relevance);
        let jobs = runner.watches_cached(
            runner.scoped_api::<PartialObjectMeta<Job>>(),
            watcher::Config::default().labels(BACKUP_LABEL),
            cache::trim::<PartialObjectMeta<Job>>,
            job_relevance,
            |job: &PartialObjectMeta<Job>| labelled(job.meta()),
        );
        let pods = runner.watches_cached(
            runner.scoped_api::<Pod>(),
            watcher::Config::default().labels(BACKUP_LABEL),
            trim_pod,
            pod_relevance,
            |pod: &Pod| labelled(&pod.metadata),
        );
        Self {
            cronjobs,
            jobs,
            pods,
        }
    }

    /// What `eb`'s runs look like, as the caches hold them now.
    #[must_use]
    pub fn observe(&self, eb: &EtcdBackup) -> Cluster {
        let name = eb.name_any();
        let ns = eb.namespace();
        let ours = |meta: &ObjectMeta| {
            meta.namespace == ns
                && meta.labels.as_ref().and_then(|l| l.get(BACKUP_LABEL)) == Some(&name)
        };
        let cronjob = ns.as_deref().and_then(|ns| {
            self.cronjobs
                .get(&ObjectRef::new(&build::cronjob_name(eb)).within(ns))
                .map(|cj| (*cj).clone())
        });
        Cluster {
            cronjob,
            jobs: self
                .jobs
                .state()
                .iter()
                .filter(|j| ours(&j.metadata))
                .map(|j| j.metadata.clone())
                .collect(),
            pods: self
                .pods
                .state()
                .iter()
                .filter(|p| ours(&p.metadata))
                .map(|p| (**p).clone())
                .collect(),
        }
    }
}

/// The backup an object's label names, in its namespace.
fn labelled(meta: &ObjectMeta) -> Option<ObjectRef<EtcdBackup>> {
    let backup = meta.labels.as_ref()?.get(BACKUP_LABEL)?;
    let ns = meta.namespace.as_deref().unwrap_or_default();
    Some(ObjectRef::new(backup).within(ns))
}

/// A CronJob without its status (the Jobs it has running, when it last ran): the
/// reconcile compares the spec it applies and follows the runs through their Jobs.
pub fn trim_cronjob(cj: &mut CronJob) {
    cache::trim_metadata(&mut cj.metadata);
    cj.status = None;
}

/// What says someone else changed a backup's CronJob (a new generation, its labels,
/// annotations or owners, the hash of what was applied), or that it goes.
fn cronjob_relevance(cj: &CronJob) -> Option<u64> {
    Some(hash_of(&(
        cj.metadata.generation,
        &cj.metadata.labels,
        &cj.metadata.annotations,
        &cj.metadata.owner_references,
        &cj.metadata.deletion_timestamp,
    )))
}

/// A Job links a pod to the CronJob: its owners, and whether it is going.
fn job_relevance(job: &PartialObjectMeta<Job>) -> Option<u64> {
    Some(hash_of(&(
        &job.metadata.owner_references,
        &job.metadata.deletion_timestamp,
    )))
}

/// A pod as the reconcile reads it: its metadata (name, label, owners) and, of its
/// containers, only how they ended (the run's report is the termination message).
pub fn trim_pod(pod: &mut Pod) {
    cache::trim_metadata(&mut pod.metadata);
    pod.spec = None;
    pod.status = pod.status.take().map(|status| PodStatus {
        container_statuses: status.container_statuses.map(|statuses| {
            statuses
                .into_iter()
                .map(|c| ContainerStatus {
                    name: c.name,
                    state: c.state.map(|s| ContainerState {
                        terminated: s.terminated,
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                })
                .collect()
        }),
        ..PodStatus::default()
    });
}

/// What of a pod the reconcile reads: who controls it (whether its report counts),
/// how its containers ended, and whether it is going.
fn pod_relevance(pod: &Pod) -> Option<u64> {
    let ended: Vec<_> = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref().and_then(|s| s.terminated.as_ref()))
        .collect();
    Some(hash_of(&(
        &pod.metadata.owner_references,
        ended,
        &pod.metadata.deletion_timestamp,
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn run_pod(message: Option<&str>) -> Pod {
        let state = match message {
            Some(m) => json!({"terminated": {"exitCode": 0, "message": m,
                                             "finishedAt": "2026-01-01T01:00:00Z"}}),
            None => json!({"running": {"startedAt": "2026-01-01T00:59:00Z"}}),
        };
        serde_json::from_value(json!({
            "metadata": {"name": "cluster-run-1-x", "namespace": "homelab",
                         "labels": {BACKUP_LABEL: "cluster"},
                         "managedFields": [{"manager": "kubelet"}],
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                             "name": "cluster-run-1", "uid": "job-uid", "controller": true}]},
            "spec": {"nodeName": "cp-1", "hostNetwork": true,
                     "containers": [{"name": "snapshot", "image": "x", "args": ["snapshot"]}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "snapshot", "image": "x", "imageID": "y",
                                              "ready": true, "restartCount": 0, "state": state}]},
        }))
        .unwrap()
    }

    #[test]
    fn a_trimmed_pod_keeps_its_owners_and_how_it_ended() {
        let mut pod = run_pod(Some("{\"ok\":true}"));
        trim_pod(&mut pod);
        assert_eq!(
            serde_json::to_value(&pod).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "cluster-run-1-x", "namespace": "homelab",
                             "labels": {BACKUP_LABEL: "cluster"},
                             "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                                 "name": "cluster-run-1", "uid": "job-uid", "controller": true}]},
                "status": {"containerStatuses": [{
                    "name": "snapshot", "image": "", "imageID": "", "ready": false,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "message": "{\"ok\":true}",
                                             "finishedAt": "2026-01-01T01:00:00Z"}}}]},
            })
        );
    }

    #[test]
    fn a_pod_wakes_its_backup_when_it_ends_not_when_it_gets_ready() {
        let running = run_pod(None);
        let mut ready = running.clone();
        if let Some(s) = ready.status.as_mut() {
            s.phase = Some("Succeeded".into());
        }
        assert_eq!(pod_relevance(&running), pod_relevance(&ready));
        let ended = run_pod(Some("{\"ok\":true}"));
        assert_ne!(pod_relevance(&running), pod_relevance(&ended));
        let mut orphaned = ended.clone();
        orphaned.metadata.owner_references = None;
        assert_ne!(pod_relevance(&ended), pod_relevance(&orphaned));
    }

    #[test]
    fn a_trimmed_cronjob_keeps_its_spec_not_its_status() {
        let mut cj: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "cluster-etcd-backup", "managedFields": [{"manager": "x"}]},
            "spec": {"schedule": "@hourly", "jobTemplate": {}},
            "status": {"lastScheduleTime": "2026-01-01T01:00:00Z"},
        }))
        .unwrap();
        let before = cronjob_relevance(&cj);
        trim_cronjob(&mut cj);
        assert!(cj.metadata.managed_fields.is_none() && cj.status.is_none());
        assert_eq!(cj.spec.schedule, "@hourly");
        assert_eq!(cronjob_relevance(&cj), before);
    }
}
