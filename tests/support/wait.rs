//! Waiting for a condition with a deadline. Tests never sleep and then assert,
//! and no wait goes on for ever: each one gives up at its deadline, saying what
//! it saw last.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use kube::api::ListParams;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// Waits until the named object exists and `ready` holds for it; returns it.
/// On timeout the error shows the object as last seen, so a failure says why.
pub async fn wait_for<K, F>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    ready: F,
) -> Result<K, Error>
where
    K: Resource + Clone + Debug + DeserializeOwned + Serialize + Send + 'static,
    <K as Resource>::DynamicType: Default,
    F: Fn(&K) -> bool + Send + 'static,
{
    let shown = |obj: &K| serde_json::to_string(obj).unwrap_or_else(|e| e.to_string());
    wait_for_showing(api, name, timeout, ready, shown).await
}

/// [`wait_for`], saying what was last seen with `show` (a status, a few fields)
/// instead of the whole object.
pub async fn wait_for_showing<K, F>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    ready: F,
    show: impl Fn(&K) -> String,
) -> Result<K, Error>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
    <K as Resource>::DynamicType: Default,
    F: Fn(&K) -> bool + Send + 'static,
{
    let what = format!("{} {name}", K::kind(&Default::default()));
    let condition = move |obj: Option<&K>| obj.is_some_and(&ready);
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, condition)).await {
        Ok(Ok(Some(obj))) => Ok(obj),
        Ok(Ok(None)) => Err(Error::Timeout {
            what,
            waited: timeout,
            last_seen: "deleted".into(),
        }),
        Ok(Err(source)) => Err(Error::Watch { what, source }),
        Err(_) => {
            let last_seen = match api.get_opt(name).await {
                Ok(Some(obj)) => show(&obj),
                Ok(None) => "not found".into(),
                Err(e) => format!("unreadable: {e}"),
            };
            Err(Error::Timeout {
                what,
                waited: timeout,
                last_seen,
            })
        }
    }
}

/// Waits until the named object exists; returns it.
pub async fn wait_exists<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<K, Error>
where
    K: Resource + Clone + Debug + DeserializeOwned + Serialize + Send + 'static,
    <K as Resource>::DynamicType: Default,
{
    wait_for(api, name, timeout, |_| true).await
}

/// Waits until the named object, as it is now, is gone (a new one of the same
/// name does not count as it). Gone already is fine.
pub async fn wait_deleted<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<(), Error>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
    <K as Resource>::DynamicType: Default,
{
    let what = format!("{} {name} to be deleted", K::kind(&Default::default()));
    let Some(obj) = api
        .get_opt(name)
        .await
        .map_err(Error::api(format!("reading {what}")))?
    else {
        return Ok(());
    };
    let uid = obj.uid().unwrap_or_default();
    let gone = await_condition(api.clone(), name, conditions::is_deleted(&uid));
    match tokio::time::timeout(timeout, gone).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(Error::Watch { what, source }),
        Err(_) => {
            let last_seen = match api.get_opt(name).await {
                Ok(Some(obj)) => format!(
                    "still there: deletionTimestamp {:?}, finalizers {:?}",
                    obj.meta().deletion_timestamp,
                    obj.finalizers()
                ),
                Ok(None) => "gone just now".into(),
                Err(e) => format!("unreadable: {e}"),
            };
            Err(Error::Timeout {
                what,
                waited: timeout,
                last_seen,
            })
        }
    }
}

/// Calls `probe` every `every` until it returns `Ok`, no longer than `timeout`;
/// returns what it returned. `Err` carries what the probe saw, for the timeout's
/// message: for what no watch shows (a port, a file, a metric, a node's lease).
pub async fn poll_until<T, S, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: F,
) -> Result<T, Error>
where
    S: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, S>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let seen = match probe().await {
            Ok(done) => return Ok(done),
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                waited: timeout,
                last_seen: seen.to_string(),
            });
        }
        tokio::time::sleep(every).await;
    }
}

/// Checks `check` every `every` for `period`: an absence (no move, no write)
/// can only be shown by watching it not happen for a while. Fails with what
/// `check` said the first time it did not hold.
pub async fn holds_for<F, Fut>(
    what: &str,
    period: Duration,
    every: Duration,
    mut check: F,
) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let until = tokio::time::Instant::now() + period;
    while tokio::time::Instant::now() < until {
        check().await.map_err(|seen| Error::Broken {
            what: what.to_owned(),
            seen,
        })?;
        tokio::time::sleep(every).await;
    }
    Ok(())
}

/// Polls a list (every 200 ms, no longer than `timeout`) until `ready` holds for
/// the matching objects; returns them. For conditions over several objects, such
/// as "the Deployment's pods all run on amd64 nodes".
pub async fn wait_for_list<K, F>(
    api: &Api<K>,
    params: &ListParams,
    timeout: Duration,
    ready: F,
) -> Result<Vec<K>, Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
    <K as Resource>::DynamicType: Default,
    F: Fn(&[K]) -> bool,
{
    let what = format!(
        "{} matching {:?}",
        K::kind(&Default::default()),
        params.label_selector
    );
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let items = api
            .list(params)
            .await
            .map_err(Error::api(format!("listing {what}")))?
            .items;
        if ready(&items) {
            return Ok(items);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what,
                waited: timeout,
                last_seen: format!(
                    "{} object(s): {:?}",
                    items.len(),
                    items
                        .iter()
                        .map(|o| o.meta().name.clone().unwrap_or_default())
                        .collect::<Vec<_>>()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `holds` (every 100 ms, no longer than `timeout`) until it is true: for
/// what no watch shows, such as a controller's own metric counters.
pub async fn wait_until(
    what: &str,
    timeout: Duration,
    mut holds: impl FnMut() -> bool,
) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !holds() {
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                waited: timeout,
                last_seen: "not yet".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Waits until `read` has returned the same value for `quiet` (polling every
/// 100 ms, no longer than `timeout`); returns that value. For a counter that a
/// controller bumps after the write a test has already seen.
pub async fn wait_settled<T: PartialEq + Debug>(
    what: &str,
    quiet: Duration,
    timeout: Duration,
    read: impl Fn() -> T,
) -> Result<T, Error> {
    let read = &read;
    wait_settled_async(
        what,
        quiet,
        timeout,
        Duration::from_millis(100),
        || async move { read() },
    )
    .await
}

/// [`wait_settled`] for a value read from the API server (every `every`).
pub async fn wait_settled_async<T, F, Fut>(
    what: &str,
    quiet: Duration,
    timeout: Duration,
    every: Duration,
    mut read: F,
) -> Result<T, Error>
where
    T: PartialEq + Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = read().await;
    let mut since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let now = read().await;
        if now != last {
            last = now;
            since = tokio::time::Instant::now();
        } else if since.elapsed() >= quiet {
            return Ok(last);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                waited: timeout,
                last_seen: format!("{last:?}, still changing"),
            });
        }
    }
}
