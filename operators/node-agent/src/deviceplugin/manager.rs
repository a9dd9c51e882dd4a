//! Starts, updates and stops one device plugin per resource as pins and devices come
//! and go, and registers each with the kubelet until it is accepted.
//!
//! The kubelet empties its device-plugin directory when it restarts: a plugin whose
//! socket has vanished is started again and registered again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::service::{DevicePluginService, PluginState};
use super::{KUBELET_SOCKET, registration, socket};
use crate::Error;

/// Longest `<namespace>.<pin>` part of a socket file name before it is shortened
/// with a hash: unix socket paths are limited to 107 bytes, and a kubelet's
/// device-plugin directory may be long (k0s, a test's temporary directory).
const MAX_SOCKET_NAME: usize = 24;

struct Running {
    endpoint: String,
    state: watch::Sender<PluginState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    registered: bool,
}

/// The plugins of one agent.
pub struct PluginManager {
    dir: PathBuf,
    plugins: BTreeMap<String, Running>,
}

impl std::fmt::Debug for PluginManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginManager")
            .field("dir", &self.dir)
            .field("resources", &self.plugins.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PluginManager {
    /// Plugins with their sockets in `dir` (the kubelet's device-plugin directory).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            plugins: BTreeMap::new(),
        }
    }

    /// Makes the running plugins those of `desired` (by resource name), with the
    /// states given. Registration failures are logged and retried on the next call.
    pub async fn sync(&mut self, desired: BTreeMap<String, PluginState>) {
        let gone: Vec<String> = self
            .plugins
            .keys()
            .filter(|r| !desired.contains_key(*r))
            .cloned()
            .collect();
        for resource in gone {
            self.stop(&resource).await;
        }
        for (resource, state) in desired {
            let stale = self
                .plugins
                .get(&resource)
                .is_some_and(|p| p.task.is_finished() || !self.dir.join(&p.endpoint).exists());
            if stale {
                tracing::info!(%resource, "device plugin socket gone (kubelet restarted?): starting again");
                self.stop(&resource).await;
            }
            if !self.plugins.contains_key(&resource) {
                match self.start(&resource, state.clone()) {
                    Ok(running) => {
                        self.plugins.insert(resource.clone(), running);
                    }
                    Err(err) => {
                        tracing::warn!(%resource, error = %homelab_kit::error::report(&err), "cannot start device plugin");
                        continue;
                    }
                }
            }
            let Some(plugin) = self.plugins.get_mut(&resource) else {
                continue;
            };
            plugin.state.send_if_modified(|current| {
                let changed = *current != state;
                if changed {
                    *current = state;
                }
                changed
            });
            if !plugin.registered {
                let kubelet = self.dir.join(KUBELET_SOCKET);
                match registration::register(&kubelet, &plugin.endpoint, &resource).await {
                    Ok(()) => {
                        tracing::info!(%resource, endpoint = %plugin.endpoint, "registered with the kubelet");
                        plugin.registered = true;
                    }
                    Err(err) => {
                        tracing::warn!(%resource, error = %homelab_kit::error::report(&err), "registration with the kubelet failed; retrying");
                    }
                }
            }
        }
    }

    /// Stops every plugin and removes its socket.
    pub async fn stop_all(&mut self) {
        let all: Vec<String> = self.plugins.keys().cloned().collect();
        for resource in all {
            self.stop(&resource).await;
        }
    }

    /// The resources served now.
    pub fn resources(&self) -> Vec<String> {
        self.plugins.keys().cloned().collect()
    }

    fn start(&self, resource: &str, state: PluginState) -> Result<Running, Error> {
        let endpoint = socket_name(resource);
        let (tx, rx) = watch::channel(state);
        let (stop, stopped) = oneshot::channel();
        let task = socket::serve(
            &self.dir.join(&endpoint),
            DevicePluginService::new(rx),
            stopped,
        )?;
        tracing::info!(%resource, %endpoint, "device plugin serving");
        Ok(Running {
            endpoint,
            state: tx,
            stop: Some(stop),
            task,
            registered: false,
        })
    }

    async fn stop(&mut self, resource: &str) {
        let Some(mut plugin) = self.plugins.remove(resource) else {
            return;
        };
        if let Some(stop) = plugin.stop.take() {
            let _ = stop.send(());
        }
        // ListAndWatch streams end when the state sender is dropped.
        drop(plugin.state);
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut plugin.task)
            .await
            .is_err()
        {
            plugin.task.abort();
        }
        remove_socket(&self.dir.join(&plugin.endpoint));
        tracing::info!(%resource, "device plugin stopped");
    }
}

fn remove_socket(path: &Path) {
    if let Err(err) = std::fs::remove_file(path)
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(socket = %path.display(), error = %err, "cannot remove device plugin socket");
    }
}

/// The socket file of a resource: `homelab-<namespace>.<pin>.sock`, shortened with a
/// hash when the names are long.
pub fn socket_name(resource: &str) -> String {
    let pin = match homelab_api::usbdevicepin::pin_of_resource(resource) {
        Some((namespace, pin)) => format!("{namespace}.{pin}"),
        None => resource.rsplit('/').next().unwrap_or(resource).to_owned(),
    };
    if pin.len() <= MAX_SOCKET_NAME {
        return format!("homelab-{pin}.sock");
    }
    // FNV-1a: stable across versions and platforms, unlike std's hasher.
    let hash = resource.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut short: String = pin.chars().take(MAX_SOCKET_NAME - 9).collect();
    short.push_str(&format!("-{:08x}", hash & 0xffff_ffff));
    format!("homelab-{short}.sock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_names_stay_short_and_distinct() {
        assert_eq!(
            socket_name("home.devices.homelab.home.arpa/zwave"),
            "homelab-home.zwave.sock"
        );
        assert_ne!(
            socket_name("home.devices.homelab.home.arpa/zwave"),
            socket_name("lab.devices.homelab.home.arpa/zwave")
        );
        let a = socket_name(&format!(
            "home.devices.homelab.home.arpa/{}a",
            "x".repeat(62)
        ));
        let b = socket_name(&format!(
            "home.devices.homelab.home.arpa/{}b",
            "x".repeat(62)
        ));
        assert_ne!(a, b);
        assert!(a.len() <= MAX_SOCKET_NAME + "homelab-.sock".len());
    }
}
