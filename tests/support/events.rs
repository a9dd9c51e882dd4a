//! Events are published after the write they describe, so a test that has seen
//! the status change waits for its Event with a deadline rather than reading the
//! list once.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;

use crate::{Error, TestNamespace, wait_for_list};

/// The Events in the test's namespace about the object named `regarding`.
pub async fn events_about(ns: &TestNamespace, regarding: &str) -> Result<Vec<Event>, Error> {
    let all = ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .map_err(Error::api(format!("listing Events about {regarding}")))?;
    Ok(all
        .items
        .into_iter()
        .filter(|e| is_about(e, regarding))
        .collect())
}

/// Waits until Events about `regarding` with every one of `reasons` exist;
/// returns all the Events about it. A timeout names the reasons that were seen.
pub async fn wait_for_event_reasons(
    ns: &TestNamespace,
    regarding: &str,
    reasons: &[&str],
    timeout: Duration,
) -> Result<Vec<Event>, Error> {
    let found = wait_for_list(&ns.api::<Event>(), &ListParams::default(), timeout, |all| {
        reasons.iter().all(|wanted| {
            all.iter()
                .any(|e| is_about(e, regarding) && e.reason.as_deref() == Some(wanted))
        })
    })
    .await;
    match found {
        Ok(all) => Ok(all.into_iter().filter(|e| is_about(e, regarding)).collect()),
        Err(Error::Timeout { waited, .. }) => {
            let seen: Vec<String> = events_about(ns, regarding)
                .await?
                .into_iter()
                .filter_map(|e| e.reason)
                .collect();
            Err(Error::Timeout {
                what: format!("Events {reasons:?} about {regarding}"),
                waited,
                last_seen: format!("reasons {seen:?}"),
            })
        }
        Err(other) => Err(other),
    }
}

fn is_about(event: &Event, name: &str) -> bool {
    event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
}
