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
//! | `HOMELAB_API_QPS` | `20` | requests per second to the API server, on average (0 = no limit) |
//! | `HOMELAB_API_BURST` | `40` | requests let through at once before `HOMELAB_API_QPS` applies |
//! | `HOMELAB_SETTLE_MILLIS` | `500` | how long a change of a pod or a node waits to be reconciled, so that changes coming together are looked at once |
//! | `HOMELAB_ALLOWED_HOST_PATHS` | none | comma-separated absolute paths under which workloads may mount host directories (chart value `hostPaths.allowed`) |
//! | `HOMELAB_FENCING_ALLOWED` | `false` | failover may fence a lost node (`failover.fenceNode`) |

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
    /// Requests per second to the API server, on average (0 = no limit).
    pub api_qps: u32,
    /// Requests let through at once before `api_qps` applies.
    pub api_burst: u32,
    /// How long a change of a related object (a pod, a node) waits before the
    /// reconcile it triggers runs: a pod scheduled, started and Ready within
    /// this window is one reconcile, not three.
    pub settle: Duration,
    /// First delay after a failed reconcile; doubles per failure.
    pub error_backoff_base: Duration,
    /// Longest delay after failed reconciles.
    pub error_backoff_cap: Duration,
    /// The administrator lets failover fence a lost node with the out-of-service
    /// taint (`failover.fenceNode`); without it, such objects are refused.
    pub fencing_allowed: bool,
    /// Where on a node the workloads this controller runs may mount a host
    /// directory; empty allows none.
    pub allowed_host_paths: AllowedHostPaths,
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
            api_qps: 20,
            api_burst: 40,
            settle: Duration::from_millis(500),
            error_backoff_base: Duration::from_secs(5),
            error_backoff_cap: Duration::from_secs(300),
            fencing_allowed: false,
            allowed_host_paths: AllowedHostPaths::none(),
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
        if let Some(v) = get("HOMELAB_API_QPS") {
            s.api_qps = parse("HOMELAB_API_QPS", &v, "requests per second, 0 for no limit")?;
        }
        if let Some(v) = get("HOMELAB_API_BURST") {
            s.api_burst = parse("HOMELAB_API_BURST", &v, "a number of requests")?;
        }
        if let Some(v) = get("HOMELAB_SETTLE_MILLIS") {
            let millis: u64 = parse("HOMELAB_SETTLE_MILLIS", &v, "milliseconds, e.g. 500")?;
            s.settle = Duration::from_millis(millis);
        }
        if let Some(v) = get("HOMELAB_FENCING_ALLOWED") {
            s.fencing_allowed = parse_bool("HOMELAB_FENCING_ALLOWED", &v)?;
        }
        if let Some(v) = get(ALLOWED_HOST_PATHS) {
            s.allowed_host_paths = AllowedHostPaths::parse(&v)?;
        }
        Ok(s)
    }
}

/// The variable holding the host-path allow-list.
pub const ALLOWED_HOST_PATHS: &str = "HOMELAB_ALLOWED_HOST_PATHS";
/// The chart value that sets [`ALLOWED_HOST_PATHS`], for messages to a person.
pub const ALLOWED_HOST_PATHS_CHART_VALUE: &str = "hostPaths.allowed";

/// The directories under which an administrator lets workloads mount host
/// paths. A hostPath volume runs with the node's file permissions, so
/// whoever may create a MediaServer or SensorGateway could otherwise read
/// `/etc` or `/var/lib/kubelet` of any node; the default allows nothing.
///
/// Paths are compared by component: `/srv/media` allows `/srv/media` and
/// `/srv/media/films`, not `/srv/media2`. A path with a `..` component is
/// never allowed, whatever it would resolve to on the node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHostPaths {
    /// Each allowed directory, as its components (`/srv/media` is
    /// `["srv", "media"]`; `/` is empty and allows everything).
    prefixes: Vec<Vec<String>>,
}

/// Why a host path is not allowed, for a condition message and an Event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostPathRefused(String);

impl AllowedHostPaths {
    /// Allows no host path at all.
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// A comma-separated list of absolute directories; blanks between commas
    /// are ignored.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for an entry that is not absolute or climbs
    /// with `..`: an administrator's typo must not widen or silently narrow
    /// what workloads may mount.
    pub fn parse(list: &str) -> Result<Self, Error> {
        let mut prefixes = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let components = components(entry).ok_or_else(|| Error::InvalidSetting {
                name: ALLOWED_HOST_PATHS,
                value: list.to_owned(),
                expected: "comma-separated absolute directories without '..', such as /srv/media,/mnt/usb",
            })?;
            prefixes.push(components);
        }
        Ok(Self { prefixes })
    }

    /// Whether no host path is allowed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// Whether `path` lies in (or is) an allowed directory.
    #[must_use]
    pub fn allows(&self, path: &str) -> bool {
        components(path).is_some_and(|path| {
            self.prefixes
                .iter()
                .any(|prefix| path.starts_with(prefix.as_slice()))
        })
    }

    /// Checks `path`, found at `field` of a spec (`spec.config.hostPath.path`).
    ///
    /// # Errors
    /// [`HostPathRefused`] naming the path, the field, what is allowed and
    /// the setting that allows more.
    pub fn check(&self, field: &str, path: &str) -> Result<(), HostPathRefused> {
        if self.allows(path) {
            return Ok(());
        }
        let why = if components(path).is_none() {
            "is not an absolute path without '..'".to_owned()
        } else if self.is_empty() {
            "is not allowed: this cluster allows no host paths".to_owned()
        } else {
            format!("is not under an allowed directory ({self})")
        };
        Err(HostPathRefused(format!(
            "host path {path:?} ({field}) {why}; an administrator allows host directories with the chart value {ALLOWED_HOST_PATHS_CHART_VALUE} ({ALLOWED_HOST_PATHS}), or use a volume claim or NFS instead"
        )))
    }
}

impl std::fmt::Display for AllowedHostPaths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, prefix) in self.prefixes.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "/{}", prefix.join("/"))?;
        }
        Ok(())
    }
}

/// The components of an absolute path, without empty and `.` ones; `None`
/// for a relative path or one with a `..` component.
fn components(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix('/')?;
    let mut out = Vec::new();
    for part in rest.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            other => out.push(other.to_owned()),
        }
    }
    Some(out)
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
        assert!(!s.fencing_allowed, "fencing is the administrator's opt-in");
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
            ("HOMELAB_FENCING_ALLOWED", "true"),
        ])
        .unwrap();
        assert_eq!(s.http_addr, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(s.namespace.as_deref(), Some("test-ns"));
        assert!(!s.leader_election);
        assert_eq!(s.lease_namespace.as_deref(), Some("leases"));
        assert_eq!(s.identity, "host-1");
        assert_eq!(s.watch_failure_window, Duration::from_secs(30));
        assert_eq!(s.concurrency, 1);
        assert!(s.fencing_allowed);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = from(&[("HOMELAB_LEADER_ELECTION", "maybe")]).unwrap_err();
        assert!(err.to_string().contains("HOMELAB_LEADER_ELECTION"), "{err}");
        let err = from(&[("HOMELAB_HTTP_ADDR", ":8080")]).unwrap_err();
        assert!(err.to_string().contains("0.0.0.0:8080"), "{err}");
    }

    #[test]
    fn host_paths_are_none_unless_listed() {
        let s = from(&[]).unwrap();
        assert!(s.allowed_host_paths.is_empty());
        assert!(!s.allowed_host_paths.allows("/srv/media"));
        assert!(!s.allowed_host_paths.allows("/"));
        let s = from(&[(ALLOWED_HOST_PATHS, " ")]).unwrap();
        assert!(s.allowed_host_paths.is_empty());
    }

    #[test]
    fn host_paths_compare_whole_components() {
        let s = from(&[(ALLOWED_HOST_PATHS, "/srv/media/, /mnt/usb,,")]).unwrap();
        let allowed = &s.allowed_host_paths;
        assert_eq!(allowed.to_string(), "/srv/media, /mnt/usb");
        for ok in [
            "/srv/media",
            "/srv/media/",
            "/srv/media/films",
            "/srv//media/./films",
            "/mnt/usb/music",
        ] {
            assert!(allowed.allows(ok), "{ok}");
        }
        for refused in [
            "/srv/media2",
            "/srv",
            "/",
            "/srv/media/../../etc",
            "/srv/media/..",
            "srv/media",
            "",
            "/mnt/usbx/music",
        ] {
            assert!(!allowed.allows(refused), "{refused}");
        }
    }

    #[test]
    fn the_root_allows_everything_but_dot_dot() {
        let allowed = AllowedHostPaths::parse("/").unwrap();
        assert!(allowed.allows("/etc"));
        assert!(!allowed.allows("/srv/../etc"));
    }

    #[test]
    fn a_bad_allow_list_is_refused_at_start() {
        for bad in ["srv/media", "/srv/media,../etc", "/srv/../etc"] {
            let err = from(&[(ALLOWED_HOST_PATHS, bad)]).unwrap_err();
            assert!(err.to_string().contains(ALLOWED_HOST_PATHS), "{err}");
        }
    }

    #[test]
    fn a_refusal_names_path_field_and_setting() {
        let allowed = AllowedHostPaths::parse("/srv/media").unwrap();
        assert!(
            allowed
                .check("spec.media[films].hostPath.path", "/srv/media/films")
                .is_ok()
        );
        let err = allowed
            .check("spec.media[films].hostPath.path", "/srv/media2")
            .unwrap_err()
            .to_string();
        for wanted in [
            "\"/srv/media2\"",
            "spec.media[films].hostPath.path",
            "(/srv/media)",
            "hostPaths.allowed",
            ALLOWED_HOST_PATHS,
        ] {
            assert!(err.contains(wanted), "{wanted} in {err}");
        }
        let err = AllowedHostPaths::none()
            .check("spec.data.hostPath.path", "/srv")
            .unwrap_err()
            .to_string();
        assert!(err.contains("allows no host paths"), "{err}");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let s = from(&[("HOMELAB_WATCH_NAMESPACE", "  ")]).unwrap();
        assert_eq!(s.namespace, None);
    }
}
