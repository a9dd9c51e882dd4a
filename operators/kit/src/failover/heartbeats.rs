//! A trigger for when a node falls silent or speaks again. A dead node changes
//! nothing in the API (its Lease just stops being renewed), so no watch event says
//! so: this watches the kubelets' Leases and checks them on a short tick, and yields
//! a node's name only when its state flips, never on every renewal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use super::observe::{NODE_LEASE_NAMESPACE, lease_silent};

/// How often the Leases are checked: well under the 10 s renewal interval.
const TICK: Duration = Duration::from_secs(1);

/// The heartbeat Leases, cached; and a stream of node names whose silence changed.
///
/// Runs until the stream is dropped. Every node is reported on the first tick
/// after the Leases have listed, so an operator restarted mid-failover finishes
/// it; a Lease that appears later is reported only when it is silent.
pub fn watch(client: Client) -> (Store<Lease>, impl Stream<Item = String> + Send + 'static) {
    let api: Api<Lease> = Api::namespaced(client, NODE_LEASE_NAMESPACE);
    let (reader, writer) = reflector::store();
    let (tx, rx) = mpsc::unbounded();
    let store = reader.clone();
    tokio::spawn(async move {
        // Whether the Leases have listed. Not `Store::wait_until_ready`: the
        // runner waits on this store already, and of two tasks waiting there
        // at once only one is woken.
        let listed = Arc::new(AtomicBool::new(false));
        let leases = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(crate::cache::trim::<Lease>)
            .reflect(writer)
            .for_each({
                let listed = listed.clone();
                move |event| {
                    if matches!(event, Ok(watcher::Event::InitDone)) {
                        listed.store(true, Ordering::Relaxed);
                    }
                    async {}
                }
            });
        let ticks = async move {
            // Whether a lease was there when this started: a first look at one
            // counts as a change either way, so a controller (re)started while a
            // node is silent finishes the failover, and one started just as a
            // node it marked came back takes the mark off, without waiting for
            // a resync. A node that joins later and speaks is news to nobody (its
            // Node's arrival wakes what it concerns); one that joins silent is.
            let mut silent: BTreeMap<String, bool> = BTreeMap::new();
            let mut started = true;
            let mut interval = tokio::time::interval(TICK);
            // Until nobody listens: a controller stopped (or its task aborted)
            // leaves no watch behind.
            while !tx.is_closed() {
                interval.tick().await;
                if !listed.load(Ordering::Relaxed) {
                    continue;
                }
                let now = jiff::Timestamp::now();
                for lease in store.state() {
                    let name = lease.name_any();
                    let is_silent = lease_silent(&lease, now);
                    let was = silent.insert(name.clone(), is_silent);
                    let flipped = match was {
                        Some(was) => was != is_silent,
                        None => started || is_silent,
                    };
                    if flipped {
                        tracing::debug!(node = %name, silent = is_silent, "a node's heartbeat flipped");
                        if tx.unbounded_send(name).is_err() {
                            return;
                        }
                    }
                }
                started = false;
            }
        };
        tokio::select! {
            () = leases => {}
            () = ticks => {}
        }
    });
    (reader, rx)
}
