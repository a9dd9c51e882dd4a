//! Where each distribution keeps etcd and its client certificates, and how a person
//! restores a backup there.

use homelab_api::etcdbackup::{Datastore, Distribution, EtcdBackupSpec, EtcdTlsFiles};

use crate::shell::quote;

/// etcd on the control-plane node itself (the pod uses the host's network).
pub const LOCAL_ETCD: &str = "https://127.0.0.1:2379";
/// k3s's SQLite database.
pub const K3S_SQLITE: &str = "/var/lib/rancher/k3s/server/db/state.db";

/// The client certificate files of a distribution that keeps them on the host.
#[must_use]
pub fn host_certificates(distribution: Distribution) -> Option<EtcdTlsFiles> {
    let files = |dir: &str, ca: &str, cert: &str, key: &str| EtcdTlsFiles {
        ca_file: format!("{dir}/{ca}"),
        cert_file: format!("{dir}/{cert}"),
        key_file: format!("{dir}/{key}"),
    };
    match distribution {
        Distribution::K3s => Some(files(
            "/var/lib/rancher/k3s/server/tls/etcd",
            "server-ca.crt",
            "client.crt",
            "client.key",
        )),
        // The health-check client kubeadm issues for the etcd probe: a client cert
        // of etcd's own CA that exists on every control-plane node.
        Distribution::Kubeadm => Some(files(
            "/etc/kubernetes/pki/etcd",
            "ca.crt",
            "healthcheck-client.crt",
            "healthcheck-client.key",
        )),
        // Talos keeps them out of reach of pods; Custom says its own.
        Distribution::Talos | Distribution::Custom => None,
    }
}

/// The etcd endpoints: the spec's, else etcd on the node itself.
#[must_use]
pub fn endpoints(spec: &EtcdBackupSpec) -> Vec<String> {
    if spec.source.endpoints.is_empty() {
        vec![LOCAL_ETCD.to_owned()]
    } else {
        spec.source.endpoints.clone()
    }
}

/// The command that restores `location` (a path on the node or an s3:// URL) on
/// this distribution, for `status.restoreCommand` and the README. Every value in it
/// is quoted for a POSIX shell: the location comes from a run's report and the rest
/// from the spec, and a person pastes the command into a root shell.
#[must_use]
pub fn restore_command(spec: &EtcdBackupSpec, location: &str) -> String {
    let compressed = location.ends_with(".zst");
    let loc = quote(location);
    let fetch = if location.starts_with("s3://") {
        let endpoint = spec
            .destination
            .s3
            .as_ref()
            .and_then(|s| s.endpoint.as_deref())
            .map(|e| format!(" --endpoint-url {}", quote(e)))
            .unwrap_or_default();
        format!("aws{endpoint} s3 cp {loc} ./backup && ")
    } else {
        format!("cp {loc} ./backup && ")
    };
    let unpack = |out: &str| {
        if compressed {
            format!("zstd -d ./backup -o {out}")
        } else {
            format!("mv ./backup {out}")
        }
    };
    match (spec.source.distribution, spec.source.datastore) {
        (_, Datastore::Sqlite) => {
            let db = spec.source.sqlite_path.as_deref().unwrap_or(K3S_SQLITE);
            let unpacked = if compressed {
                format!("zstd -d -f ./backup -o {}", quote(db))
            } else {
                format!("mv ./backup {}", quote(db))
            };
            format!(
                "systemctl stop k3s && {fetch}{unpacked} && rm -f {} {} && systemctl start k3s",
                quote(&format!("{db}-wal")),
                quote(&format!("{db}-shm")),
            )
        }
        (Distribution::K3s, Datastore::Etcd) => format!(
            "systemctl stop k3s && {fetch}{} && k3s server --cluster-reset --cluster-reset-restore-path=\"$PWD/etcd-snapshot.db\"",
            unpack("etcd-snapshot.db")
        ),
        // The last step is for a person, so it follows as a comment: the command
        // stays one a shell runs without a syntax error.
        (Distribution::Kubeadm, Datastore::Etcd) => format!(
            "{fetch}{} && etcdutl snapshot restore etcd-snapshot.db --data-dir /var/lib/etcd-restored --bump-revision 1000000000 --mark-compacted  # then point the etcd-data hostPath in /etc/kubernetes/manifests/etcd.yaml at /var/lib/etcd-restored",
            unpack("etcd-snapshot.db")
        ),
        // <control-plane-node> and <new-data-dir> are for a person to fill in; left
        // as they are, the shell fails on the `<` redirection before running anything.
        (Distribution::Talos, Datastore::Etcd) => format!(
            "{fetch}{} && talosctl -n <control-plane-node> bootstrap --recover-from=./etcd-snapshot.db",
            unpack("etcd-snapshot.db")
        ),
        (Distribution::Custom, Datastore::Etcd) => format!(
            "{fetch}{} && etcdutl snapshot restore etcd-snapshot.db --data-dir <new-data-dir> --bump-revision 1000000000 --mark-compacted",
            unpack("etcd-snapshot.db")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> EtcdBackupSpec {
        serde_json::from_value(json).unwrap()
    }

    /// What `sh` runs for `command`, with every program in it replaced by a shell
    /// function that prints its name and then each argument on a line of its own:
    /// a value that broke out of its quotes would show as extra words, or as a
    /// command of its own.
    fn run(command: &str) -> Vec<String> {
        let stubs: String = [
            "systemctl",
            "cp",
            "mv",
            "aws",
            "zstd",
            "rm",
            "k3s",
            "etcdutl",
        ]
        .iter()
        .map(|p| format!("{p}() {{ printf '%s\\n' {p} \"$@\"; }}; "))
        .collect();
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{stubs}{command}"))
            // Nothing else is found: an injected program fails instead of running.
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        assert!(out.status.success(), "{command}: {out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    const HOSTILE: &str = "/var/backups/it's a $(touch pwned) `id`; rm -rf / && \"x\".db.zst";

    #[test]
    fn a_hostile_location_stays_one_word() {
        let s = spec(serde_json::json!({
            "schedule": "@hourly",
            "source": {"distribution": "Kubeadm"},
            "destination": {"hostPath": {"path": "/var/backups"}},
        }));
        let command = restore_command(&s, HOSTILE);
        assert!(
            command.starts_with(&format!("cp {} ./backup && ", quote(HOSTILE))),
            "{command}"
        );
        assert_eq!(
            run(&command),
            [
                "cp",
                HOSTILE,
                "./backup",
                "zstd",
                "-d",
                "./backup",
                "-o",
                "etcd-snapshot.db",
                "etcdutl",
                "snapshot",
                "restore",
                "etcd-snapshot.db",
                "--data-dir",
                "/var/lib/etcd-restored",
                "--bump-revision",
                "1000000000",
                "--mark-compacted",
            ]
        );
    }

    #[test]
    fn s3_endpoint_and_key_and_a_sqlite_path_are_quoted() {
        let s = spec(serde_json::json!({
            "schedule": "@hourly",
            "source": {"distribution": "K3s", "datastore": "SQLite",
                       "sqlitePath": "/var/lib/my k3s/state;.db"},
            "destination": {"s3": {
                "bucket": "b", "endpoint": "https://s3.example:9000/$(id)",
                "accessKeyIdSecretRef": {"name": "s", "key": "id"},
                "secretAccessKeySecretRef": {"name": "s", "key": "secret"},
            }},
        }));
        let location = "s3://b/etcd/it's;now.db.zst";
        let command = restore_command(&s, location);
        assert!(command.contains("--endpoint-url 'https://s3.example:9000/$(id)'"));
        assert!(command.contains("s3 cp 's3://b/etcd/it'\\''s;now.db.zst' ./backup"));
        let db = "/var/lib/my k3s/state;.db";
        assert_eq!(
            run(&command),
            [
                "systemctl",
                "stop",
                "k3s",
                "aws",
                "--endpoint-url",
                "https://s3.example:9000/$(id)",
                "s3",
                "cp",
                location,
                "./backup",
                "zstd",
                "-d",
                "-f",
                "./backup",
                "-o",
                db,
                "rm",
                "-f",
                &format!("{db}-wal"),
                &format!("{db}-shm"),
                "systemctl",
                "start",
                "k3s",
            ]
        );
    }

    #[test]
    fn ordinary_values_read_as_before() {
        let s = spec(serde_json::json!({
            "schedule": "@hourly",
            "source": {"distribution": "K3s"},
            "destination": {"hostPath": {"path": "/var/backups/etcd"}},
        }));
        assert_eq!(
            restore_command(&s, "/var/backups/etcd/c-1.db.zst"),
            "systemctl stop k3s && cp /var/backups/etcd/c-1.db.zst ./backup && zstd -d ./backup -o etcd-snapshot.db && k3s server --cluster-reset --cluster-reset-restore-path=\"$PWD/etcd-snapshot.db\""
        );
    }
}
