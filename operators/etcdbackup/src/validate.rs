//! Validate (pure): what of a spec only the controller can check, from the spec and
//! what was read of the namespace. The schema and the admission policy refuse the
//! rest before an EtcdBackup is stored; [`crate::policy`] says where it is honoured.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use homelab_api::EtcdBackup;
use homelab_api::conditions::reasons;
use homelab_api::etcdbackup::Datastore;
use jiff::Timestamp;
use kube::ResourceExt;

use crate::build;
use crate::schedule::{self, Schedule};

/// Condition reason: `spec.destination.pvc.claimName` names no claim in the namespace.
pub const DESTINATION_MISSING: &str = "DestinationMissing";

/// A spec the controller cannot act on.
pub use homelab_kit::Problem;

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
/// the `secret/key` pairs that are not there, see [`missing_keys`]). `now` is where
/// the schedule's gaps are measured from.
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

/// The `(secret, key)` pairs the spec names: the S3 credentials and CA, and for
/// etcd over a Secret's certificate, its three files.
#[must_use]
pub fn secret_keys(eb: &EtcdBackup) -> Vec<(String, String)> {
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

/// The pairs of [`secret_keys`] not found in `secrets` (the keys each Secret
/// holds, by name; `None`: no such Secret), as the status names them.
#[must_use]
pub fn missing_keys(
    eb: &EtcdBackup,
    secrets: &BTreeMap<String, Option<BTreeSet<String>>>,
) -> Vec<String> {
    secret_keys(eb)
        .into_iter()
        .filter(|(name, key)| {
            let has = secrets
                .get(name)
                .and_then(Option::as_ref)
                .is_some_and(|keys| keys.contains(key));
            !has
        })
        .map(|(name, key)| format!("Secret {name} key {key}"))
        .collect()
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use homelab_api::etcdbackup::EtcdBackupSpec;
    use serde_json::json;

    fn backup(name: &str, spec: serde_json::Value) -> EtcdBackup {
        let spec: EtcdBackupSpec = serde_json::from_value(spec).unwrap();
        let mut b = EtcdBackup::new(name, spec);
        b.metadata.namespace = Some("homelab".into());
        b
    }

    fn hourly(destination: serde_json::Value) -> EtcdBackup {
        backup(
            "cluster",
            json!({
                "schedule": "@hourly",
                "source": {"distribution": "Kubeadm"},
                "destination": destination,
            }),
        )
    }

    fn now() -> Timestamp {
        "2026-01-01T00:30:00Z".parse().unwrap()
    }

    #[test]
    fn a_valid_spec_is_stale_after_twice_its_longest_gap_unless_it_says() {
        let b = hourly(json!({"hostPath": {"path": "/var/backups"}}));
        let plan = validate(&b, &[], now()).unwrap();
        assert_eq!(plan.stale_after, Duration::from_secs(7200));
        let mut b = b;
        b.spec.stale_after = Some(serde_json::from_value(json!("20s")).unwrap());
        assert_eq!(
            validate(&b, &[], now()).unwrap().stale_after,
            Duration::from_secs(20)
        );
    }

    #[test]
    fn what_only_the_controller_checks_is_an_invalid_spec() {
        let long = "x".repeat(build::MAX_NAME + 1);
        let b = backup(
            &long,
            json!({"schedule": "@hourly", "source": {"distribution": "Kubeadm"},
                   "destination": {"hostPath": {"path": "/var/backups"}}}),
        );
        let problem = validate(&b, &[], now()).unwrap_err();
        assert_eq!(problem.reason, reasons::INVALID_SPEC);
        assert!(problem.message.contains("at most"), "{}", problem.message);

        let mut b = hourly(json!({"hostPath": {"path": "/var/backups"}}));
        b.spec.time_zone = Some("Mars/Olympus_Mons".into());
        assert_eq!(
            validate(&b, &[], now()).unwrap_err().reason,
            reasons::INVALID_SPEC
        );
        // 30 February never comes.
        let mut b = hourly(json!({"hostPath": {"path": "/var/backups"}}));
        b.spec.schedule = "0 0 30 2 *".into();
        let problem = validate(&b, &[], now()).unwrap_err();
        assert!(
            problem.message.contains("never fires"),
            "{}",
            problem.message
        );
    }

    fn talos() -> EtcdBackup {
        backup(
            "talos",
            json!({"schedule": "@daily",
                   "source": {"distribution": "Talos", "tls": {"secretName": "etcd-client"}},
                   "destination": {"s3": {"bucket": "b",
                       "accessKeyIdSecretRef": {"name": "s3", "key": "id"},
                       "secretAccessKeySecretRef": {"name": "s3", "key": "secret"}}}}),
        )
    }

    fn secret(keys: &[&str]) -> Option<BTreeSet<String>> {
        Some(keys.iter().map(|k| (*k).to_owned()).collect())
    }

    #[test]
    fn missing_secret_keys_are_named_and_refuse_the_spec() {
        let b = talos();
        assert_eq!(
            secret_keys(&b)
                .iter()
                .map(|(s, k)| format!("{s}/{k}"))
                .collect::<Vec<_>>(),
            [
                "s3/id",
                "s3/secret",
                "etcd-client/ca.crt",
                "etcd-client/tls.crt",
                "etcd-client/tls.key"
            ]
        );
        let secrets = BTreeMap::from([
            ("s3".to_owned(), secret(&["id", "secret"])),
            ("etcd-client".to_owned(), None),
        ]);
        let missing = missing_keys(&b, &secrets);
        assert_eq!(
            missing,
            [
                "Secret etcd-client key ca.crt",
                "Secret etcd-client key tls.crt",
                "Secret etcd-client key tls.key"
            ]
        );
        let problem = validate(&b, &missing, now()).unwrap_err();
        assert_eq!(problem.reason, reasons::REFERENCE_NOT_FOUND);
        assert!(
            problem
                .message
                .starts_with("missing in namespace homelab: Secret etcd-client key ca.crt"),
            "{}",
            problem.message
        );
        let all = BTreeMap::from([
            ("s3".to_owned(), secret(&["id", "secret"])),
            (
                "etcd-client".to_owned(),
                secret(&["ca.crt", "tls.crt", "tls.key"]),
            ),
        ]);
        assert!(missing_keys(&b, &all).is_empty());
    }

    #[test]
    fn a_missing_claim_is_a_problem_only_for_a_claim_destination() {
        let b = hourly(json!({"pvc": {"claimName": "etcd-backups"}}));
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
        let b = hourly(json!({"hostPath": {"path": "/var/backups"}}));
        assert_eq!(missing_destination(&b, false), None);
    }
}
