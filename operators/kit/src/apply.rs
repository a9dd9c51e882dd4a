//! Server-side apply with one field manager per controller, owner
//! references, and status writes that happen only when the status changed.
//!
//! A controller owns what it creates: it applies the whole desired object
//! with `force` (taking over fields another manager grabbed by accident) and
//! never writes `spec` of the objects it reconciles, only their `status`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Error;
use crate::kinds::Applied;

/// The object versions a controller's own applies stored, by uid: a watch
/// event carrying one of them is the echo of a write whose result the
/// reconcile that made it already used, and need wake nothing.
#[derive(Debug, Default)]
pub struct OwnWrites {
    versions: Mutex<HashMap<String, String>>,
    /// The generation each apply stored, by uid, for as long as the process
    /// runs: a later generation means someone else changed the spec.
    generations: Mutex<HashMap<String, i64>>,
}

/// More than this many unclaimed echoes means the watch is not looking at what
/// the controller writes (a namespace it does not watch): start over.
const MAX_OWN_WRITES: usize = 16_384;

impl OwnWrites {
    /// Remembers the version an apply stored, and its generation.
    pub fn record(&self, meta: &ObjectMeta) {
        self.record_version(meta);
        if let (Some(uid), Some(generation)) = (&meta.uid, meta.generation) {
            let mut generations = self
                .generations
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if generations.len() >= MAX_OWN_WRITES {
                generations.clear();
            }
            generations.insert(uid.clone(), generation);
        }
    }

    /// Remembers the version a write stored (a status write, which leaves the
    /// generation alone).
    pub fn record_version(&self, meta: &ObjectMeta) {
        let (Some(uid), Some(version)) = (&meta.uid, &meta.resource_version) else {
            return;
        };
        let mut versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
        if versions.len() >= MAX_OWN_WRITES {
            versions.clear();
        }
        versions.insert(uid.clone(), version.clone());
    }

    /// Whether `meta`'s generation is the one this controller's last apply of
    /// that object stored (`false` when it has not applied it since it started).
    #[must_use]
    pub fn generation_is_own(&self, meta: &ObjectMeta) -> bool {
        let (Some(uid), Some(generation)) = (&meta.uid, meta.generation) else {
            return false;
        };
        self.generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(uid)
            == Some(&generation)
    }

    /// Whether `meta` is the version this controller's last apply of that
    /// object stored; forgets it either way once a newer one is seen.
    pub fn is_echo(&self, meta: &ObjectMeta) -> bool {
        let (Some(uid), Some(version)) = (&meta.uid, &meta.resource_version) else {
            return false;
        };
        let mut versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
        match versions.get(uid) {
            Some(own) if own == version => {
                versions.remove(uid);
                true
            }
            Some(_) => {
                versions.remove(uid);
                false
            }
            None => false,
        }
    }
}

/// What the cache an applied object is read from keeps of it, which decides
/// how [`FieldManager::apply_unless_current`] tells that it already is what is
/// desired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// The whole object: every desired field is compared.
    Whole,
    /// Its metadata and status, not its spec (a Deployment's pod template is
    /// most of its size): the labels, annotations and the generation this
    /// controller's last apply stored stand in for the spec.
    WithoutSpec,
}

/// How a status is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StatusPatch {
    /// Server-side apply on the `status` subresource with the controller's
    /// field manager. Fields the controller stops setting are removed.
    #[default]
    Apply,
    /// A JSON merge patch `{"status": ...}`: replaces the fields given,
    /// leaves others alone.
    Merge,
}

/// A controller's field manager: the name under which all its writes are
/// recorded in `metadata.managedFields`.
#[derive(Clone, Debug)]
pub struct FieldManager {
    name: String,
    /// The versions its applies stored, which the runner's watches of owned
    /// kinds recognise as its own.
    own: Arc<OwnWrites>,
}

impl FieldManager {
    /// A field manager, usually the controller's name
    /// (`"mediaserver-controller"`).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            own: Arc::default(),
        }
    }

    /// The versions this manager's applies stored.
    #[must_use]
    pub fn own_writes(&self) -> Arc<OwnWrites> {
        self.own.clone()
    }

    /// The field manager's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Patch parameters for server-side apply, forcing ownership of the
    /// fields applied.
    #[must_use]
    pub fn apply_params(&self) -> PatchParams {
        PatchParams::apply(&self.name).force()
    }

    /// Server-side applies `desired` (an object this controller owns) and
    /// returns the object as stored.
    ///
    /// `apiVersion` and `kind` are filled in when the type does not
    /// serialize them; `resourceVersion`, `managedFields` and
    /// `creationTimestamp` are dropped, so a desired object built from a
    /// read one still applies.
    ///
    /// # Errors
    /// [`Error::MissingName`] without `metadata.name`, [`Error::Serialize`],
    /// [`Error::Refused`] when the API server refuses the object as invalid,
    /// or [`Error::Kube`] when the request fails otherwise.
    pub async fn apply<C: Applied>(&self, api: &Api<C>, desired: &C) -> Result<C, Error> {
        let kind = C::kind(&());
        let name = desired
            .meta()
            .name
            .clone()
            .ok_or_else(|| Error::MissingName {
                kind: kind.to_string(),
            })?;
        let body = apply_body(desired)?;
        let stored = api
            .patch(&name, &self.apply_params(), &Patch::Apply(&body))
            .await
            .map_err(|e| {
                // An invalid object stays invalid however often it is sent:
                // say so, so that the runner stalls instead of retrying.
                if crate::error::is_invalid(&e) {
                    Error::Refused {
                        kind: kind.to_string(),
                        object: describe(desired),
                        source: e,
                    }
                } else {
                    Error::kube(format!("apply {kind} {}", describe(desired)), e)
                }
            })?;
        self.own.record(stored.meta());
        Ok(stored)
    }

    /// Applies `desired` unless `current` already is it, and returns the object
    /// as it now is and whether the API server stored a change.
    ///
    /// "Already is" needs the object to carry the hash of the last desired
    /// object applied ([`DESIRED_HASH_ANNOTATION`]): that sees a field the
    /// controller stopped setting, which comparing fields alone cannot. Beyond
    /// that it depends on what the cache `current` comes from keeps (see
    /// [`Kept`]): every desired field must still have its value, or, where the
    /// cache keeps no spec, every desired label and annotation must be there
    /// and the spec's generation must be the one this controller's own last
    /// apply stored. Either way someone else's edit is seen and undone, and a
    /// steady state writes nothing at all.
    ///
    /// # Errors
    /// As [`FieldManager::apply`].
    pub async fn apply_unless_current<C: Applied>(
        &self,
        api: &Api<C>,
        current: Option<&C>,
        kept: Kept,
        mut desired: C,
    ) -> Result<(C, bool), Error> {
        stamp_hash(&mut desired)?;
        if let Some(current) = current
            && self.already_is(current, &desired, kept)?
        {
            return Ok((current.clone(), false));
        }
        let stored = self.apply(api, &desired).await?;
        // An apply that changed nothing stores nothing: the version stays.
        let changed =
            current.is_none_or(|c| c.meta().resource_version != stored.meta().resource_version);
        Ok((stored, changed))
    }

    fn already_is<C: Applied>(&self, current: &C, desired: &C, kept: Kept) -> Result<bool, Error> {
        Ok(match kept {
            Kept::Whole => is_applied(&to_value(current)?, &to_value(desired)?),
            // After a restart the generation is not known yet: the first
            // reconcile applies once, which the API server answers without a
            // write when nothing differs.
            Kept::WithoutSpec => {
                self.own.generation_is_own(current.meta())
                    && is_applied(&to_value(current.meta())?, &to_value(desired.meta())?)
            }
        })
    }

    /// Writes `desired` as the status of `obj` when it differs from
    /// `current` (see [`status_differs`]).
    ///
    /// The write carries `obj`'s `resourceVersion` as a precondition: a status
    /// computed from a cached object that has changed since (say, a pod event
    /// ran a reconcile before the cache saw this controller's own last write)
    /// must not overwrite the newer status, or a record written a moment ago
    /// (a `lastFailover`, a finished backup) would be lost. Such a write is
    /// refused and reported as [`StatusWrite::Stale`]; the newer version is on
    /// its way to the cache and its reconcile writes the status again.
    ///
    /// # Errors
    /// [`Error::MissingName`], [`Error::Serialize`] or [`Error::Kube`].
    pub async fn apply_status<K, S>(
        &self,
        api: &Api<K>,
        obj: &K,
        current: Option<&S>,
        desired: &S,
        how: StatusPatch,
    ) -> Result<StatusWrite, Error>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug,
        S: Serialize,
    {
        let kind = K::kind(&());
        if !status_differs(current, desired)? {
            return Ok(StatusWrite::Unchanged);
        }
        let name = obj.meta().name.clone().ok_or_else(|| Error::MissingName {
            kind: kind.to_string(),
        })?;
        let mut metadata = serde_json::json!({ "name": name });
        if let Some(version) = &obj.meta().resource_version {
            metadata["resourceVersion"] = Value::String(version.clone());
        }
        let status = to_value(desired)?;
        let action = || format!("write status of {kind} {}", describe(obj));
        let written = match how {
            StatusPatch::Apply => {
                let body = serde_json::json!({
                    "apiVersion": K::api_version(&()),
                    "kind": kind,
                    "metadata": metadata,
                    "status": status,
                });
                api.patch_status(&name, &self.apply_params(), &Patch::Apply(&body))
                    .await
            }
            StatusPatch::Merge => {
                let body = serde_json::json!({ "metadata": metadata, "status": status });
                let params = PatchParams {
                    field_manager: Some(self.name.clone()),
                    ..PatchParams::default()
                };
                api.patch_status(&name, &params, &Patch::Merge(&body)).await
            }
        };
        match written {
            Ok(stored) => {
                // Its echo in the watch of `K` wakes nothing: this reconcile
                // is done with it.
                self.own.record_version(stored.meta());
                Ok(StatusWrite::Written)
            }
            Err(kube::Error::Api(refusal)) if refusal.code == 409 => {
                tracing::debug!(
                    object = %describe(obj),
                    read_version = obj.meta().resource_version.as_deref().unwrap_or_default(),
                    "status not written: the object changed since it was read"
                );
                Ok(StatusWrite::Stale)
            }
            Err(e) => Err(Error::kube(action(), e)),
        }
    }

    /// Sets `Ready`, `Reconciling` and `Stalled` for `outcome` (and
    /// `observedGeneration`) in the status of `obj`, whatever its kind,
    /// keeping every other status field as read. For what the kit itself
    /// concludes about an object (a refused child); a controller that knows
    /// its status type builds the whole status and uses
    /// [`FieldManager::apply_status`].
    ///
    /// `obj` must be fresh: the write carries its `resourceVersion`, and a
    /// stale one is [`StatusWrite::Stale`].
    ///
    /// # Errors
    /// [`Error::MissingName`], [`Error::Serialize`] or [`Error::Kube`].
    pub async fn write_outcome<K>(
        &self,
        api: &Api<K>,
        obj: &K,
        outcome: &homelab_api::conditions::Outcome,
        now: k8s_openapi::jiff::Timestamp,
    ) -> Result<StatusWrite, Error>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
    {
        let current = to_value(obj)?
            .get_mut("status")
            .map(Value::take)
            .unwrap_or(Value::Null);
        let desired = with_outcome(&current, outcome, obj.meta().generation, now)?;
        self.apply_status(api, obj, Some(&current), &desired, StatusPatch::Apply)
            .await
    }

    /// Applies `partial` (a status with only some fields set; unset ones must
    /// not serialize) onto the status of `obj` as stored now, whatever its
    /// version. For the record of something this reconcile has just done (a pod
    /// force-deleted, a restart), which must outlive a [`StatusWrite::Stale`]
    /// write: the newer version knows nothing of it, and the deed cannot be
    /// observed again.
    ///
    /// Written under a second field manager, `<name>-records`: applied under the
    /// controller's own, the partial status would remove every other status
    /// field it owns. The controller's next full status carries the record on
    /// and so shares it; a record is never taken away by either.
    ///
    /// # Errors
    /// [`Error::MissingName`], [`Error::Serialize`] or [`Error::Kube`].
    pub async fn record_in_status<K, S>(
        &self,
        api: &Api<K>,
        obj: &K,
        partial: &S,
    ) -> Result<(), Error>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug,
        S: Serialize,
    {
        let kind = K::kind(&());
        let name = obj.meta().name.clone().ok_or_else(|| Error::MissingName {
            kind: kind.to_string(),
        })?;
        let body = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": kind,
            "metadata": { "name": name },
            "status": to_value(partial)?,
        });
        let params = PatchParams::apply(&format!("{}-records", self.name)).force();
        api.patch_status(&name, &params, &Patch::Apply(&body))
            .await
            .map_err(|e| {
                Error::kube(
                    format!("record in the status of {kind} {}", describe(obj)),
                    e,
                )
            })?;
        Ok(())
    }
}

/// What [`FieldManager::apply_status`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusWrite {
    /// Nothing: the stored status already said this.
    Unchanged,
    /// The status was written.
    Written,
    /// Nothing: the object changed since it was read, and the status computed
    /// from the old version is not written over the new one.
    Stale,
}

impl StatusWrite {
    /// Whether the status was written.
    #[must_use]
    pub fn wrote(self) -> bool {
        self == Self::Written
    }
}

/// Checks the quantities of `resources`, found at `field` of a spec
/// (`spec.resources`), before a controller copies them into an object to
/// apply. The API server refuses a malformed quantity with an error that names
/// no field (HTTP 500, "quantities must match the regular expression"), so
/// the controller says which one it is.
///
/// # Errors
/// A message naming the first field whose value is not a quantity.
pub fn check_resources(
    field: &str,
    resources: &k8s_openapi::api::core::v1::ResourceRequirements,
) -> Result<(), String> {
    for (part, map) in [
        ("limits", &resources.limits),
        ("requests", &resources.requests),
    ] {
        for (name, quantity) in map.iter().flatten() {
            if !is_quantity(&quantity.0) {
                return Err(format!(
                    "{field}.{part}.{name}: {:?} is not a quantity: write a number with an optional suffix, such as 512Mi, 2Gi, 500m or 1",
                    quantity.0
                ));
            }
        }
    }
    Ok(())
}

/// Whether `s` is a Kubernetes quantity: an optionally signed decimal number
/// followed by nothing, a binary suffix (`Ki` … `Ei`), a decimal suffix (`n`,
/// `u`, `m`, `k`, `M` … `E`) or an exponent (`e3`, `E-2`).
#[must_use]
pub fn is_quantity(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    let dots = number.len() - digits;
    if digits == 0 || dots > 1 {
        return false;
    }
    let exponent = |e: &str| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    };
    match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T"
        | "P" | "E" => true,
        other => other.strip_prefix(['e', 'E']).is_some_and(exponent),
    }
}

/// `status` (any kind's, as JSON) with the kstatus trio set for `outcome` and
/// `observedGeneration` set to `generation`; every other field as it is.
fn with_outcome(
    status: &Value,
    outcome: &homelab_api::conditions::Outcome,
    generation: Option<i64>,
    now: k8s_openapi::jiff::Timestamp,
) -> Result<Value, Error> {
    let mut status = match status {
        Value::Object(fields) => fields.clone(),
        _ => serde_json::Map::new(),
    };
    let mut conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> =
        match status.get("conditions") {
            Some(list) if !list.is_null() => {
                serde_json::from_value(list.clone()).map_err(|source| Error::Serialize {
                    what: "status.conditions".to_owned(),
                    source,
                })?
            }
            _ => Vec::new(),
        };
    homelab_api::conditions::set_outcome(&mut conditions, outcome, generation, now);
    status.insert("conditions".to_owned(), to_value(&conditions)?);
    if let Some(generation) = generation {
        status.insert("observedGeneration".to_owned(), Value::from(generation));
    }
    Ok(Value::Object(status))
}

/// Annotation holding the hash of the desired object last applied by
/// [`FieldManager::apply_unless_current`].
pub const DESIRED_HASH_ANNOTATION: &str = "homelab.home.arpa/desired-hash";

/// Puts the hash of `desired` as it stands into its
/// [`DESIRED_HASH_ANNOTATION`], which the object then carries as stored.
fn stamp_hash<C: Resource + Serialize>(desired: &mut C) -> Result<(), Error> {
    let hash = fingerprint(&to_value(desired)?);
    desired
        .meta_mut()
        .annotations
        .get_or_insert_with(Default::default)
        .insert(DESIRED_HASH_ANNOTATION.to_owned(), hash);
    Ok(())
}

/// FNV-1a of the object's JSON: stable across releases and platforms, unlike
/// the standard library's hasher.
fn fingerprint(v: &Value) -> String {
    let hash = v
        .to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{hash:016x}")
}

/// A controller owner reference to `owner` (`controller: true`,
/// `blockOwnerDeletion: true`): garbage collection deletes the owned object
/// with its owner, and `Controller::owns` maps changes back to the owner.
///
/// # Errors
/// [`Error::OwnerNotPersisted`] when the owner has no name or uid yet.
pub fn owner_reference<O>(owner: &O) -> Result<OwnerReference, Error>
where
    O: Resource<DynamicType = ()>,
{
    let reference = owner
        .controller_owner_ref(&())
        .ok_or_else(|| Error::OwnerNotPersisted {
            kind: O::kind(&()).to_string(),
        })?;
    Ok(OwnerReference {
        block_owner_deletion: Some(true),
        ..reference
    })
}

/// Metadata for an object owned by `owner`: the given name, the owner's
/// namespace, the owner reference, and the label
/// `app.kubernetes.io/managed-by` set to the field manager.
///
/// # Errors
/// [`Error::OwnerNotPersisted`] as [`owner_reference`].
pub fn owned_metadata<O>(
    owner: &O,
    name: impl Into<String>,
    manager: &FieldManager,
) -> Result<ObjectMeta, Error>
where
    O: Resource<DynamicType = ()>,
{
    Ok(ObjectMeta {
        name: Some(name.into()),
        namespace: owner.meta().namespace.clone(),
        owner_references: Some(vec![owner_reference(owner)?]),
        labels: Some(
            [(
                "app.kubernetes.io/managed-by".to_owned(),
                manager.name().to_owned(),
            )]
            .into_iter()
            .collect(),
        ),
        ..ObjectMeta::default()
    })
}

/// Whether writing `desired` would change `current`: compares their JSON
/// forms, taking `null` as absent and the items of a list of objects keyed
/// by `type` (conditions) in any order. Nothing else is ignored, timestamps
/// included: build `desired` with [`homelab_api::conditions::set_condition`] and
/// an unchanged status compares equal.
///
/// # Errors
/// [`Error::Serialize`] if either side cannot be serialized.
pub fn status_differs<S: Serialize>(current: Option<&S>, desired: &S) -> Result<bool, Error> {
    let Some(current) = current else {
        return Ok(true);
    };
    Ok(normalize(to_value(current)?) != normalize(to_value(desired)?))
}

/// Whether every field of `desired` has the same value in `current`
/// (a server-defaulted field only in `current` does not count). Lists must
/// have the same length, item by item.
#[must_use]
pub fn is_applied(current: &Value, desired: &Value) -> bool {
    match (current, desired) {
        (_, Value::Null) => true,
        (Value::Object(c), Value::Object(d)) => d
            .iter()
            .all(|(k, dv)| c.get(k).map_or(dv.is_null(), |cv| is_applied(cv, dv))),
        (Value::Array(c), Value::Array(d)) => {
            c.len() == d.len() && c.iter().zip(d).all(|(cv, dv)| is_applied(cv, dv))
        }
        (c, d) => c == d,
    }
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, Error> {
    serde_json::to_value(v).map_err(|source| Error::Serialize {
        what: std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("object")
            .to_owned(),
        source,
    })
}

/// The body of an apply patch for `desired`.
fn apply_body<C>(desired: &C) -> Result<Value, Error>
where
    C: Resource<DynamicType = ()> + Serialize,
{
    let mut body = to_value(desired)?;
    if let Value::Object(map) = &mut body {
        map.entry("apiVersion")
            .or_insert_with(|| Value::String(C::api_version(&()).into_owned()));
        map.entry("kind")
            .or_insert_with(|| Value::String(C::kind(&()).into_owned()));
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            for field in [
                "resourceVersion",
                "managedFields",
                "creationTimestamp",
                "uid",
            ] {
                meta.remove(field);
            }
        }
    }
    Ok(body)
}

/// Drops nulls and sorts lists of objects that all carry a string `type`.
fn normalize(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, normalize(v)))
                .collect(),
        ),
        Value::Array(items) => {
            let mut items: Vec<Value> = items.into_iter().map(normalize).collect();
            let type_of = |v: &Value| v.get("type").and_then(Value::as_str).map(str::to_owned);
            if !items.is_empty() && items.iter().all(|i| type_of(i).is_some()) {
                items.sort_by_key(type_of);
            }
            Value::Array(items)
        }
        other => other,
    }
}

/// `namespace/name` or `name`, for messages.
fn describe<K: Resource>(obj: &K) -> String {
    match obj.namespace() {
        Some(ns) => format!("{ns}/{}", obj.name_any()),
        None => obj.name_any(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_writes_know_their_echo_once_and_their_generation_until_someone_else_writes() {
        let own = OwnWrites::default();
        let meta = |version: &str, generation: i64| ObjectMeta {
            uid: Some("u-1".into()),
            resource_version: Some(version.into()),
            generation: Some(generation),
            ..ObjectMeta::default()
        };
        own.record(&meta("10", 3));
        assert!(own.is_echo(&meta("10", 3)));
        assert!(!own.is_echo(&meta("10", 3)), "an echo is recognised once");
        assert!(
            own.generation_is_own(&meta("11", 3)),
            "a status change keeps the generation"
        );
        assert!(
            !own.generation_is_own(&meta("12", 4)),
            "someone else changed the spec"
        );
        assert!(!OwnWrites::default().generation_is_own(&meta("10", 3)));
    }

    #[test]
    fn fingerprint_changes_when_a_field_goes_away() {
        let both = fingerprint(&serde_json::json!({"data": {"a": "1", "b": "2"}}));
        let one = fingerprint(&serde_json::json!({"data": {"a": "1"}}));
        assert_ne!(both, one);
        assert_eq!(one, fingerprint(&serde_json::json!({"data": {"a": "1"}})));
        assert_eq!(one.len(), 16);
    }
    use homelab_api::conditions::{Outcome, set_outcome};
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    #[derive(Serialize, Clone, Default)]
    struct Status {
        #[serde(rename = "observedGeneration", skip_serializing_if = "Option::is_none")]
        observed_generation: Option<i64>,
        conditions: Vec<Condition>,
        node: Option<String>,
    }

    fn owner() -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("owner".into()),
                namespace: Some("home".into()),
                uid: Some("1234".into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    #[test]
    fn owner_reference_is_a_blocking_controller_reference() {
        let r = owner_reference(&owner()).unwrap();
        assert_eq!(r.controller, Some(true));
        assert_eq!(r.block_owner_deletion, Some(true));
        assert_eq!(
            (r.kind.as_str(), r.api_version.as_str()),
            ("ConfigMap", "v1")
        );
        assert_eq!((r.name.as_str(), r.uid.as_str()), ("owner", "1234"));
    }

    #[test]
    fn unsaved_owner_is_refused() {
        let err = owner_reference(&ConfigMap::default()).unwrap_err();
        assert!(matches!(err, Error::OwnerNotPersisted { .. }));
    }

    #[test]
    fn owned_metadata_points_back() {
        let meta =
            owned_metadata(&owner(), "child", &FieldManager::new("test-controller")).unwrap();
        assert_eq!(meta.namespace.as_deref(), Some("home"));
        assert_eq!(meta.owner_references.unwrap()[0].uid, "1234");
        assert_eq!(
            meta.labels.unwrap()["app.kubernetes.io/managed-by"],
            "test-controller"
        );
    }

    #[test]
    fn apply_body_carries_type_and_drops_server_fields() {
        let mut cm = owner();
        cm.metadata.resource_version = Some("42".into());
        let body = apply_body(&cm).unwrap();
        assert_eq!(body["apiVersion"], "v1");
        assert_eq!(body["kind"], "ConfigMap");
        assert!(body["metadata"].get("resourceVersion").is_none());
        assert!(body["metadata"].get("uid").is_none());
        assert_eq!(body["metadata"]["name"], "owner");
    }

    #[test]
    fn apply_params_force_with_the_manager_name() {
        let p = FieldManager::new("sensorgateway-controller").apply_params();
        assert_eq!(p.field_manager.as_deref(), Some("sensorgateway-controller"));
        assert!(p.force);
    }

    #[test]
    fn steady_status_does_not_differ() {
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let mut current = Status {
            observed_generation: Some(2),
            ..Status::default()
        };
        set_outcome(
            &mut current.conditions,
            &Outcome::ready("Running", "ok"),
            Some(2),
            t0,
        );
        // Next reconcile, much later, recomputes the same outcome.
        let mut desired = current.clone();
        set_outcome(
            &mut desired.conditions,
            &Outcome::ready("Running", "ok"),
            Some(2),
            t0 + k8s_openapi::jiff::SignedDuration::from_hours(1),
        );
        assert!(!status_differs(Some(&current), &desired).unwrap());

        desired.node = Some("pi-3".into());
        assert!(status_differs(Some(&current), &desired).unwrap());
        assert!(status_differs(None, &current).unwrap());
    }

    #[test]
    fn an_outcome_keeps_the_rest_of_any_status() {
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let mut conditions = Vec::new();
        set_outcome(
            &mut conditions,
            &Outcome::ready("Running", "on pi-3"),
            Some(1),
            t0,
        );
        let current = json!({
            "observedGeneration": 1,
            "node": "pi-3",
            "conditions": conditions,
            "lastFailover": {"fromNode": "pi-2"},
        });
        let stalled = Outcome::stalled("ChildRefused", "env[0].name: Required value");
        let desired = with_outcome(&current, &stalled, Some(2), t0).unwrap();
        assert_eq!(desired["node"], "pi-3");
        assert_eq!(desired["lastFailover"]["fromNode"], "pi-2");
        assert_eq!(desired["observedGeneration"], 2);
        let conditions: Vec<Condition> =
            serde_json::from_value(desired["conditions"].clone()).unwrap();
        let find = |t: &str| conditions.iter().find(|c| c.type_ == t).unwrap();
        assert_eq!(find("Ready").status, "False");
        assert_eq!(find("Stalled").reason, "ChildRefused");
        assert_eq!(find("Stalled").observed_generation, Some(2));
        assert!(status_differs(Some(&current), &desired).unwrap());

        // The same outcome again writes nothing.
        let again = with_outcome(&desired, &stalled, Some(2), t0).unwrap();
        assert!(!status_differs(Some(&desired), &again).unwrap());

        // No status yet: one is made.
        let fresh = with_outcome(&Value::Null, &stalled, Some(1), t0).unwrap();
        assert_eq!(fresh["observedGeneration"], 1);
        assert_eq!(fresh["conditions"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn quantities_are_what_the_api_server_reads() {
        for ok in [
            "1", "0", "500m", "512Mi", "2Gi", "1.5", ".5", "5.", "+1", "-1", "1e3", "1E-2", "100k",
            "1Ei", "10n", "3u",
        ] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in [
            "lots", "", "Mi", "1.2.3", "1 Gi", "1gb", "1GB", "1e", "1Kib", "--1", ".",
        ] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn a_bad_quantity_names_its_field() {
        use k8s_openapi::api::core::v1::ResourceRequirements;
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let resources = ResourceRequirements {
            requests: Some([("cpu".to_owned(), Quantity("100m".into()))].into()),
            limits: Some([("memory".to_owned(), Quantity("lots".into()))].into()),
            ..ResourceRequirements::default()
        };
        let err = check_resources("spec.resources", &resources).unwrap_err();
        assert!(
            err.starts_with("spec.resources.limits.memory: \"lots\" is not a quantity"),
            "{err}"
        );
        assert!(check_resources("spec.resources", &ResourceRequirements::default()).is_ok());
    }

    #[test]
    fn normalize_ignores_nulls_and_condition_order() {
        let a = json!({"conditions": [{"type": "Ready"}, {"type": "Stale"}], "x": null});
        let b = json!({"conditions": [{"type": "Stale"}, {"type": "Ready"}]});
        assert_eq!(normalize(a), normalize(b));
        // Order matters in plain lists.
        assert_ne!(normalize(json!(["a", "b"])), normalize(json!(["b", "a"])));
    }

    #[test]
    fn is_applied_ignores_server_defaults_only() {
        let current = json!({"spec": {"replicas": 1, "containers": [{"name": "a", "imagePullPolicy": "Always"}]}});
        assert!(is_applied(
            &current,
            &json!({"spec": {"containers": [{"name": "a"}]}})
        ));
        assert!(!is_applied(&current, &json!({"spec": {"replicas": 2}})));
        assert!(!is_applied(&current, &json!({"spec": {"containers": []}})));
        assert!(!is_applied(
            &current,
            &json!({"metadata": {"labels": {"a": "b"}}})
        ));
    }
}
