//! What an administrator allows (pure): in which namespaces EtcdBackups are honoured,
//! and which host paths their runs may mount.
//!
//! An EtcdBackup's runner runs as root on a control-plane node, with the host's
//! network and host directories mounted: whoever may create one there may read
//! etcd (every Secret of the cluster) or write to the node. So the controller acts
//! only for EtcdBackups in the namespaces an administrator lists, and mounts only
//! the certificate files and database of the distribution's own preset or paths
//! under prefixes the administrator lists. The chart's RBAC and admission policy say
//! the same; the controller enforces it itself, so a gap there opens nothing.
//!
//! | variable | default | what |
//! |---|---|---|
//! | `HOMELAB_ETCDBACKUP_NAMESPACES` | the controller's own namespace (`POD_NAMESPACE`) | comma-separated namespaces where EtcdBackups are honoured |
//! | `HOMELAB_ETCDBACKUP_HOST_PATHS` | none | comma-separated absolute path prefixes runs may mount besides the distribution's preset |

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use homelab_api::EtcdBackup;
use homelab_api::etcdbackup::{Datastore, EtcdBackupSpec, EtcdTlsFiles};
use kube::ResourceExt;

use crate::build;
use crate::preset;
use crate::validate::Problem;

/// Environment variable: the namespaces where EtcdBackups are honoured.
pub const NAMESPACES_ENV: &str = "HOMELAB_ETCDBACKUP_NAMESPACES";
/// Environment variable: the host path prefixes runs may mount.
pub const HOST_PATHS_ENV: &str = "HOMELAB_ETCDBACKUP_HOST_PATHS";
/// The chart value that sets [`NAMESPACES_ENV`], named in refusals.
pub const NAMESPACES_VALUE: &str = "etcdBackup.namespaces";
/// The chart value that sets [`HOST_PATHS_ENV`], named in refusals.
pub const HOST_PATHS_VALUE: &str = "etcdBackup.allowedHostPaths";
/// Condition reason: the EtcdBackup is in a namespace not on the list.
pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
/// Condition reason: the spec names a host path neither preset nor allowed.
pub const HOST_PATH_NOT_ALLOWED: &str = "HostPathNotAllowed";

/// The namespaces and host path prefixes an administrator allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Where EtcdBackups are honoured.
    namespaces: BTreeSet<String>,
    /// Absolute prefixes, normalized (no `.`, no repeated `/`).
    host_paths: Vec<PathBuf>,
}

impl Policy {
    /// A policy allowing `namespaces` and mounts under `host_paths`.
    ///
    /// # Errors
    /// [`homelab_kit::Error::InvalidSetting`] for a name that is no namespace name,
    /// or a prefix that is not absolute or contains `..`.
    pub fn new<N, P>(namespaces: N, host_paths: P) -> Result<Self, homelab_kit::Error>
    where
        N: IntoIterator,
        N::Item: Into<String>,
        P: IntoIterator,
        P::Item: AsRef<str>,
    {
        let mut allowed = BTreeSet::new();
        for ns in namespaces {
            let ns = ns.into();
            if !is_namespace_name(&ns) {
                return Err(homelab_kit::Error::InvalidSetting {
                    name: NAMESPACES_ENV,
                    value: ns,
                    expected: "comma-separated namespace names, such as kube-system,etcd-backups",
                });
            }
            allowed.insert(ns);
        }
        let mut prefixes = Vec::new();
        for prefix in host_paths {
            let prefix = prefix.as_ref();
            match normalize(prefix) {
                Ok(p) => prefixes.push(p),
                Err(_) => {
                    return Err(homelab_kit::Error::InvalidSetting {
                        name: HOST_PATHS_ENV,
                        value: prefix.to_owned(),
                        expected: "comma-separated absolute paths without '..', such as /var/backups/etcd,/srv/backups",
                    });
                }
            }
        }
        Ok(Self {
            namespaces: allowed,
            host_paths: prefixes,
        })
    }

    /// The policy from any source of variables: [`NAMESPACES_ENV`], else
    /// `POD_NAMESPACE`, else `own_namespace` (the client's namespace, for a
    /// controller run outside a pod); [`HOST_PATHS_ENV`], else no prefix at all.
    /// Empty entries are skipped, and an empty variable counts as unset.
    ///
    /// # Errors
    /// As [`Policy::new`].
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        own_namespace: &str,
    ) -> Result<Self, homelab_kit::Error> {
        let list = |key: &str| -> Vec<String> {
            lookup(key)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let mut namespaces = list(NAMESPACES_ENV);
        if namespaces.is_empty() {
            let own = lookup("POD_NAMESPACE")
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| own_namespace.to_owned());
            namespaces.push(own);
        }
        Self::new(namespaces, list(HOST_PATHS_ENV))
    }

    /// The policy from the process environment (see [`Policy::from_lookup`]).
    ///
    /// # Errors
    /// As [`Policy::new`].
    pub fn from_env(own_namespace: &str) -> Result<Self, homelab_kit::Error> {
        Self::from_lookup(|key| std::env::var(key).ok(), own_namespace)
    }

    /// No namespace at all: nothing is honoured.
    #[must_use]
    pub fn nothing() -> Self {
        Self {
            namespaces: BTreeSet::new(),
            host_paths: Vec::new(),
        }
    }

    /// Only `namespace`, no host path beyond the presets: what the controller
    /// allows when told nothing.
    #[must_use]
    pub fn only(namespace: &str) -> Self {
        Self {
            namespaces: BTreeSet::from([namespace.to_owned()]),
            host_paths: Vec::new(),
        }
    }

    /// The namespaces where EtcdBackups are honoured.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.iter().map(String::as_str)
    }

    /// The allowed host path prefixes, normalized.
    #[must_use]
    pub fn host_paths(&self) -> &[PathBuf] {
        &self.host_paths
    }

    /// Whether the controller may act for `backup` at all, and mount what its spec
    /// names: the namespace first (nothing else about a backup outside the allowed
    /// namespaces is looked at), then its host paths.
    ///
    /// # Errors
    /// A [`Problem`] for the status: [`NAMESPACE_NOT_ALLOWED`] or
    /// [`HOST_PATH_NOT_ALLOWED`].
    pub fn admit(&self, backup: &EtcdBackup) -> Result<(), Problem> {
        self.admit_namespace(&backup.namespace().unwrap_or_default())?;
        self.admit_host_paths(&backup.spec)
    }

    /// Whether EtcdBackups in `namespace` are honoured.
    ///
    /// # Errors
    /// A [`NAMESPACE_NOT_ALLOWED`] [`Problem`] naming the namespace and the chart value.
    pub fn admit_namespace(&self, namespace: &str) -> Result<(), Problem> {
        if self.namespaces.contains(namespace) {
            return Ok(());
        }
        // The allowed namespaces are not listed: they are an administrator's, and
        // the message is read by whoever could create an EtcdBackup here.
        Err(Problem {
            reason: NAMESPACE_NOT_ALLOWED,
            message: format!(
                "EtcdBackups are not honoured in namespace {namespace}: a backup runs as root on a control-plane node with etcd's certificates, so only the namespaces an administrator lists in the chart value {NAMESPACES_VALUE} may hold one. Create it in one of those, or have {namespace} added to {NAMESPACES_VALUE}"
            ),
        })
    }

    /// Whether every host path the spec would mount is the distribution's preset
    /// or under an allowed prefix.
    ///
    /// # Errors
    /// A [`HOST_PATH_NOT_ALLOWED`] [`Problem`] naming each offending field.
    pub fn admit_host_paths(&self, spec: &EtcdBackupSpec) -> Result<(), Problem> {
        let refused: Vec<String> = host_path_uses(spec)
            .iter()
            .filter_map(|used| self.refusal(used))
            .collect();
        if refused.is_empty() {
            return Ok(());
        }
        let allowed = if self.host_paths.is_empty() {
            "none".to_owned()
        } else {
            self.host_paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(Problem {
            reason: HOST_PATH_NOT_ALLOWED,
            message: format!(
                "{}. A run may mount only its distribution's own certificate files and database, and paths under the prefixes of the chart value {HOST_PATHS_VALUE} (now: {allowed}): use a path under one of those, or have an administrator add a prefix of it to {HOST_PATHS_VALUE}",
                refused.join("; ")
            ),
        })
    }

    /// Why `used` may not be mounted, or `None` when it may.
    fn refusal(&self, used: &HostPathUse) -> Option<String> {
        let HostPathUse {
            field,
            value,
            mounted,
            preset,
        } = used;
        let shown = if value == mounted {
            format!("{field} {value}")
        } else {
            format!("{field} {value} (its directory {mounted} is mounted)")
        };
        let (Ok(_), Ok(path)) = (normalize(value), normalize(mounted)) else {
            return Some(format!(
                "{shown} is not an absolute path without '..': write it out in full"
            ));
        };
        let is_preset = preset
            .as_deref()
            .and_then(|p| normalize(p).ok())
            .is_some_and(|p| p == path);
        // Path::starts_with compares whole components: /var/backups-old is not
        // under /var/backups.
        let under = self
            .host_paths
            .iter()
            .any(|prefix| path.starts_with(prefix));
        (!is_preset && !under).then(|| {
            format!("{shown} is neither the distribution's own path nor under an allowed prefix")
        })
    }
}

/// One host path a run would mount, and the field it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPathUse {
    /// The spec field, such as `spec.destination.hostPath.path`.
    pub field: &'static str,
    /// The path as written (or as the preset gives it).
    pub value: String,
    /// What is mounted: the value itself, or for SQLite its directory.
    pub mounted: String,
    /// What the distribution's preset mounts for this field, if it has one.
    pub preset: Option<String>,
}

/// Every host path the runner of `spec` would mount, as [`build::cronjob`] mounts
/// them.
#[must_use]
pub fn host_path_uses(spec: &EtcdBackupSpec) -> Vec<HostPathUse> {
    let mut uses = Vec::new();
    let preset_files = preset::host_certificates(spec.source.distribution);
    match spec.source.datastore {
        Datastore::Etcd => {
            const WRITTEN: [&str; 3] = [
                "spec.source.tls.hostPath.caFile",
                "spec.source.tls.hostPath.certFile",
                "spec.source.tls.hostPath.keyFile",
            ];
            let (files, fields) = match &spec.source.tls {
                Some(tls) => (tls.host_path.clone(), WRITTEN),
                // No tls at all: the preset's own files, allowed by definition.
                None => (preset_files.clone(), ["spec.source.distribution"; 3]),
            };
            if let Some(EtcdTlsFiles {
                ca_file,
                cert_file,
                key_file,
            }) = files
            {
                let presets = preset_files
                    .map(|p| [Some(p.ca_file), Some(p.cert_file), Some(p.key_file)])
                    .unwrap_or_default();
                for ((field, value), preset) in fields
                    .into_iter()
                    .zip([ca_file, cert_file, key_file])
                    .zip(presets)
                {
                    uses.push(HostPathUse {
                        field,
                        mounted: value.clone(),
                        value,
                        preset,
                    });
                }
            }
        }
        Datastore::Sqlite => {
            let db = spec
                .source
                .sqlite_path
                .clone()
                .unwrap_or_else(|| preset::K3S_SQLITE.to_owned());
            uses.push(HostPathUse {
                field: "spec.source.sqlitePath",
                mounted: build::sqlite_dir(&db).0.to_owned(),
                value: db,
                preset: Some(build::sqlite_dir(preset::K3S_SQLITE).0.to_owned()).filter(|_| {
                    spec.source.distribution == homelab_api::etcdbackup::Distribution::K3s
                }),
            });
        }
    }
    if let Some(host) = &spec.destination.host_path {
        uses.push(HostPathUse {
            field: "spec.destination.hostPath.path",
            value: host.path.clone(),
            mounted: host.path.clone(),
            preset: None,
        });
    }
    uses
}

/// Why a path cannot be compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadPath {
    /// It does not start with `/`.
    Relative,
    /// It contains `..`, which could climb out of any prefix.
    ParentDir,
}

/// `path` as its components (repeated `/` and `.` dropped), if it is absolute and
/// free of `..`.
///
/// # Errors
/// [`BadPath`].
pub fn normalize(path: &str) -> Result<PathBuf, BadPath> {
    let mut components = Path::new(path).components();
    if components.next() != Some(Component::RootDir) {
        return Err(BadPath::Relative);
    }
    let mut out = PathBuf::from("/");
    for c in components {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(BadPath::ParentDir),
            Component::RootDir | Component::Prefix(_) => return Err(BadPath::Relative),
        }
    }
    Ok(out)
}

/// A DNS-1123 label, as namespace names are.
fn is_namespace_name(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&s.len())
        && s.chars().all(|c| ok(c) || c == '-')
        && s.starts_with(ok)
        && s.ends_with(ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn backup(ns: &str, spec: serde_json::Value) -> EtcdBackup {
        let spec: EtcdBackupSpec = serde_json::from_value(spec).unwrap();
        let mut b = EtcdBackup::new("cluster", spec);
        b.metadata.namespace = Some(ns.into());
        b.metadata.uid = Some("0000".into());
        b
    }

    fn from(vars: &[(&str, &str)]) -> Result<Policy, homelab_kit::Error> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Policy::from_lookup(|k| map.get(k).cloned(), "from-kubeconfig")
    }

    fn kubeadm_to(path: &str) -> serde_json::Value {
        serde_json::json!({
            "schedule": "@hourly",
            "source": {"distribution": "Kubeadm"},
            "destination": {"hostPath": {"path": path}},
        })
    }

    #[test]
    fn unset_allows_only_the_controllers_own_namespace() {
        let p = from(&[("POD_NAMESPACE", "homelab")]).unwrap();
        assert_eq!(p.namespaces().collect::<Vec<_>>(), ["homelab"]);
        assert!(p.host_paths().is_empty());
        // Outside a pod: the client's namespace.
        let p = from(&[(NAMESPACES_ENV, " , ")]).unwrap();
        assert_eq!(p.namespaces().collect::<Vec<_>>(), ["from-kubeconfig"]);
    }

    #[test]
    fn the_list_replaces_the_own_namespace() {
        let p = from(&[
            ("POD_NAMESPACE", "homelab"),
            (NAMESPACES_ENV, "kube-system, etcd-backups,"),
            (HOST_PATHS_ENV, "/var/backups/etcd/, /srv//backups"),
        ])
        .unwrap();
        assert_eq!(
            p.namespaces().collect::<Vec<_>>(),
            ["etcd-backups", "kube-system"]
        );
        assert_eq!(
            p.host_paths(),
            [
                PathBuf::from("/var/backups/etcd"),
                PathBuf::from("/srv/backups")
            ]
        );
        assert!(p.admit_namespace("homelab").is_err());
        assert!(p.admit_namespace("kube-system").is_ok());
    }

    #[test]
    fn bad_settings_name_the_variable_and_the_value() {
        for (var, value) in [
            (HOST_PATHS_ENV, "var/backups"),
            (HOST_PATHS_ENV, "/var/backups/../../etc"),
            (NAMESPACES_ENV, "Kube_System"),
            (NAMESPACES_ENV, "*"),
        ] {
            let err = from(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var) && err.contains(value), "{err}");
        }
    }

    #[test]
    fn a_namespace_off_the_list_is_refused_by_name_and_chart_value() {
        let p = Policy::only("homelab");
        let problem = p
            .admit(&backup("team-a", kubeadm_to("/var/backups")))
            .unwrap_err();
        assert_eq!(problem.reason, NAMESPACE_NOT_ALLOWED);
        assert!(
            problem.message.contains("namespace team-a"),
            "{}",
            problem.message
        );
        assert!(
            problem.message.contains(NAMESPACES_VALUE),
            "{}",
            problem.message
        );
        assert!(!problem.message.contains("homelab"), "{}", problem.message);
    }

    #[test]
    fn presets_need_no_allow_list() {
        let p = Policy::only("homelab");
        // kubeadm's and k3s's certificates, implicit or written out; k3s's database.
        for spec in [
            serde_json::json!({"schedule": "@hourly", "source": {"distribution": "Kubeadm"},
                "destination": {"s3": {"bucket": "bkt",
                    "accessKeyIdSecretRef": {"name": "s", "key": "id"},
                    "secretAccessKeySecretRef": {"name": "s", "key": "k"}}}}),
            serde_json::json!({"schedule": "@hourly", "source": {"distribution": "K3s",
                "tls": {"hostPath": {"caFile": "/var/lib/rancher/k3s/server/tls/etcd/server-ca.crt",
                    "certFile": "/var/lib/rancher/k3s/server/tls/etcd//client.crt",
                    "keyFile": "/var/lib/rancher/k3s/server/tls/etcd/./client.key"}}},
                "destination": {"pvc": {"claimName": "backups"}}}),
            serde_json::json!({"schedule": "@hourly", "source": {"distribution": "K3s", "datastore": "SQLite",
                "sqlitePath": "/var/lib/rancher/k3s/server/db/state.db"},
                "destination": {"pvc": {"claimName": "backups"}}}),
            serde_json::json!({"schedule": "@hourly", "source": {"distribution": "Talos",
                "tls": {"secretName": "etcd-client"}},
                "destination": {"pvc": {"claimName": "backups"}}}),
        ] {
            assert_eq!(p.admit(&backup("homelab", spec.clone())), Ok(()), "{spec}");
        }
    }

    #[test]
    fn anything_else_must_be_under_an_allowed_prefix_by_whole_components() {
        let p = Policy::new(["homelab"], ["/var/backups/etcd"]).unwrap();
        let ok = |path: &str| p.admit_host_paths(&backup("homelab", kubeadm_to(path)).spec);
        assert_eq!(ok("/var/backups/etcd"), Ok(()));
        assert_eq!(ok("/var/backups/etcd/cluster-a"), Ok(()));
        assert_eq!(ok("/var/backups/etcd/"), Ok(()));
        for refused in [
            "/var/backups/etcd-old",
            "/var/backups",
            "/etc",
            "/var/backups/etcd/../../../etc",
            "/var/backups/etcd/..",
        ] {
            let problem = ok(refused).unwrap_err();
            assert_eq!(problem.reason, HOST_PATH_NOT_ALLOWED);
            assert!(
                problem.message.contains("spec.destination.hostPath.path")
                    && problem.message.contains(refused)
                    && problem.message.contains(HOST_PATHS_VALUE)
                    && problem.message.contains("/var/backups/etcd"),
                "{}",
                problem.message
            );
        }
        assert!(
            ok("/var/backups/etcd/../x")
                .unwrap_err()
                .message
                .contains("'..'")
        );
    }

    #[test]
    fn another_distributions_files_or_a_written_sqlite_path_need_the_list() {
        let p = Policy::only("homelab");
        // k3s's files under a Kubeadm distribution are not kubeadm's preset.
        let spec = serde_json::json!({"schedule": "@hourly", "source": {"distribution": "Kubeadm",
            "tls": {"hostPath": {"caFile": "/var/lib/rancher/k3s/server/tls/etcd/server-ca.crt",
                "certFile": "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
                "keyFile": "/etc/kubernetes/pki/etcd/healthcheck-client.key"}}},
            "destination": {"pvc": {"claimName": "backups"}}});
        let problem = p.admit(&backup("homelab", spec)).unwrap_err();
        assert!(
            problem.message.contains("spec.source.tls.hostPath.caFile"),
            "{}",
            problem.message
        );
        assert!(!problem.message.contains("certFile"), "{}", problem.message);

        // The SQLite file's directory is what is mounted (read-write), so that is
        // what is compared.
        let spec = serde_json::json!({"schedule": "@hourly", "source": {"distribution": "K3s",
            "datastore": "SQLite", "sqlitePath": "/etc/state.db"},
            "destination": {"pvc": {"claimName": "backups"}}});
        let problem = p.admit(&backup("homelab", spec.clone())).unwrap_err();
        assert!(
            problem.message.contains("its directory /etc is mounted"),
            "{}",
            problem.message
        );
        let p = Policy::new(["homelab"], ["/etc/state.db"]).unwrap();
        assert!(p.admit(&backup("homelab", spec.clone())).is_err());
        let p = Policy::new(["homelab"], ["/etc"]).unwrap();
        assert_eq!(p.admit(&backup("homelab", spec)), Ok(()));
    }

    #[test]
    fn every_host_path_volume_of_the_cronjob_is_checked() {
        let image = build::Image {
            name: "img".into(),
            pull_policy: "IfNotPresent".into(),
        };
        for spec in [
            kubeadm_to("/var/backups"),
            serde_json::json!({"schedule": "@hourly", "source": {"distribution": "K3s"},
                "destination": {"hostPath": {"path": "/srv/b"}}}),
            serde_json::json!({"schedule": "@hourly", "source": {"distribution": "Custom",
                "endpoints": ["https://10.0.0.1:2379"],
                "tls": {"hostPath": {"caFile": "/a/ca", "certFile": "/a/c", "keyFile": "/a/k"}}},
                "destination": {"pvc": {"claimName": "backups"}}}),
            serde_json::json!({"schedule": "@hourly", "source": {"distribution": "K3s", "datastore": "SQLite",
                "sqlitePath": "/data/k3s/state.db"},
                "destination": {"hostPath": {"path": "/srv/b"}}}),
        ] {
            let b = backup("homelab", spec);
            let checked: Vec<String> = host_path_uses(&b.spec)
                .into_iter()
                .map(|u| u.mounted)
                .collect();
            let cj = build::cronjob(&b, &image).unwrap();
            let volumes = cj
                .spec
                .job_template
                .spec
                .unwrap()
                .template
                .spec
                .unwrap()
                .volumes;
            for host in volumes
                .iter()
                .flatten()
                .filter_map(|v| v.host_path.as_ref())
            {
                assert!(
                    checked.contains(&host.path),
                    "{} is mounted unchecked",
                    host.path
                );
            }
        }
    }
}
