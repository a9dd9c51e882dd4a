//! Observe: everything a reconcile reads, once, up front, so that what follows it
//! ([`crate::decide`]) is a pure function of the backup, this, and the clock.
//!
//! The runs come from the runner's caches ([`crate::caches`]). The Secrets and the
//! claim the spec names are the reads that leave the process (GET by name: the
//! controller may not list or watch them), and only for a backup the
//! administrator's policy admits: outside the allowed namespaces the controller
//! has no business there (nor the rights).

use std::collections::{BTreeMap, BTreeSet};

use homelab_api::EtcdBackup;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::{Api, Client, ResourceExt};

use crate::caches::{Caches, Cluster};
use crate::error::Error;
use crate::policy::Policy;
use crate::validate::{self, Problem};

/// What the world looked like when the reconcile started.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Whether the administrator's policy honours the backup here, with these host
    /// paths (when not, nothing else was read of its namespace).
    pub admitted: Result<(), Problem>,
    /// The keys each Secret the spec names holds, by name (`None`: no such
    /// Secret); never their values.
    pub secrets: BTreeMap<String, Option<BTreeSet<String>>>,
    /// Whether the claim the spec backs up to exists (true when it names none).
    pub claim_exists: bool,
    /// Its CronJob, Jobs and pods, from the caches.
    pub cluster: Cluster,
}

/// Reads what `eb` depends on: the caches, and the Secrets and claim it names.
///
/// # Errors
/// [`Error::Read`] when a GET fails.
pub async fn observe(
    eb: &EtcdBackup,
    policy: &Policy,
    caches: &Caches,
    client: &Client,
) -> Result<Observed, Error> {
    let cluster = caches.observe(eb);
    let admitted = policy.admit(eb);
    let (secrets, claim_exists) = match (&admitted, eb.namespace()) {
        (Ok(()), Some(ns)) => (
            read_secrets(&Api::namespaced(client.clone(), &ns), eb).await?,
            claim_exists(&Api::namespaced(client.clone(), &ns), eb).await?,
        ),
        _ => (BTreeMap::new(), true),
    };
    Ok(Observed {
        admitted,
        secrets,
        claim_exists,
        cluster,
    })
}

/// The keys of each Secret the spec names, each read once (get, never list).
async fn read_secrets(
    api: &Api<Secret>,
    eb: &EtcdBackup,
) -> Result<BTreeMap<String, Option<BTreeSet<String>>>, Error> {
    let mut secrets = BTreeMap::new();
    for (name, _) in validate::secret_keys(eb) {
        if secrets.contains_key(&name) {
            continue;
        }
        let got = api
            .get_opt(&name)
            .await
            .map_err(|e| Error::Read(homelab_kit::Error::kube(format!("get Secret {name}"), e)))?;
        let keys = got.map(|s| {
            let data = s.data.into_iter().flat_map(BTreeMap::into_keys);
            let string_data = s.string_data.into_iter().flat_map(BTreeMap::into_keys);
            data.chain(string_data).collect()
        });
        secrets.insert(name, keys);
    }
    Ok(secrets)
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
