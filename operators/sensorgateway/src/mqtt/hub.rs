//! The shared connections and what each gateway asked to hear.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc::UnboundedSender;

use super::broker::BrokerSpec;
use super::budget::{Budget, Kept, MqttBudget};
use super::connection;

/// A gateway, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GatewayId {
    /// Namespace of the SensorGateway.
    pub namespace: String,
    /// Name of the SensorGateway.
    pub name: String,
}

/// What a gateway wants to hear.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    /// The availability topic.
    pub availability: Option<String>,
    /// Sensor topic filters, each with how long it may stay silent.
    pub sensors: Vec<(String, Duration)>,
}

impl Interest {
    fn filters(&self) -> impl Iterator<Item = &String> {
        self.availability
            .iter()
            .chain(self.sensors.iter().map(|(f, _)| f))
    }
}

/// The last message heard on a topic filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// When it arrived.
    pub at: Timestamp,
    /// Its payload.
    pub payload: Vec<u8>,
    /// When the payload last differed from the one before.
    pub changed_at: Timestamp,
}

/// The state of the connection to a broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// Whether the operator is connected.
    pub connected: bool,
    /// Since when `connected` holds.
    pub since: Timestamp,
    /// Why it is not connected, for a person; none while the first attempt is
    /// under way.
    pub message: Option<String>,
}

/// What a gateway's topics said, as of now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The connection to the gateway's broker.
    pub connection: Connection,
    /// The last message on the availability topic.
    pub availability: Option<Seen>,
    /// When each sensor filter last heard a message, in [`Interest::sensors`] order.
    pub sensors: Vec<Option<Timestamp>>,
}

/// One broker's connection and the state its event loop keeps.
pub(super) struct Shared {
    pub connection: Connection,
    pub interests: HashMap<GatewayId, Interest>,
    /// What was heard per subscribed filter, within the controller's budget.
    pub kept: Kept,
    pub subscribed: BTreeSet<String>,
}

impl Shared {
    pub fn wanted(&self) -> BTreeSet<String> {
        self.interests
            .values()
            .flat_map(Interest::filters)
            .cloned()
            .collect()
    }

    /// Whether some gateway reads the payload on `filter` (its availability
    /// topic); sensors only need the time.
    pub fn reads_payload(&self, filter: &str) -> bool {
        self.interests
            .values()
            .any(|i| i.availability.as_deref() == Some(filter))
    }
}

/// Locks, recovering from a panicked holder: the state is a cache of what the
/// broker said, always safe to read.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Broker {
    client: AsyncClient,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
        self.task.abort();
    }
}

#[derive(Default)]
struct Inner {
    brokers: HashMap<String, Broker>,
    gateways: HashMap<GatewayId, String>,
}

/// The operator's MQTT connections, shared by all reconciles.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Mutex<Inner>>,
    wake: UnboundedSender<GatewayId>,
    client_prefix: String,
    next_client: Arc<AtomicU64>,
    reconnects: Family<[(&'static str, String); 1], Counter>,
    budget: Arc<Budget>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("brokers", &lock(&self.inner).brokers.len())
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub that sends a gateway's id to `wake` when it should be reconciled.
    /// `client_prefix` starts every MQTT client id (the pod's name, say);
    /// `budget` bounds what all its connections keep of what they hear.
    #[must_use]
    pub fn new(wake: UnboundedSender<GatewayId>, client_prefix: &str, budget: MqttBudget) -> Self {
        Self {
            inner: Arc::default(),
            wake,
            client_prefix: client_prefix.to_owned(),
            next_client: Arc::default(),
            reconnects: Family::default(),
            budget: Budget::new(budget),
        }
    }

    /// Registers the metrics of the hub's budget: what is kept, what was
    /// ignored.
    pub fn register_budget(&self, registry: &mut prometheus_client::registry::Registry) {
        self.budget.register(registry);
    }

    /// Reconnects after the first connection, by broker `host:port`.
    #[must_use]
    pub fn reconnects(&self) -> Family<[(&'static str, String); 1], Counter> {
        self.reconnects.clone()
    }

    /// Registers what `id` wants to hear on `broker` (replacing what it wanted
    /// before, on this broker or another) and returns what was heard.
    ///
    /// # Errors
    /// A message for a person when the broker's TLS material cannot be used.
    pub fn observe(
        &self,
        id: &GatewayId,
        broker: &BrokerSpec,
        interest: Interest,
    ) -> Result<Observation, String> {
        let key = broker.key();
        let mut inner = lock(&self.inner);
        if let Some(old) = inner.gateways.get(id).cloned()
            && old != key
        {
            detach(&mut inner, id, &old);
        }
        if !inner.brokers.contains_key(&key) {
            let spawned = self.spawn(broker)?;
            inner.brokers.insert(key.clone(), spawned);
        }
        inner.gateways.insert(id.clone(), key.clone());
        let Some(b) = inner.brokers.get(&key) else {
            return Err("internal: broker connection vanished".to_owned());
        };
        let mut shared = lock(&b.shared);
        let sensors = interest
            .sensors
            .iter()
            .map(|(f, _)| f.clone())
            .collect::<Vec<_>>();
        let availability = interest.availability.clone();
        shared.interests.insert(id.clone(), interest);
        sync_subscriptions(&b.client, &mut shared);
        Ok(Observation {
            connection: shared.connection.clone(),
            availability: availability.and_then(|t| shared.kept.seen(&t)),
            sensors: sensors.iter().map(|f| shared.kept.at(f)).collect(),
        })
    }

    /// Forgets `id`: its topics are unsubscribed, and a broker nobody needs any
    /// more is disconnected.
    pub fn forget(&self, id: &GatewayId) {
        let mut inner = lock(&self.inner);
        if let Some(key) = inner.gateways.get(id).cloned() {
            detach(&mut inner, id, &key);
        }
    }

    /// Forgets every gateway for which `keep` says false (those deleted).
    pub fn retain(&self, keep: impl Fn(&GatewayId) -> bool) {
        let gone: Vec<GatewayId> = lock(&self.inner)
            .gateways
            .keys()
            .filter(|id| !keep(id))
            .cloned()
            .collect();
        for id in gone {
            self.forget(&id);
        }
    }

    /// How many broker connections are open (for tests and metrics).
    #[must_use]
    pub fn connections(&self) -> usize {
        lock(&self.inner).brokers.len()
    }

    fn spawn(&self, broker: &BrokerSpec) -> Result<Broker, String> {
        let n = self.next_client.fetch_add(1, Ordering::Relaxed);
        let client_id = format!("{}-{n}", self.client_prefix);
        let options = broker.options(&client_id)?;
        let (client, eventloop) = AsyncClient::new(options, 64);
        let shared = Arc::new(Mutex::new(Shared {
            // Not connected and no message: the first attempt is under way.
            connection: Connection {
                connected: false,
                since: Timestamp::now(),
                message: None,
            },
            interests: HashMap::new(),
            kept: Kept::new(self.budget.clone(), broker.address()),
            subscribed: BTreeSet::new(),
        }));
        let reconnects = self
            .reconnects
            .get_or_create(&[("broker", broker.address())])
            .clone();
        let task = tokio::spawn(connection::run(connection::Loop {
            eventloop,
            client: client.clone(),
            shared: shared.clone(),
            wake: self.wake.clone(),
            reconnects,
            address: broker.address(),
        }));
        Ok(Broker {
            client,
            shared,
            task,
        })
    }
}

fn detach(inner: &mut Inner, id: &GatewayId, key: &str) {
    inner.gateways.remove(id);
    let empty = match inner.brokers.get(key) {
        Some(b) => {
            let mut shared = lock(&b.shared);
            shared.interests.remove(id);
            sync_subscriptions(&b.client, &mut shared);
            shared.interests.is_empty()
        }
        None => false,
    };
    if empty {
        inner.brokers.remove(key);
    }
}

/// Subscribes what is wanted and not subscribed, unsubscribes the rest. While
/// disconnected it does nothing: the next connection subscribes everything wanted.
pub(super) fn sync_subscriptions(client: &AsyncClient, shared: &mut Shared) {
    if !shared.connection.connected {
        return;
    }
    let wanted = shared.wanted();
    for filter in wanted.difference(&shared.subscribed.clone()) {
        if client
            .try_subscribe(filter.clone(), QoS::AtLeastOnce)
            .is_ok()
        {
            shared.subscribed.insert(filter.clone());
        }
    }
    for filter in shared.subscribed.clone().difference(&wanted) {
        if client.try_unsubscribe(filter.clone()).is_ok() {
            shared.subscribed.remove(filter);
            shared.kept.remove(filter);
        }
    }
}
