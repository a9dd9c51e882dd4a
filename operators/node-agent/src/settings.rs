//! How the agent is configured: from the environment the DaemonSet sets.
//!
//! | variable | default | what |
//! |---|---|---|
//! | `NODE_NAME` | required | this node (the downward API's `spec.nodeName`) |
//! | `HOMELAB_SYSFS_ROOT` | `/sys` | where sysfs is mounted |
//! | `HOMELAB_DEV_ROOT` | `/dev` | the host's /dev (for `/dev/serial/by-id`) |
//! | `HOMELAB_DEVICE_PLUGIN_DIR` | `/var/lib/kubelet/device-plugins` | the kubelet's device-plugin sockets |
//! | `HOMELAB_DEVICE_PLUGINS` | `true` | serve the device-plugin API (off on nodes without a kubelet) |
//! | `HOMELAB_RESCAN_SECONDS` | `2` | how often sysfs is read again |
//! | `HOMELAB_WATCH_NAMESPACE` | all namespaces | only pins in this namespace |
//! | `HOMELAB_DEVICE_CLASSES` | `serial,hidraw` | the device nodes a pin may hand out (also `video`, `usbfs`, `block`) |
//! | `HOMELAB_HTTP_ADDR` | `0.0.0.0:8080` | `/metrics`, `/healthz`, `/readyz` |

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::Error;
use crate::device_class::AllowedClasses;
use crate::sysfs::Roots;

/// The kubelet's device-plugin directory.
pub const KUBELET_DEVICE_PLUGIN_DIR: &str = "/var/lib/kubelet/device-plugins";

/// Settings of one agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The node this agent runs on: the key of its presence entries.
    pub node_name: String,
    /// Where to read sysfs and /dev.
    pub roots: Roots,
    /// The kubelet's device-plugin directory (its `kubelet.sock` and ours).
    pub device_plugin_dir: PathBuf,
    /// Whether to serve the device-plugin API.
    pub device_plugins: bool,
    /// How often to read sysfs again.
    pub rescan_interval: Duration,
    /// Only pins in this namespace; `None` for all.
    pub namespace: Option<String>,
    /// The kinds of device node pins may hand out.
    pub device_classes: AllowedClasses,
    /// The health and metrics port; `None` serves none (tests).
    pub http_addr: Option<SocketAddr>,
}

impl Settings {
    /// Defaults for `node_name` on a real host, without the HTTP port.
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            roots: Roots {
                sysfs: PathBuf::from("/sys"),
                dev: PathBuf::from("/dev"),
            },
            device_plugin_dir: PathBuf::from(KUBELET_DEVICE_PLUGIN_DIR),
            device_plugins: true,
            rescan_interval: Duration::from_secs(2),
            namespace: None,
            device_classes: AllowedClasses::default(),
            http_addr: None,
        }
    }

    /// Settings from the process environment (see the module docs).
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for a missing `NODE_NAME` or a value that does not
    /// parse.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Settings from any source of variables.
    ///
    /// # Errors
    /// As [`Settings::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let node = get("NODE_NAME").ok_or(Error::InvalidSetting {
            name: "NODE_NAME",
            value: String::new(),
            expected: "the node's name, from the downward API (fieldRef spec.nodeName)",
        })?;
        let mut s = Self::new(node);
        if let Some(v) = get("HOMELAB_SYSFS_ROOT") {
            s.roots.sysfs = PathBuf::from(v);
        }
        if let Some(v) = get("HOMELAB_DEV_ROOT") {
            s.roots.dev = PathBuf::from(v);
        }
        if let Some(v) = get("HOMELAB_DEVICE_PLUGIN_DIR") {
            s.device_plugin_dir = PathBuf::from(v);
        }
        if let Some(v) = get("HOMELAB_DEVICE_PLUGINS") {
            s.device_plugins = match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(Error::InvalidSetting {
                        name: "HOMELAB_DEVICE_PLUGINS",
                        value: v,
                        expected: "true or false",
                    });
                }
            };
        }
        if let Some(v) = get("HOMELAB_RESCAN_SECONDS") {
            let secs: u64 = v
                .parse()
                .ok()
                .filter(|s| *s > 0)
                .ok_or(Error::InvalidSetting {
                    name: "HOMELAB_RESCAN_SECONDS",
                    value: v,
                    expected: "whole seconds above 0, such as 2",
                })?;
            s.rescan_interval = Duration::from_secs(secs);
        }
        s.namespace = get("HOMELAB_WATCH_NAMESPACE");
        if let Some(v) = get("HOMELAB_DEVICE_CLASSES") {
            s.device_classes = AllowedClasses::parse(&v).map_err(|_| Error::InvalidSetting {
                name: "HOMELAB_DEVICE_CLASSES",
                value: v,
                expected: "a comma-separated list of serial, hidraw, video, usbfs, block",
            })?;
        }
        let addr = get("HOMELAB_HTTP_ADDR").unwrap_or_else(|| "0.0.0.0:8080".to_owned());
        s.http_addr = Some(addr.parse().map_err(|_| Error::InvalidSetting {
            name: "HOMELAB_HTTP_ADDR",
            value: addr,
            expected: "an address like 0.0.0.0:8080",
        })?);
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |key| vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn node_name_is_required() {
        let err = Settings::from_lookup(lookup(&[])).unwrap_err();
        assert!(err.to_string().contains("NODE_NAME"), "{err}");
    }

    #[test]
    fn defaults_suit_a_real_node() {
        let s = Settings::from_lookup(lookup(&[("NODE_NAME", "pi4-1")])).unwrap();
        assert_eq!(s.roots.sysfs, PathBuf::from("/sys"));
        assert_eq!(
            s.device_plugin_dir,
            PathBuf::from(KUBELET_DEVICE_PLUGIN_DIR)
        );
        assert!(s.device_plugins);
        assert_eq!(s.rescan_interval, Duration::from_secs(2));
    }

    #[test]
    fn bad_values_are_refused() {
        for (k, v) in [
            ("HOMELAB_RESCAN_SECONDS", "0"),
            ("HOMELAB_DEVICE_PLUGINS", "maybe"),
            ("HOMELAB_HTTP_ADDR", "port 80"),
        ] {
            let err = Settings::from_lookup(lookup(&[("NODE_NAME", "n"), (k, v)])).unwrap_err();
            assert!(err.to_string().contains(k), "{err}");
        }
    }
}
