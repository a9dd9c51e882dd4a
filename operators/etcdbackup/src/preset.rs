//! Where each distribution keeps etcd and its client certificates, and how a person
//! restores a backup there.

use homelab_api::etcdbackup::{Datastore, Distribution, EtcdBackupSpec, EtcdTlsFiles};

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
/// this distribution, for `status.restoreCommand` and the README.
#[must_use]
pub fn restore_command(spec: &EtcdBackupSpec, location: &str) -> String {
    let compressed = location.ends_with(".zst");
    let fetch = if location.starts_with("s3://") {
        let endpoint = spec
            .destination
            .s3
            .as_ref()
            .and_then(|s| s.endpoint.as_deref())
            .map(|e| format!(" --endpoint-url {e}"))
            .unwrap_or_default();
        format!("aws{endpoint} s3 cp {location} ./backup && ")
    } else {
        format!("cp {location} ./backup && ")
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
                format!("zstd -d -f ./backup -o {db}")
            } else {
                format!("mv ./backup {db}")
            };
            format!(
                "systemctl stop k3s && {fetch}{unpacked} && rm -f {db}-wal {db}-shm && systemctl start k3s"
            )
        }
        (Distribution::K3s, Datastore::Etcd) => format!(
            "systemctl stop k3s && {fetch}{} && k3s server --cluster-reset --cluster-reset-restore-path=$PWD/etcd-snapshot.db",
            unpack("etcd-snapshot.db")
        ),
        (Distribution::Kubeadm, Datastore::Etcd) => format!(
            "{fetch}{} && etcdutl snapshot restore etcd-snapshot.db --data-dir /var/lib/etcd-restored --bump-revision 1000000000 --mark-compacted && then point the etcd-data hostPath in /etc/kubernetes/manifests/etcd.yaml at /var/lib/etcd-restored",
            unpack("etcd-snapshot.db")
        ),
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
