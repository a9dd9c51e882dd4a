//! Waiting for a condition with a deadline. Tests never sleep and then assert.

use std::fmt::Debug;
use std::time::Duration;

use kube::api::ListParams;
use kube::runtime::wait::await_condition;
use kube::{Api, Resource};
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
                Ok(Some(obj)) => serde_json::to_string(&obj).unwrap_or_else(|e| e.to_string()),
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
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = read();
    let mut since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = read();
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
