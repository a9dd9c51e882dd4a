//! How a controller binary is configured: from the environment (the Helm
//! chart sets these), with defaults that suit one replica on a laptop.
//!
//! | variable | default | what |
//! |---|---|---|
//! | `HOMELAB_HTTP_ADDR` | `0.0.0.0:8080` | the `/metrics` `/healthz` `/readyz` port |
//! | `HOMELAB_WATCH_NAMESPACE` | all namespaces | watch only this namespace |
//! | `HOMELAB_LEADER_ELECTION` | `true` | take a Lease before reconciling |
//! | `HOMELAB_LEASE_NAMESPACE` | `POD_NAMESPACE`, else the client's namespace | where the Lease lives |
//! | `POD_NAME` | `HOSTNAME`, else `local-<pid>` | this replica's identity (Lease holder, Event instance) |
//! | `HOMELAB_WATCH_FAILURE_WINDOW` | `180` | seconds a watch may fail before `/healthz` fails |
//! | `HOMELAB_CONCURRENCY` | `4` | reconciles at once (0 = unbounded) |

use std::net::SocketAddr;
use std::time::Duration;

use crate::Error;

/// Settings of one controller binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The controller's name (`mediaserver-controller`): field manager, Event
    /// reporter, `controller` metric label and Lease name.
    pub name: String,
    /// Address of the health and metrics port.
    pub http_addr: SocketAddr,
    /// Watch only this namespace; `None` watches all.
    pub namespace: Option<String>,
    /// Whether to take a Lease before reconciling.
    pub leader_election: bool,
    /// Namespace of the Lease; `None` uses the client's default namespace.
    pub lease_namespace: Option<String>,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a watch may fail without recovering before `/healthz` fails.
    pub watch_failure_window: Duration,
    /// How many reconciles may run at once (0 = unbounded).
    pub concurrency: u16,
    /// First delay after a failed reconcile; doubles per failure.
    pub error_backoff_base: Duration,
    /// Longest delay after failed reconciles.
    pub error_backoff_cap: Duration,
}

impl Settings {
    /// Defaults for one replica without leader election.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            http_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            namespace: None,
            leader_election: false,
            lease_namespace: None,
            identity: format!("local-{}", std::process::id()),
            watch_failure_window: Duration::from_secs(180),
            concurrency: 4,
            error_backoff_base: Duration::from_secs(5),
            error_backoff_cap: Duration::from_secs(300),
        }
    }

    /// Settings from the process environment (see the module docs).
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for a value that does not parse.
    pub fn from_env(name: impl Into<String>) -> Result<Self, Error> {
        Self::from_lookup(name, |key| std::env::var(key).ok())
    }

    /// Settings from any source of variables.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for a value that does not parse.
    pub fn from_lookup(
        name: impl Into<String>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let get = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut s = Self::new(name);
        s.leader_election = true;
        if let Some(v) = get("HOMELAB_HTTP_ADDR") {
            s.http_addr = parse("HOMELAB_HTTP_ADDR", &v, "an address like 0.0.0.0:8080")?;
        }
        s.namespace = get("HOMELAB_WATCH_NAMESPACE");
        if let Some(v) = get("HOMELAB_LEADER_ELECTION") {
            s.leader_election = parse_bool("HOMELAB_LEADER_ELECTION", &v)?;
        }
        s.lease_namespace = get("HOMELAB_LEASE_NAMESPACE").or_else(|| get("POD_NAMESPACE"));
        if let Some(id) = get("POD_NAME").or_else(|| get("HOSTNAME")) {
            s.identity = id;
        }
        if let Some(v) = get("HOMELAB_WATCH_FAILURE_WINDOW") {
            let secs: u64 = parse(
                "HOMELAB_WATCH_FAILURE_WINDOW",
                &v,
                "whole seconds, e.g. 180",
            )?;
            s.watch_failure_window = Duration::from_secs(secs);
        }
        if let Some(v) = get("HOMELAB_CONCURRENCY") {
            s.concurrency = parse("HOMELAB_CONCURRENCY", &v, "a number from 0 to 65535")?;
        }
        Ok(s)
    }
}

fn parse<T: std::str::FromStr>(
    name: &'static str,
    value: &str,
    expected: &'static str,
) -> Result<T, Error> {
    value.parse().map_err(|_| Error::InvalidSetting {
        name,
        value: value.to_owned(),
        expected,
    })
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, Error> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::InvalidSetting {
            name,
            value: value.to_owned(),
            expected: "true or false",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<Settings, Error> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Settings::from_lookup("test-controller", |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_in_a_pod() {
        let s = from(&[("POD_NAME", "test-7d9f-abc"), ("POD_NAMESPACE", "homelab")]).unwrap();
        assert!(s.leader_election);
        assert_eq!(s.identity, "test-7d9f-abc");
        assert_eq!(s.lease_namespace.as_deref(), Some("homelab"));
        assert_eq!(s.namespace, None);
        assert_eq!(s.http_addr.port(), 8080);
    }

    #[test]
    fn everything_can_be_set() {
        let s = from(&[
            ("HOMELAB_HTTP_ADDR", "127.0.0.1:9090"),
            ("HOMELAB_WATCH_NAMESPACE", "test-ns"),
            ("HOMELAB_LEADER_ELECTION", "off"),
            ("HOMELAB_LEASE_NAMESPACE", "leases"),
            ("POD_NAMESPACE", "homelab"),
            ("HOSTNAME", "host-1"),
            ("HOMELAB_WATCH_FAILURE_WINDOW", "30"),
            ("HOMELAB_CONCURRENCY", "1"),
        ])
        .unwrap();
        assert_eq!(s.http_addr, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(s.namespace.as_deref(), Some("test-ns"));
        assert!(!s.leader_election);
        assert_eq!(s.lease_namespace.as_deref(), Some("leases"));
        assert_eq!(s.identity, "host-1");
        assert_eq!(s.watch_failure_window, Duration::from_secs(30));
        assert_eq!(s.concurrency, 1);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = from(&[("HOMELAB_LEADER_ELECTION", "maybe")]).unwrap_err();
        assert!(err.to_string().contains("HOMELAB_LEADER_ELECTION"), "{err}");
        let err = from(&[("HOMELAB_HTTP_ADDR", ":8080")]).unwrap_err();
        assert!(err.to_string().contains("0.0.0.0:8080"), "{err}");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let s = from(&[("HOMELAB_WATCH_NAMESPACE", "  ")]).unwrap();
        assert_eq!(s.namespace, None);
    }
}
