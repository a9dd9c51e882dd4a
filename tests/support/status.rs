//! What a controller says in an object's status, for any of the project's kinds
//! (their statuses share [`ConditionedStatus`]): waiting until a condition says
//! something for the generation the test wrote, and reading it.
//!
//! A status written for an older generation does not count: it answers a spec
//! the test has since changed.

use std::fmt::Debug;
use std::time::Duration;

use homelab_api::ConditionedStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::object::HasStatus;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::{Error, wait_for_showing};

/// One of the project's kinds: its status has conditions and an observed
/// generation.
pub trait Kind:
    Resource<DynamicType = ()>
    + HasStatus<Status: ConditionedStatus>
    + Clone
    + Debug
    + DeserializeOwned
    + Send
    + 'static
{
}

impl<K> Kind for K where
    K: Resource<DynamicType = ()>
        + HasStatus<Status: ConditionedStatus>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + 'static
{
}

/// The object's status, if it was written for its current generation.
pub fn current<K: Kind>(obj: &K) -> Option<&K::Status> {
    obj.status()
        .filter(|s| s.observed_generation() == obj.meta().generation)
}

/// Condition `type_` of the object's status, whatever generation it was written for.
pub fn condition<'a, K: Kind>(obj: &'a K, type_: &str) -> Option<&'a Condition> {
    obj.status().and_then(|s| s.condition(type_))
}

/// Condition `type_`'s (reason, message); panics naming the type when it is not set.
pub fn said<K: Kind>(obj: &K, type_: &str) -> (String, String) {
    let c = condition(obj, type_).unwrap_or_else(|| {
        panic!(
            "{} has no condition {type_}: {}",
            obj.meta().name.as_deref().unwrap_or_default(),
            describe(obj)
        )
    });
    (c.reason.clone(), c.message.clone())
}

/// Asserts that condition `type_` is `status` for `reason`, with a message
/// that mentions every one of `words`; panics with what it says instead.
/// Returns the message.
pub fn says<K: Kind>(obj: &K, type_: &str, status: &str, reason: &str, words: &[&str]) -> String {
    let (got, message) = said(obj, type_);
    let c = condition(obj, type_).map_or("", |c| c.status.as_str());
    let missing: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !message.contains(w))
        .collect();
    assert!(
        c == status && got == reason && missing.is_empty(),
        "{}: wanted {type_}={status} {reason} mentioning {words:?}, it says {type_}={c} {got}: {message} (not mentioned: {missing:?})",
        obj.meta().name.as_deref().unwrap_or_default(),
    );
    message
}

/// Whether condition `type_` is set with `status` and `reason`.
pub fn condition_is<K: Kind>(obj: &K, type_: &str, status: &str, reason: &str) -> bool {
    condition(obj, type_).is_some_and(|c| c.status == status && c.reason == reason)
}

/// One line per condition, and the generations: what a timeout shows.
pub fn describe<K: Kind>(obj: &K) -> String {
    let Some(status) = obj.status() else {
        return format!("generation {:?}, no status", obj.meta().generation);
    };
    let conditions: Vec<String> = status
        .conditions()
        .iter()
        .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
        .collect();
    format!(
        "generation {:?}, observedGeneration {:?}, conditions [{}]",
        obj.meta().generation,
        status.observed_generation(),
        conditions.join("; ")
    )
}

/// Waits until the status for the current generation satisfies `holds`; returns
/// the object. A timeout shows its conditions as last seen.
pub async fn wait_status<K: Kind, F>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    holds: F,
) -> Result<K, Error>
where
    F: Fn(&K::Status) -> bool + Send + 'static,
{
    wait_for_showing(
        api,
        name,
        timeout,
        move |obj: &K| current(obj).is_some_and(&holds),
        describe,
    )
    .await
}

/// Waits until condition `type_` has `status` (`"True"`, `"False"`, `"Unknown"`)
/// for the current generation.
pub async fn wait_condition<K: Kind>(
    api: &Api<K>,
    name: &str,
    type_: &'static str,
    status: &'static str,
    timeout: Duration,
) -> Result<K, Error> {
    wait_status(api, name, timeout, move |s| {
        s.condition(type_).is_some_and(|c| c.status == status)
    })
    .await
}

/// Waits until condition `type_` has `reason` for the current generation, with
/// a message that mentions `conclusive` (`""` for any): what the controller
/// concludes once its caches hold what the test created, where a first look
/// says something else under the same reason.
pub async fn wait_reason<K: Kind>(
    api: &Api<K>,
    name: &str,
    type_: &'static str,
    reason: &'static str,
    conclusive: &str,
    timeout: Duration,
) -> Result<K, Error> {
    let conclusive = conclusive.to_owned();
    wait_status(api, name, timeout, move |s| {
        s.condition(type_)
            .is_some_and(|c| c.reason == reason && c.message.contains(conclusive.as_str()))
    })
    .await
}
