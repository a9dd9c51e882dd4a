//! A trigger for when a node holding a pin's device falls silent or speaks again.
//! A dead node changes no object (its kubelet Lease just stops being renewed), so no
//! watch event says so: this looks at the Leases of the nodes named in the pins'
//! `status.presence` on a short tick and yields the pins concerned only when a
//! node's silence flips, never on every renewal.
//!
//! It GETs the few Leases it needs (a homelab has a stick or two) rather than
//! watching every node's: the controller's role grants `get` on Leases, not `list`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::Stream;
use futures::channel::mpsc;
use homelab_api::UsbDevicePin;
use homelab_kit::failover::observe::{NODE_LEASE_NAMESPACE, lease_silent};
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};

/// How often the Leases are looked at: well under the 10 s renewal interval.
const TICK: Duration = Duration::from_secs(2);

/// The nodes `pin` depends on: where its device is reported, and where it was.
fn nodes_of(pin: &UsbDevicePin) -> impl Iterator<Item = &str> {
    pin.status.iter().flat_map(|s| {
        s.presence
            .iter()
            .map(|p| p.node.as_str())
            .chain(s.current_node.as_deref())
    })
}

/// Pins to reconcile whenever one of their nodes falls silent or heartbeats again,
/// and once for each node when it is first looked at. Ends when the stream is
/// dropped.
pub fn watch(
    client: Client,
    pins: Store<UsbDevicePin>,
) -> impl Stream<Item = ObjectRef<UsbDevicePin>> + Send + 'static {
    let leases: Api<Lease> = Api::namespaced(client, NODE_LEASE_NAMESPACE);
    let (tx, rx) = mpsc::unbounded();
    tokio::spawn(async move {
        let mut silent: BTreeMap<String, bool> = BTreeMap::new();
        let mut interval = tokio::time::interval(TICK);
        while !tx.is_closed() {
            interval.tick().await;
            let all = pins.state();
            let names: BTreeSet<&str> = all.iter().flat_map(|p| nodes_of(p)).collect();
            let now = k8s_openapi::jiff::Timestamp::now();
            for name in names {
                let is_silent = match leases.get_opt(name).await {
                    Ok(Some(lease)) => lease_silent(&lease, now),
                    Ok(None) => false,
                    Err(err) => {
                        tracing::debug!(node = name, %err, "could not read the node's Lease");
                        continue;
                    }
                };
                // A first look counts as a change: a controller (re)started while a
                // node is silent finishes the failover, and one started while a node
                // it marked is back takes the mark off, without waiting for a resync.
                let was = silent.insert(name.to_owned(), is_silent);
                if was != Some(is_silent) {
                    tracing::info!(node = name, silent = is_silent, "node heartbeat changed");
                    for pin in all.iter().filter(|p| nodes_of(p).any(|n| n == name)) {
                        let _ = tx.unbounded_send(ObjectRef::from_obj(&**pin));
                    }
                }
            }
        }
    });
    rx
}
