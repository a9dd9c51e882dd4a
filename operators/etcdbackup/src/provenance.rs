//! Which pods' reports count (pure). A run's result arrives as a pod's termination
//! message, and the pods are found by a label anyone who can create a pod in the
//! namespace can set. So a report counts only from a pod the chain of controllers
//! ties to this EtcdBackup: the pod's controller is a Job, and that Job's controller
//! is the CronJob this EtcdBackup controls, matched by UID (names can be reused).

use std::fmt;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// Why a pod's report does not count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Distrust {
    /// The EtcdBackup controls no CronJob (yet): nothing can be a run of it.
    NoCronJob,
    /// The pod has no controller.
    NoController,
    /// The pod's controller is not a Job.
    NotAJob {
        /// Its kind and name, such as `ReplicaSet web-7d9f`.
        controller: String,
    },
    /// The pod's Job is not there (deleted since, or never labelled as a run).
    UnknownJob {
        /// The Job's name.
        job: String,
    },
    /// The pod's Job was not created by this EtcdBackup's CronJob.
    ForeignJob {
        /// The Job's name.
        job: String,
    },
}

impl Distrust {
    /// Whether the pod shows itself as no run of the backup, whatever happens
    /// next. A pod whose Job is merely gone (the CronJob's history limit deletes
    /// Jobs before their pods) or that came before the CronJob was read is not.
    #[must_use]
    pub fn is_definite(&self) -> bool {
        matches!(
            self,
            Self::NoController | Self::NotAJob { .. } | Self::ForeignJob { .. }
        )
    }
}

impl fmt::Display for Distrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCronJob => write!(f, "the EtcdBackup has no CronJob of its own yet"),
            Self::NoController => write!(f, "no Job controls it"),
            Self::NotAJob { controller } => write!(f, "its controller is {controller}, not a Job"),
            Self::UnknownJob { job } => write!(f, "its Job {job} is not a run of the backup"),
            Self::ForeignJob { job } => {
                write!(f, "its Job {job} was not created by the backup's CronJob")
            }
        }
    }
}

/// The controller reference of `meta`, if any.
fn controller(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

fn is_batch(owner: &OwnerReference, kind: &str) -> bool {
    owner.kind == kind && owner.api_version.starts_with("batch/")
}

/// The UID of `cronjob` if `backup_uid` controls it: only then do its Jobs speak
/// for the backup (a CronJob of the same name made by someone else does not).
#[must_use]
pub fn owned_cronjob_uid<'a>(cronjob: &'a ObjectMeta, backup_uid: &str) -> Option<&'a str> {
    controller(cronjob)
        .is_some_and(|o| o.uid == backup_uid)
        .then_some(cronjob.uid.as_deref())
        .flatten()
}

/// Whether `pod`'s report counts for the CronJob with `cronjob_uid`, given the Jobs
/// of the namespace that carry the backup's label.
///
/// # Errors
/// Why it does not.
pub fn check(
    pod: &ObjectMeta,
    jobs: &[ObjectMeta],
    cronjob_uid: Option<&str>,
) -> Result<(), Distrust> {
    let owner = controller(pod).ok_or(Distrust::NoController)?;
    if !is_batch(owner, "Job") {
        return Err(Distrust::NotAJob {
            controller: format!("{} {}", owner.kind, owner.name),
        });
    }
    let cronjob_uid = cronjob_uid.ok_or(Distrust::NoCronJob)?;
    let job = jobs
        .iter()
        .find(|j| j.uid.as_deref() == Some(owner.uid.as_str()))
        .ok_or_else(|| Distrust::UnknownJob {
            job: owner.name.clone(),
        })?;
    match controller(job) {
        Some(o) if is_batch(o, "CronJob") && o.uid == cronjob_uid => Ok(()),
        _ => Err(Distrust::ForeignJob {
            job: owner.name.clone(),
        }),
    }
}

/// The pods whose reports count for the backup with `backup_uid`, and the rest
/// with why not. `cronjob` is its CronJob as read (none yet: nothing counts),
/// `jobs` the Jobs with the backup's label.
#[must_use]
pub fn trusted_pods(
    backup_uid: &str,
    cronjob: Option<&ObjectMeta>,
    jobs: &[ObjectMeta],
    pods: Vec<Pod>,
) -> (Vec<Pod>, Vec<(Pod, Distrust)>) {
    let cronjob_uid = cronjob.and_then(|cj| owned_cronjob_uid(cj, backup_uid));
    let mut trusted = Vec::new();
    let mut ignored = Vec::new();
    for pod in pods {
        match check(&pod.metadata, jobs, cronjob_uid) {
            Ok(()) => trusted.push(pod),
            Err(why) => ignored.push((pod, why)),
        }
    }
    (trusted, ignored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(
        api_version: &str,
        kind: &str,
        name: &str,
        uid: &str,
        controls: bool,
    ) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(controls),
            block_owner_deletion: None,
        }
    }

    fn meta(name: &str, uid: &str, owners: Vec<OwnerReference>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            uid: Some(uid.into()),
            owner_references: Some(owners),
            ..ObjectMeta::default()
        }
    }

    fn cronjob_owned_by(backup_uid: &str) -> ObjectMeta {
        let eb = owner(
            "homelab.home.arpa/v1alpha1",
            "EtcdBackup",
            "cluster",
            backup_uid,
            true,
        );
        meta("cluster-etcd-backup", "cj-uid", vec![eb])
    }

    fn job(name: &str, uid: &str, cronjob_uid: &str) -> ObjectMeta {
        let cj = owner(
            "batch/v1",
            "CronJob",
            "cluster-etcd-backup",
            cronjob_uid,
            true,
        );
        meta(name, uid, vec![cj])
    }

    fn pod_of(job: &str, job_uid: &str) -> ObjectMeta {
        meta(
            &format!("{job}-x"),
            "pod-uid",
            vec![owner("batch/v1", "Job", job, job_uid, true)],
        )
    }

    #[test]
    fn a_pod_of_a_job_of_the_cronjob_counts() {
        let cj = cronjob_owned_by("eb-uid");
        let uid = owned_cronjob_uid(&cj, "eb-uid");
        assert_eq!(uid, Some("cj-uid"));
        let jobs = [job("run-1", "job-uid", "cj-uid")];
        assert_eq!(check(&pod_of("run-1", "job-uid"), &jobs, uid), Ok(()));
    }

    #[test]
    fn a_cronjob_someone_else_controls_speaks_for_no_backup() {
        assert_eq!(
            owned_cronjob_uid(&cronjob_owned_by("other"), "eb-uid"),
            None
        );
        let orphan = meta("cluster-etcd-backup", "cj-uid", vec![]);
        assert_eq!(owned_cronjob_uid(&orphan, "eb-uid"), None);
        let jobs = [job("run-1", "job-uid", "cj-uid")];
        let err = check(&pod_of("run-1", "job-uid"), &jobs, None).unwrap_err();
        assert_eq!(err, Distrust::NoCronJob);
        assert!(!err.is_definite());
    }

    #[test]
    fn a_labelled_pod_without_the_chain_does_not_count() {
        let jobs = [
            job("run-1", "job-uid", "cj-uid"),
            // A Job made by hand that carries the label, or one of another CronJob.
            meta("forged", "forged-uid", vec![]),
            job("other", "other-uid", "another-cronjob"),
        ];
        let cj = Some("cj-uid");
        let cases = [
            (meta("bare", "p", vec![]), Distrust::NoController),
            (
                // An owner that is not the controller does not count either.
                meta(
                    "adopted",
                    "p",
                    vec![owner("batch/v1", "Job", "run-1", "job-uid", false)],
                ),
                Distrust::NoController,
            ),
            (
                meta(
                    "rs",
                    "p",
                    vec![owner("apps/v1", "ReplicaSet", "web", "rs-uid", true)],
                ),
                Distrust::NotAJob {
                    controller: "ReplicaSet web".into(),
                },
            ),
            (
                // The Job's name, with another UID: a name proves nothing.
                pod_of("run-1", "not-the-job-uid"),
                Distrust::UnknownJob {
                    job: "run-1".into(),
                },
            ),
            (
                pod_of("forged", "forged-uid"),
                Distrust::ForeignJob {
                    job: "forged".into(),
                },
            ),
            (
                pod_of("other", "other-uid"),
                Distrust::ForeignJob {
                    job: "other".into(),
                },
            ),
        ];
        for (pod, why) in cases {
            assert_eq!(check(&pod, &jobs, cj), Err(why.clone()), "{pod:?}");
            assert!(!why.to_string().is_empty());
        }
        assert!(Distrust::ForeignJob { job: "x".into() }.is_definite());
        assert!(!Distrust::UnknownJob { job: "x".into() }.is_definite());
    }

    #[test]
    fn a_job_whose_cronjob_is_only_an_owner_not_its_controller_does_not_count() {
        let mut j = job("run-1", "job-uid", "cj-uid");
        if let Some(o) = j.owner_references.as_mut().and_then(|o| o.first_mut()) {
            o.controller = Some(false);
        }
        let err = check(&pod_of("run-1", "job-uid"), &[j], Some("cj-uid")).unwrap_err();
        assert_eq!(
            err,
            Distrust::ForeignJob {
                job: "run-1".into()
            }
        );
    }

    #[test]
    fn only_pods_of_the_cronjobs_jobs_are_trusted() {
        let cj = cronjob_owned_by("eb-uid");
        let jobs = [job("run-1", "job-uid", "cj-uid")];
        let pod = |meta| Pod {
            metadata: meta,
            ..Pod::default()
        };
        let pods = vec![
            pod(pod_of("run-1", "job-uid")),
            pod(meta("forged", "f", vec![])),
        ];
        let (trusted, ignored) = trusted_pods("eb-uid", Some(&cj), &jobs, pods.clone());
        let names = |pods: &[Pod]| -> Vec<String> {
            pods.iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect()
        };
        assert_eq!(names(&trusted), ["run-1-x"]);
        assert_eq!(ignored.len(), 1);
        assert_eq!(ignored[0].1, Distrust::NoController);
        // Before the CronJob is read (just created), nothing counts.
        let (trusted, _) = trusted_pods("eb-uid", None, &jobs, pods);
        assert!(trusted.is_empty());
    }
}
