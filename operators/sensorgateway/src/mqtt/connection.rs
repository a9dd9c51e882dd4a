//! One broker's event loop: connects (and reconnects with backoff), subscribes
//! what the gateways want after every connect (the session is clean, so the
//! broker forgets subscriptions on a disconnect), and records what it hears.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use prometheus_client::metrics::counter::Counter;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Packet, QoS, SubscribeFilter};
use tokio::sync::mpsc::UnboundedSender;

use super::hub::{Connection, GatewayId, Shared, lock};
use super::topic;

/// Reconnect backoff: short enough that a restarted broker is noticed within
/// seconds, long enough not to hammer one that is down.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(5);

pub(super) struct Loop {
    pub eventloop: EventLoop,
    pub client: AsyncClient,
    pub shared: Arc<Mutex<Shared>>,
    pub wake: UnboundedSender<GatewayId>,
    pub reconnects: Counter,
    pub address: String,
}

pub(super) async fn run(mut l: Loop) {
    let mut retry = FIRST_RETRY;
    let mut connected_before = false;
    loop {
        match l.eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                retry = FIRST_RETRY;
                if connected_before {
                    l.reconnects.inc();
                }
                connected_before = true;
                tracing::info!(broker = %l.address, "connected to the MQTT broker");
                on_connected(&l);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                on_message(&l, &p.topic, &p.payload);
            }
            Ok(_) => {}
            Err(e) => {
                on_error(&l, &e);
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}

fn on_connected(l: &Loop) {
    let mut shared = lock(&l.shared);
    shared.connection = Connection {
        connected: true,
        since: Timestamp::now(),
        message: None,
    };
    let wanted = shared.wanted();
    if !wanted.is_empty() {
        let filters = wanted
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
        if let Err(e) = l.client.try_subscribe_many(filters) {
            tracing::warn!(broker = %l.address, error = %e, "could not subscribe");
        }
    }
    shared.subscribed = wanted;
    wake_all(l, &shared);
}

fn on_error(l: &Loop, e: &ConnectionError) {
    let message = describe(&l.address, e);
    let mut shared = lock(&l.shared);
    let was = shared.connection.clone();
    if was.connected {
        tracing::warn!(broker = %l.address, error = %message, "lost the MQTT broker");
    }
    shared.connection = Connection {
        connected: false,
        since: if was.connected {
            Timestamp::now()
        } else {
            was.since
        },
        message: Some(message),
    };
    shared.subscribed.clear();
    if shared.connection != was {
        wake_all(l, &shared);
    }
}

/// A connection error for a person: what failed and what to check.
fn describe(address: &str, e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => format!(
            "the broker at {address} refused the connection ({code:?}): check the credentials in mqtt.usernameSecretRef and mqtt.passwordSecretRef"
        ),
        ConnectionError::Tls(e) => format!("TLS to the broker at {address} failed: {e}"),
        ConnectionError::Io(e) => format!("cannot reach the broker at {address}: {e}"),
        ConnectionError::NetworkTimeout => {
            format!("cannot reach the broker at {address}: timed out")
        }
        other => format!("lost the connection to the broker at {address}: {other}"),
    }
}

fn on_message(l: &Loop, topic_name: &str, payload: &[u8]) {
    let now = Timestamp::now();
    let mut shared = lock(&l.shared);
    // Who to wake, and for which filter: decided against what was kept
    // before this message, sent only if the message is kept (a message the
    // budget ignores must not wake a reconcile per message of a flood).
    let mut woken: Vec<(GatewayId, &str)> = Vec::new();
    for (id, interest) in &shared.interests {
        if interest.availability.as_deref() == Some(topic_name)
            && shared.kept.payload_differs(topic_name, payload)
        {
            woken.push((id.clone(), topic_name));
        }
        for (filter, stale_after) in &interest.sensors {
            let was_silent = shared
                .kept
                .at(filter)
                .is_none_or(|at| now.duration_since(at).unsigned_abs().ge(stale_after));
            if topic::matches(filter, topic_name) && was_silent {
                woken.push((id.clone(), filter));
            }
        }
    }
    let woken: Vec<(GatewayId, String)> = woken
        .into_iter()
        .map(|(id, filter)| (id, filter.to_owned()))
        .collect();
    let mut kept = BTreeSet::new();
    for filter in shared.subscribed.clone() {
        if topic::matches(&filter, topic_name) {
            let keep_payload = shared.reads_payload(&filter);
            if shared.kept.record(&filter, now, payload, keep_payload) {
                kept.insert(filter);
            }
        }
    }
    let mut sent = BTreeSet::new();
    for (id, filter) in woken {
        if kept.contains(&filter) && sent.insert(id.clone()) {
            let _ = l.wake.send(id);
        }
    }
}

fn wake_all(l: &Loop, shared: &Shared) {
    for id in shared.interests.keys() {
        let _ = l.wake.send(id.clone());
    }
}
