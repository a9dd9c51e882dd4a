# Sourced by e2e/cluster; expects STATE, PKI, CONTROL_PLANE_NODE and kubectl_e2e.
#
# The real control-plane node (cp-1) dressed as the server of each distribution the
# EtcdBackup API names, so the scenarios that depend on a distribution run against
# each: its role labels and taints as that distribution sets them, and its etcd
# client certificates (or k3s's SQLite database) at that distribution's own paths.
# The other distributions' files are removed, so nothing passes by finding a file
# where this distribution keeps none.
#
#   kubeadm     control-plane="" + NoSchedule taint; /etc/kubernetes/pki/etcd
#   k3s         control-plane=true, master=true, etcd=true, no taint (k3s servers
#               run workloads); /var/lib/rancher/k3s/server/tls/etcd
#   k3s-sqlite  as k3s without the etcd role; the kine database
#               /var/lib/rancher/k3s/server/db/state.db, and no etcd certificates
#   talos       control-plane="" + NoSchedule taint; no etcd file reachable from a
#               pod (Talos keeps them to itself: an EtcdBackup brings a Secret)

DISTRIBUTIONS=(kubeadm k3s k3s-sqlite talos)

# Every label and taint one of them sets and another does not.
ROLE_LABELS=(node-role.kubernetes.io/control-plane node-role.kubernetes.io/master
  node-role.kubernetes.io/etcd node.kubernetes.io/instance-type beta.kubernetes.io/instance-type)
CONTROL_PLANE_TAINT=node-role.kubernetes.io/control-plane

cmd_distribution() { # name
  local name=$1 dir
  case " ${DISTRIBUTIONS[*]} " in
  *" $name "*) ;;
  *) echo "unknown distribution $name: one of ${DISTRIBUTIONS[*]}" >&2; return 2 ;;
  esac
  is_real_node "$CONTROL_PLANE_NODE" || { echo "$CONTROL_PLANE_NODE is not a real node" >&2; return 1; }
  dir=$(node_dir "$CONTROL_PLANE_NODE")
  rancher_mount "$dir"
  rm -rf "$dir/etc-kubernetes/pki/etcd" "$dir/rancher/k3s"
  local labels=() taint=false
  case $name in
  kubeadm)
    etcd_client_files "$dir/etc-kubernetes/pki/etcd" ca.crt healthcheck-client
    labels=(node-role.kubernetes.io/control-plane=) taint=true ;;
  k3s)
    etcd_client_files "$dir/rancher/k3s/server/tls/etcd" server-ca.crt client
    mkdir -p "$dir/rancher/k3s/server/db/etcd"
    labels=(node-role.kubernetes.io/control-plane=true node-role.kubernetes.io/master=true
      node-role.kubernetes.io/etcd=true node.kubernetes.io/instance-type=k3s
      beta.kubernetes.io/instance-type=k3s) ;;
  k3s-sqlite)
    kine_database "$dir/rancher/k3s/server/db/state.db"
    labels=(node-role.kubernetes.io/control-plane=true node-role.kubernetes.io/master=true
      node.kubernetes.io/instance-type=k3s beta.kubernetes.io/instance-type=k3s) ;;
  talos)
    labels=(node-role.kubernetes.io/control-plane=) taint=true ;;
  esac
  kubectl_e2e label node "$CONTROL_PLANE_NODE" "${ROLE_LABELS[@]/%/-}" >/dev/null 2>&1 || true
  kubectl_e2e label --overwrite node "$CONTROL_PLANE_NODE" "${labels[@]}" >/dev/null
  if $taint; then
    kubectl_e2e taint --overwrite node "$CONTROL_PLANE_NODE" "$CONTROL_PLANE_TAINT=:NoSchedule" >/dev/null
  else
    kubectl_e2e taint node "$CONTROL_PLANE_NODE" "$CONTROL_PLANE_TAINT-" >/dev/null 2>&1 || true
  fi
  kubectl_e2e annotate --overwrite node "$CONTROL_PLANE_NODE" "e2e.homelab.home.arpa/distribution=$name" >/dev/null
  echo "$CONTROL_PLANE_NODE is dressed as a $name server"
}

# /var/lib/rancher of the node's own mount namespace, bound to its directory. A
# namespace made before this existed gets the bind now, inside it.
rancher_mount() { # node dir
  mkdir -p "$1/rancher" /var/lib/rancher
  nsenter --mount="$STATE/ns/$CONTROL_PLANE_NODE.mnt" sh -c \
    'mountpoint -q /var/lib/rancher || mount --bind "$1" /var/lib/rancher' _ "$1/rancher"
}

# The CA of the cluster's etcd and a client certificate it signed, under the names
# a distribution gives them, readable by root only, as on a real server.
etcd_client_files() { # dir, CA file name, client base name
  mkdir -p "$1"
  cp "$PKI/etcd-ca.crt" "$1/$2"
  cp "$PKI/etcd-healthcheck-client.crt" "$1/$3.crt"
  cp "$PKI/etcd-healthcheck-client.key" "$1/$3.key"
  chmod 600 "$1/$3.key"
}

# A k3s datastore as kine lays it out in SQLite (its `kine` table: one row per key
# revision), with a few of the rows a fresh server writes.
kine_database() { # path
  mkdir -p "$(dirname "$1")"
  python3 - "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA journal_mode=WAL")  # as k3s opens it
db.executescript("""
CREATE TABLE IF NOT EXISTS kine (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name INTEGER, created INTEGER, deleted INTEGER,
  create_revision INTEGER, prev_revision INTEGER, lease INTEGER, value BLOB, old_value BLOB);
CREATE INDEX IF NOT EXISTS kine_name_index ON kine (name);
CREATE UNIQUE INDEX IF NOT EXISTS kine_name_prev_revision_uindex ON kine (name, prev_revision);
""")
rows = [("/registry/namespaces/default", b'{"kind":"Namespace"}'),
        ("/registry/namespaces/kube-system", b'{"kind":"Namespace"}'),
        ("/registry/health", b'{"health":"true"}')]
for name, value in rows:
    db.execute("INSERT OR IGNORE INTO kine (name, created, deleted, create_revision, prev_revision, lease, value, old_value) VALUES (?, 1, 0, 0, 0, 0, ?, NULL)", (name, value))
db.commit()
PY
  chmod 600 "$1"
}
