//! The agent's loop: read sysfs, match devices to pins, report presence, serve the
//! device plugins; again on every pin change and every rescan interval.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use homelab_api::UsbDevicePin;
use homelab_api::usbdevicepin::DeviceAccess;
use homelab_kit::device_pin::env_name;
use homelab_kit::health::Health;
use homelab_kit::metrics::{Metrics, WatchMetrics};
use homelab_kit::server::Server;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Notify;

use crate::deviceplugin::manager::PluginManager;
use crate::deviceplugin::service::{PluginDevice, PluginState};
use crate::matching::{self, PinKey};
use crate::metrics::AgentMetrics;
use crate::report::Reporter;
use crate::seen::Seen;
use crate::sysfs::UsbDevice;
use crate::{Error, Settings};

/// The `controller` label of the agent's metrics.
pub const METRICS_NAME: &str = "node-agent";

/// Runs the agent until `shutdown` completes, then stops its plugins (removing their
/// sockets). Presence entries stay: the devices are still plugged in.
///
/// # Errors
/// [`Error::Server`] when the health port cannot be opened, [`Error::WatchStopped`]
/// when the pin watch ends by itself.
pub async fn run(
    client: Client,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let api: Api<UsbDevicePin> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut metrics = Metrics::new();
    let watch_metrics = WatchMetrics::default();
    watch_metrics.register(metrics.sub_registry(METRICS_NAME));
    let agent_metrics = Arc::new(AgentMetrics::new(
        &settings.node_name,
        metrics.sub_registry(METRICS_NAME),
    ));
    let health = Health::new(std::time::Duration::from_secs(180)).with_metrics(watch_metrics);
    let (store, writer) = reflector::store();
    let changed = Arc::new(Notify::new());
    let watch = {
        let changed = changed.clone();
        let stream = health
            .watch("UsbDevicePin")
            .observe(watcher(api, watcher::Config::default()).default_backoff())
            .reflect(writer)
            .touched_objects();
        async move {
            futures::pin_mut!(stream);
            // Failures are logged by the health probe; the watcher retries them.
            while stream.next().await.is_some() {
                changed.notify_one();
            }
        }
    };
    let (server_stop, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = match settings.http_addr {
        Some(addr) => {
            let server = Server::bind(addr).await.map_err(Error::Server)?;
            let health = health.clone();
            Some(tokio::spawn(server.run(
                Arc::new(metrics),
                health,
                async move {
                    let _ = server_stopped.await;
                },
            )))
        }
        None => None,
    };

    tracing::info!(node = %settings.node_name, sysfs = %settings.roots.sysfs.display(), "node agent started");
    let mut agent = Agent::new(client, &settings, store.clone(), agent_metrics);
    let work = async {
        store
            .wait_until_ready()
            .await
            .map_err(|_| Error::WatchStopped)?;
        let mut tick = tokio::time::interval(settings.rescan_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            agent.pass().await;
            tokio::select! {
                _ = tick.tick() => {}
                () = changed.notified() => {}
            }
        }
    };
    let outcome = tokio::select! {
        () = shutdown => Ok(()),
        () = watch => Err(Error::WatchStopped),
        result = work => result,
    };
    agent.plugins.stop_all().await;
    let _ = server_stop.send(());
    if let Some(server) = server {
        let _ = server.await;
    }
    tracing::info!(node = %settings.node_name, "node agent stopped");
    outcome
}

/// The agent's state between passes.
struct Agent {
    settings: Settings,
    store: Store<UsbDevicePin>,
    seen: Seen,
    reporter: Reporter,
    plugins: PluginManager,
    metrics: Arc<AgentMetrics>,
}

impl Agent {
    fn new(
        client: Client,
        settings: &Settings,
        store: Store<UsbDevicePin>,
        metrics: Arc<AgentMetrics>,
    ) -> Self {
        Self {
            metrics,
            reporter: Reporter::new(client, &settings.node_name),
            plugins: PluginManager::new(&settings.device_plugin_dir),
            seen: Seen::default(),
            settings: settings.clone(),
            store,
        }
    }

    /// One pass: everything level-triggered from what sysfs and the cache say now.
    async fn pass(&mut self) {
        let roots = self.settings.roots.clone();
        let mut devices = match tokio::task::spawn_blocking(move || roots.scan()).await {
            Ok(devices) => devices,
            Err(err) => {
                tracing::warn!(error = %err, "sysfs scan failed");
                return;
            }
        };
        for device in &mut devices {
            self.settings.device_classes.restrict(device);
        }
        self.metrics.scanned(devices.len());
        self.seen.observe(&devices, homelab_api::conditions::now());
        let pins = self.store.state();
        let assigned = matching::assign(&pins, &devices);
        let node = self.settings.node_name.clone();
        let mut present = Vec::with_capacity(pins.len());
        for pin in &pins {
            let key = matching::pin_key(pin);
            let reported = matching::reported(pin, &node);
            let desired = assigned
                .get(&key)
                .and_then(|devices| devices.first())
                .map(|device| matching::presence(&node, device, reported, &self.seen));
            present.push((key.clone(), desired.is_some()));
            if let Err(err) = self.reporter.sync(pin, desired).await {
                self.metrics.report_failed();
                tracing::warn!(error = %homelab_kit::error::report(&err), "presence report failed; retrying");
            }
        }
        self.metrics.present(present);
        let uids: Vec<String> = pins.iter().filter_map(|p| p.uid()).collect();
        self.reporter.retain(&uids);
        if self.settings.device_plugins {
            self.plugins.sync(plugin_states(&pins, &assigned)).await;
        }
    }
}

/// The device plugin of every pin using the device plugin, by resource name (which
/// holds the pin's namespace and name, so each pin has its own).
pub fn plugin_states(
    pins: &[Arc<UsbDevicePin>],
    assigned: &BTreeMap<PinKey, Vec<&UsbDevice>>,
) -> BTreeMap<String, PluginState> {
    let mut ordered: Vec<&Arc<UsbDevicePin>> = pins
        .iter()
        .filter(|p| p.spec.access == DeviceAccess::DevicePlugin)
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    ordered.sort_by(|a, b| matching::claim_order(a, b));
    let mut states = BTreeMap::new();
    for pin in ordered {
        let resource = pin.resource_name();
        if states.contains_key(&resource) {
            tracing::warn!(pin = %matching::pin_key(pin).1, namespace = %matching::pin_key(pin).0, %resource, "another pin owns this resource");
            continue;
        }
        let mine = assigned
            .get(&matching::pin_key(pin))
            .cloned()
            .unwrap_or_default();
        // An exclusive pin is one device: a second identical stick must not let a
        // second consumer in.
        let take = if pin.spec.exclusive { 1 } else { mine.len() };
        let devices = mine
            .iter()
            .take(take)
            .map(|d| PluginDevice {
                id: device_id(d),
                healthy: d.dev_node.is_some(),
                host_path: d.dev_node.clone().unwrap_or_default(),
            })
            .collect();
        states.insert(
            resource,
            PluginState {
                container_path: pin.container_path(),
                env_name: env_name(&pin.name_any()),
                devices,
            },
        );
    }
    states
}

/// The device's id for the kubelet: its port and enumeration, so a replugged stick
/// is a new device to the kubelet too.
fn device_id(device: &UsbDevice) -> String {
    match device.enumeration {
        Some((bus, dev)) => format!("usb-{}-{bus:03}-{dev:03}", device.port),
        None => format!("usb-{}", device.port),
    }
}
