//! What the MQTT connections keep of what they hear, and the bound on it.
//!
//! Per topic filter a gateway asked for, the controller keeps when it last heard
//! a message and, for availability topics only, the payload (sensors need only the
//! time). Filters come from the SensorGateways, which anyone allowed to create one
//! can multiply, and payloads from whoever may publish on the broker, so both are
//! bounded for the whole controller: at most [`MqttBudget::max_topics`] filters
//! and [`MqttBudget::max_bytes`] bytes. A message beyond the bound is ignored,
//! counted in `homelab_sensorgateway_mqtt_ignored_messages_total`, and logged
//! once until the use falls back under the bound. What was kept before stays:
//! ignoring the newcomer, rather than evicting what another gateway relies on,
//! keeps one flooded filter from blinding every gateway on the controller.
//!
//! | variable | default | what |
//! |---|---|---|
//! | `HOMELAB_MQTT_MAX_TOPICS` | `4096` | topic filters kept, all brokers together |
//! | `HOMELAB_MQTT_MAX_BYTES` | `4194304` (4 MiB) | bytes kept, all brokers together |

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use homelab_kit::metrics::register_family;
use k8s_openapi::jiff::Timestamp;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::hub::{Seen, lock};

/// Variable bounding how many topic filters the controller keeps.
pub const MAX_TOPICS_VAR: &str = "HOMELAB_MQTT_MAX_TOPICS";
/// Variable bounding how many bytes the controller keeps.
pub const MAX_BYTES_VAR: &str = "HOMELAB_MQTT_MAX_BYTES";

/// Longest availability payload kept whole. Gateways say `online`,
/// `{"state":"online"}` or `{"value":true,"time":...}`; anything longer is
/// not an availability message, and its start is enough to show that.
pub const MAX_KEPT_PAYLOAD: usize = 1024;

/// What one kept filter costs besides its name and payload: the map entry, the
/// timestamps and the allocations' headers, roughly. Counting it makes many
/// empty entries cost something too.
const ENTRY_OVERHEAD: usize = 128;

/// The bound on what the controller keeps of MQTT messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MqttBudget {
    /// Topic filters kept, all brokers together.
    pub max_topics: usize,
    /// Bytes kept (filter names, payloads and per-entry overhead), all brokers
    /// together.
    pub max_bytes: usize,
}

impl Default for MqttBudget {
    /// Room for a few hundred gateways with dozens of sensors each, in a few
    /// MiB: small beside a Raspberry Pi's memory, large beside any homelab.
    fn default() -> Self {
        Self {
            max_topics: 4096,
            max_bytes: 4 * 1024 * 1024,
        }
    }
}

impl MqttBudget {
    /// The budget from the process environment (see the module docs).
    ///
    /// # Errors
    /// [`homelab_kit::Error::InvalidSetting`] for a value that is not a
    /// positive whole number.
    pub fn from_env() -> Result<Self, homelab_kit::Error> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// The budget from any source of variables; unset or blank keeps the default.
    ///
    /// # Errors
    /// As [`MqttBudget::from_env`].
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, homelab_kit::Error> {
        let mut budget = Self::default();
        let read = |name: &'static str, expected: &'static str| -> Result<Option<usize>, _> {
            let Some(value) = lookup(name).map(|v| v.trim().to_owned()) else {
                return Ok(None);
            };
            if value.is_empty() {
                return Ok(None);
            }
            value
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or(homelab_kit::Error::InvalidSetting {
                    name,
                    value,
                    expected,
                })
        };
        if let Some(n) = read(MAX_TOPICS_VAR, "a whole number above 0, such as 4096")? {
            budget.max_topics = n;
        }
        if let Some(n) = read(MAX_BYTES_VAR, "a number of bytes above 0, such as 4194304")? {
            budget.max_bytes = n;
        }
        Ok(budget)
    }
}

/// Why a message was not kept: a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ignored {
    /// It would have been one filter too many.
    Topics,
    /// Its payload would have gone over the byte budget.
    Bytes,
}

impl Ignored {
    fn label(self) -> &'static str {
        match self {
            Self::Topics => "topics",
            Self::Bytes => "bytes",
        }
    }
}

#[derive(Debug, Default)]
struct Usage {
    topics: usize,
    bytes: usize,
}

/// The controller-wide account every broker's [`Kept`] draws on. Cheap to
/// share.
#[derive(Debug)]
pub(super) struct Budget {
    limits: MqttBudget,
    used: Mutex<Usage>,
    /// Whether the last message was ignored: the warning is logged when this
    /// turns true, not for every message of a flood.
    over: AtomicBool,
    ignored: Family<[(&'static str, &'static str); 1], Counter>,
    kept_topics: Gauge,
    kept_bytes: Gauge,
}

impl Budget {
    pub(super) fn new(limits: MqttBudget) -> Arc<Self> {
        Arc::new(Self {
            limits,
            used: Mutex::default(),
            over: AtomicBool::new(false),
            ignored: Family::default(),
            kept_topics: Gauge::default(),
            kept_bytes: Gauge::default(),
        })
    }

    /// Registers the budget's metrics in the controller's sub-registry.
    pub(super) fn register(&self, registry: &mut Registry) {
        register_family(
            registry,
            "sensorgateway_mqtt_ignored_messages",
            "MQTT messages not kept because the controller's MQTT budget (HOMELAB_MQTT_MAX_TOPICS, HOMELAB_MQTT_MAX_BYTES) was used up, by which bound",
            &self.ignored,
            [Ignored::Topics, Ignored::Bytes].map(|bound| [("bound", bound.label())]),
        );
        registry.register(
            "sensorgateway_mqtt_kept_topics",
            "Topic filters the controller keeps the last message time (and availability payload) of",
            self.kept_topics.clone(),
        );
        registry.register(
            "sensorgateway_mqtt_kept_bytes",
            "Bytes the controller keeps of MQTT messages, counted against HOMELAB_MQTT_MAX_BYTES",
            self.kept_bytes.clone(),
        );
    }

    /// Takes `bytes` more (and a topic more if `new_topic`), or says which
    /// bound refuses it. `released` bytes are given back in the same step (the
    /// payload being replaced).
    fn take(&self, new_topic: bool, released: usize, bytes: usize) -> Result<(), Ignored> {
        let mut used = lock(&self.used);
        if new_topic && used.topics >= self.limits.max_topics {
            return Err(Ignored::Topics);
        }
        let after = used.bytes.saturating_sub(released).saturating_add(bytes);
        if after > self.limits.max_bytes {
            return Err(Ignored::Bytes);
        }
        used.bytes = after;
        used.topics += usize::from(new_topic);
        self.publish(&used);
        Ok(())
    }

    fn give_back(&self, topics: usize, bytes: usize) {
        let mut used = lock(&self.used);
        used.topics = used.topics.saturating_sub(topics);
        used.bytes = used.bytes.saturating_sub(bytes);
        self.publish(&used);
    }

    fn publish(&self, used: &Usage) {
        self.kept_topics
            .set(i64::try_from(used.topics).unwrap_or(i64::MAX));
        self.kept_bytes
            .set(i64::try_from(used.bytes).unwrap_or(i64::MAX));
    }

    fn ignored(&self, why: Ignored, broker: &str, filter: &str) {
        self.ignored.get_or_create(&[("bound", why.label())]).inc();
        if !self.over.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                broker,
                filter,
                bound = why.label(),
                max_topics = self.limits.max_topics,
                max_bytes = self.limits.max_bytes,
                "MQTT messages are being ignored: the controller keeps no more topics or bytes than {MAX_TOPICS_VAR} and {MAX_BYTES_VAR} allow; a peer may be flooding a watched topic filter, or the bounds are too small for this many gateways"
            );
        }
    }

    fn kept(&self) {
        if self.over.swap(false, Ordering::Relaxed) {
            tracing::info!("MQTT messages are kept again: the controller's MQTT budget has room");
        }
    }

    /// Topics and bytes in use (for tests).
    #[cfg(test)]
    fn used(&self) -> (usize, usize) {
        let used = lock(&self.used);
        (used.topics, used.bytes)
    }
}

/// One kept filter.
#[derive(Debug)]
struct Entry {
    at: Timestamp,
    changed_at: Timestamp,
    /// The payload, cut to [`MAX_KEPT_PAYLOAD`]; `None` for a filter no
    /// gateway reads the payload of.
    payload: Option<Box<[u8]>>,
}

impl Entry {
    fn cost(filter: &str, payload: Option<&[u8]>) -> usize {
        ENTRY_OVERHEAD + filter.len() + payload.map_or(0, <[u8]>::len)
    }
}

/// What one broker connection keeps, per topic filter, within the
/// controller's [`Budget`]. Gives its share back when dropped.
#[derive(Debug)]
pub(super) struct Kept {
    budget: Arc<Budget>,
    broker: String,
    entries: HashMap<String, Entry>,
}

impl Kept {
    pub(super) fn new(budget: Arc<Budget>, broker: String) -> Self {
        Self {
            budget,
            broker,
            entries: HashMap::new(),
        }
    }

    /// When a message matching `filter` was last heard.
    pub(super) fn at(&self, filter: &str) -> Option<Timestamp> {
        self.entries.get(filter).map(|e| e.at)
    }

    /// The last message on `filter`, when its payload was kept.
    pub(super) fn seen(&self, filter: &str) -> Option<Seen> {
        let entry = self.entries.get(filter)?;
        Some(Seen {
            at: entry.at,
            payload: entry.payload.as_deref()?.to_vec(),
            changed_at: entry.changed_at,
        })
    }

    /// Whether `payload` differs from the one kept for `filter` (or none is).
    pub(super) fn payload_differs(&self, filter: &str, payload: &[u8]) -> bool {
        self.entries
            .get(filter)
            .and_then(|e| e.payload.as_deref())
            .is_none_or(|kept| kept != cut(payload))
    }

    /// Records a message matching `filter`, with its payload if `keep_payload`.
    /// Returns whether it was kept; a message the budget has no room for is
    /// ignored (the entry, if any, stays as it was).
    pub(super) fn record(
        &mut self,
        filter: &str,
        now: Timestamp,
        payload: &[u8],
        keep_payload: bool,
    ) -> bool {
        let payload = keep_payload.then(|| cut(payload));
        let old = self.entries.get(filter);
        let released = old.map_or(0, |e| Entry::cost(filter, e.payload.as_deref()));
        let cost = Entry::cost(filter, payload);
        if let Err(why) = self.budget.take(old.is_none(), released, cost) {
            self.budget.ignored(why, &self.broker, filter);
            return false;
        }
        self.budget.kept();
        let changed_at = match (old, payload) {
            (Some(e), Some(p)) if e.payload.as_deref() == Some(p) => e.changed_at,
            _ => now,
        };
        self.entries.insert(
            filter.to_owned(),
            Entry {
                at: now,
                changed_at,
                payload: payload.map(Box::from),
            },
        );
        true
    }

    /// Forgets `filter` (it was unsubscribed).
    pub(super) fn remove(&mut self, filter: &str) {
        if let Some(e) = self.entries.remove(filter) {
            self.budget
                .give_back(1, Entry::cost(filter, e.payload.as_deref()));
        }
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        let bytes = self
            .entries
            .iter()
            .map(|(f, e)| Entry::cost(f, e.payload.as_deref()))
            .sum();
        self.budget.give_back(self.entries.len(), bytes);
    }
}

/// At most [`MAX_KEPT_PAYLOAD`] bytes of a payload.
fn cut(payload: &[u8]) -> &[u8] {
    &payload[..payload.len().min(MAX_KEPT_PAYLOAD)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn budget(max_topics: usize, max_bytes: usize) -> Arc<Budget> {
        Budget::new(MqttBudget {
            max_topics,
            max_bytes,
        })
    }

    #[test]
    fn defaults_and_settings() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            MqttBudget::from_lookup(vars(&[])).unwrap(),
            MqttBudget::default()
        );
        let b =
            MqttBudget::from_lookup(vars(&[(MAX_TOPICS_VAR, "64"), (MAX_BYTES_VAR, " 65536 ")]))
                .unwrap();
        assert_eq!((b.max_topics, b.max_bytes), (64, 65536));
        for bad in ["0", "-1", "lots"] {
            let err = MqttBudget::from_lookup(|k| (k == MAX_TOPICS_VAR).then(|| bad.to_owned()))
                .unwrap_err();
            assert!(err.to_string().contains(MAX_TOPICS_VAR), "{err}");
        }
    }

    #[test]
    fn sensors_keep_the_time_availability_the_payload() {
        let b = budget(10, 1 << 20);
        let mut kept = Kept::new(b.clone(), "b:1883".into());
        assert!(kept.record("garden/+/moisture", t(1), b"42", false));
        assert_eq!(kept.at("garden/+/moisture"), Some(t(1)));
        assert_eq!(kept.seen("garden/+/moisture"), None, "no payload kept");
        assert!(kept.record("z2m/bridge/state", t(2), b"online", true));
        assert_eq!(kept.seen("z2m/bridge/state").unwrap().payload, b"online");
        // The same payload again keeps when it last changed.
        assert!(kept.record("z2m/bridge/state", t(5), b"online", true));
        let seen = kept.seen("z2m/bridge/state").unwrap();
        assert_eq!((seen.at, seen.changed_at), (t(5), t(2)));
        assert!(!kept.payload_differs("z2m/bridge/state", b"online"));
        assert!(kept.payload_differs("z2m/bridge/state", b"offline"));
        assert_eq!(b.used().0, 2);
    }

    #[test]
    fn a_huge_availability_payload_is_kept_cut() {
        let b = budget(10, 1 << 20);
        let mut kept = Kept::new(b.clone(), "b:1883".into());
        let huge = vec![b'x'; 256 * 1024];
        assert!(kept.record("gw/status", t(1), &huge, true));
        assert_eq!(
            kept.seen("gw/status").unwrap().payload.len(),
            MAX_KEPT_PAYLOAD
        );
        assert_eq!(
            b.used().1,
            ENTRY_OVERHEAD + "gw/status".len() + MAX_KEPT_PAYLOAD
        );
        assert!(!kept.payload_differs("gw/status", &huge));
    }

    #[test]
    fn topics_beyond_the_bound_are_ignored_and_counted() {
        let b = budget(3, 1 << 20);
        let mut registry = Registry::default();
        b.register(&mut registry);
        let mut one = Kept::new(b.clone(), "a:1883".into());
        let mut two = Kept::new(b.clone(), "b:1883".into());
        assert!(one.record("a/1", t(1), b"", false));
        assert!(one.record("a/2", t(1), b"", false));
        assert!(two.record("b/1", t(1), b"", false));
        // The bound is the controller's, across brokers.
        assert!(!two.record("b/2", t(2), b"", false));
        assert!(!one.record("a/3", t(2), b"", false));
        assert_eq!(two.at("b/2"), None);
        // What is kept still updates.
        assert!(one.record("a/1", t(3), b"", false));
        assert_eq!(one.at("a/1"), Some(t(3)));
        assert_eq!(b.used().0, 3);
        assert_eq!(b.ignored.get_or_create(&[("bound", "topics")]).get(), 2);
        assert_eq!(b.kept_topics.get(), 3);
        // Room again once a filter is unsubscribed, or a broker dropped.
        one.remove("a/2");
        assert!(two.record("b/2", t(4), b"", false));
        drop(two);
        assert_eq!(b.used().0, 1);
        assert_eq!(
            b.used().1,
            ENTRY_OVERHEAD + "a/1".len(),
            "a dropped broker gives back all it kept"
        );
    }

    #[test]
    fn bytes_beyond_the_bound_are_ignored_and_the_old_payload_stays() {
        let room = 2 * ENTRY_OVERHEAD + 2 * "gw/status".len() + 100;
        let b = budget(100, room);
        let mut kept = Kept::new(b.clone(), "b:1883".into());
        assert!(kept.record("gw/status", t(1), &[b'o'; 50], true));
        assert!(kept.record("gx/status", t(1), &[b'o'; 50], true));
        // Replacing a payload by one as long fits; a longer one does not.
        assert!(kept.record("gw/status", t(2), &[b'p'; 50], true));
        assert!(!kept.record("gw/status", t(3), &[b'q'; 51], true));
        let seen = kept.seen("gw/status").unwrap();
        assert_eq!((seen.at, seen.payload[0]), (t(2), b'p'));
        assert_eq!(b.ignored.get_or_create(&[("bound", "bytes")]).get(), 1);
        assert!(b.used().1 <= room);
    }

    #[test]
    fn a_flood_of_filters_stays_within_the_bound() {
        let b = budget(64, 64 * 1024);
        let mut kept = Kept::new(b.clone(), "b:1883".into());
        let payload = vec![b'x'; 4096];
        let mut stored = 0;
        for i in 0..10_000 {
            if kept.record(&format!("flood/{i}"), t(i), &payload, i % 2 == 0) {
                stored += 1;
            }
        }
        let (topics, bytes) = b.used();
        assert!(
            topics <= 64 && bytes <= 64 * 1024,
            "{topics} topics, {bytes} bytes"
        );
        assert_eq!(stored, topics);
        assert_eq!(kept.entries.len(), topics);
    }
}
