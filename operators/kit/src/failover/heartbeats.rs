//! A trigger for when a node falls silent or speaks again. A dead node changes
//! nothing in the API (its Lease just stops being renewed), so no watch event says
//! so: this watches the kubelets' Leases and checks them on a short tick, and yields
//! a node's name only when its state flips, never on every renewal.

use std::collections::BTreeMap;
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
/// Runs until the stream is dropped. A node already silent when this starts is
/// reported on the first tick, so an operator restarted mid-failover finishes it.
pub fn watch(client: Client) -> (Store<Lease>, impl Stream<Item = String> + Send + 'static) {
    let api: Api<Lease> = Api::namespaced(client, NODE_LEASE_NAMESPACE);
    let (reader, writer) = reflector::store();
    let (tx, rx) = mpsc::unbounded();
    let store = reader.clone();
    tokio::spawn(async move {
        let leases = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(crate::cache::trim::<Lease>)
            .reflect(writer)
            .applied_objects()
            .for_each(|_| async {});
        let ticks = async move {
            let mut silent: BTreeMap<String, bool> = BTreeMap::new();
            let mut interval = tokio::time::interval(TICK);
            // Until nobody listens: a controller stopped (or its task aborted)
            // leaves no watch behind.
            while !tx.is_closed() {
                interval.tick().await;
                let now = jiff::Timestamp::now();
                for lease in store.state() {
                    let name = lease.name_any();
                    let is_silent = lease_silent(&lease, now);
                    let was = silent.insert(name.clone(), is_silent);
                    // A first look counts as a change either way: a controller
                    // (re)started while a node is silent finishes the failover, and
                    // one started just as a node it marked came back takes the mark
                    // off, without waiting for a resync.
                    let flipped = was != Some(is_silent);
                    if flipped && tx.unbounded_send(name).is_err() {
                        return;
                    }
                }
            }
        };
        tokio::select! {
            () = leases => {}
            () = ticks => {}
        }
    });
    (reader, rx)
}
