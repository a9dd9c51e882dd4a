# Real nodes beside the kwok ones: a kubelet, containerd, runc and kube-proxy per
# node, each node in a network namespace of its own (its own address, its own
# iptables, pods on its own CNI bridge) and a mount namespace of its own (its own
# /dev, /run, /var/lib/kubelet, so two kubelets on one host never share a
# device-plugin directory or a device node).
# Sourced by e2e/cluster; expects STATE, PKI, the *_BIN dirs and the port variables.
#
# The control-plane node (cp-1) is the host itself, as on a kubeadm or k3s server:
# it shares the network namespace where etcd and the API server listen, so a
# host-network pod there (the EtcdBackup runner) reaches etcd on 127.0.0.1, and its
# mount namespace holds etcd's client certificates where kubeadm puts them.
#
# Addresses stay on this machine: a bridge in the host's namespace (the control
# plane's address), one veth per node, no default route anywhere, no masquerading
# towards anything but the bridge.

CONTROL_PLANE_NODE=cp-1
REAL_NODES=(${HOMELAB_REAL_NODES-$CONTROL_PLANE_NODE real-1 real-2})
BRIDGE=hl0
BRIDGE_CIDR=10.200.0.1/24
CONTROL_PLANE_IP=10.200.0.1
SERVICE_CIDR=10.96.0.0/16
POD_CIDR=10.201.0.0/16
# Real nodes run what the tests put there, and nothing else: the kwok home's
# workloads (images nobody can pull here) must not land on them.
REAL_NODE_TAINT=e2e.homelab.home.arpa/real-node
PAUSE_IMAGE=localhost/pause:homelab
BUSYBOX_IMAGE=localhost/e2e-busybox:1
NODE_COMPONENTS=(containerd kubelet kube-proxy)

node_index() { # name → 1-based position in REAL_NODES
  local i
  for i in "${!REAL_NODES[@]}"; do
    [ "${REAL_NODES[$i]}" = "$1" ] && { echo $((i + 1)); return 0; }
  done
  echo "not a real node: $1 (real nodes: ${REAL_NODES[*]})" >&2
  return 1
}
node_dir() { echo "$STATE/nodes/$1"; }
is_control_plane() { [ "$1" = "$CONTROL_PLANE_NODE" ]; }
node_ip() {
  if is_control_plane "$1"; then echo "$CONTROL_PLANE_IP"; else echo "10.200.0.$((10 + $(node_index "$1")))"; fi
}
node_pod_cidr() {
  if is_control_plane "$1"; then echo "10.201.0.0/24"; else echo "10.201.$(node_index "$1").0/24"; fi
}
node_cgroup() { echo "homelab-$1"; }
node_socket() { echo "$(node_dir "$1")/containerd/containerd.sock"; }
is_real_node() { node_index "$1" >/dev/null 2>&1; }

# The bridge the nodes' veths plug into; its address is where they find the API
# server and etcd.
ensure_bridge() {
  ip link show "$BRIDGE" >/dev/null 2>&1 || {
    ip link add "$BRIDGE" type bridge
    ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
  }
  ip link set "$BRIDGE" up
  # Pod traffic between nodes and from pods to the API server is routed here.
  sysctl -qw net.ipv4.ip_forward=1
}

ensure_netns() { # node
  is_control_plane "$1" && return 0
  local node=$1 ns=$1 ip host_if
  ip=$(node_ip "$node")
  host_if="hlv-$(node_index "$node")"
  ip netns list | grep -qw "^$ns" || ip netns add "$ns"
  if ! ip link show "$host_if" >/dev/null 2>&1; then
    ip link add "$host_if" type veth peer name eth0 netns "$ns"
    ip link set "$host_if" master "$BRIDGE"
  fi
  ip link set "$host_if" up
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
  ip -n "$ns" addr replace "$ip/24" dev eth0
  # Services and other nodes' pods: through the control plane's address, which
  # routes each pod range to its node. No default route.
  ip -n "$ns" route replace "$SERVICE_CIDR" via "$CONTROL_PLANE_IP"
  ip -n "$ns" route replace "$POD_CIDR" via "$CONTROL_PLANE_IP"
  ip route replace "$(node_pod_cidr "$node")" via "$ip"
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
}

# A cgroup per node in every v1 hierarchy: the kubelet's cgroupRoot, and the
# daemons' own, so that "power off" can find every process of the node.
ensure_cgroups() { # node
  local cg hier
  cg=$(node_cgroup "$1")
  for hier in /sys/fs/cgroup/*/; do
    [ -d "$hier" ] || continue
    case $hier in */unified/) continue ;; esac
    mkdir -p "$hier$cg/daemons"
    if [ -f "$hier/cpuset.cpus" ]; then
      cat "$hier/cpuset.cpus" >"$hier$cg/cpuset.cpus"
      cat "$hier/cpuset.mems" >"$hier$cg/cpuset.mems"
      cat "$hier/cpuset.cpus" >"$hier$cg/daemons/cpuset.cpus"
      cat "$hier/cpuset.mems" >"$hier$cg/daemons/cpuset.mems"
    fi
  done
}

# The node's /dev: what a runtime needs (null, zero, random...) and whatever a
# test plugs in later (mknod of a USB serial device, /dev/serial/by-id links).
prepare_node_dev() { # dir
  local d=$1
  mkdir -p "$d/pts" "$d/shm"
  [ -e "$d/null" ] || mknod -m 666 "$d/null" c 1 3
  [ -e "$d/zero" ] || mknod -m 666 "$d/zero" c 1 5
  [ -e "$d/full" ] || mknod -m 666 "$d/full" c 1 7
  [ -e "$d/random" ] || mknod -m 666 "$d/random" c 1 8
  [ -e "$d/urandom" ] || mknod -m 666 "$d/urandom" c 1 9
  [ -e "$d/tty" ] || mknod -m 666 "$d/tty" c 5 0
  [ -e "$d/kmsg" ] || mknod -m 644 "$d/kmsg" c 1 11
  [ -e "$d/ptmx" ] || ln -s pts/ptmx "$d/ptmx"
}

# The node's mount namespace, kept alive by a bind mount of its handle (on a
# private mount, as the kernel requires), so every daemon of the node enters the
# same one.
ensure_mountns() { # node
  local node=$1 dir handle
  dir=$(node_dir "$node")
  handle=$STATE/ns/$node.mnt
  mkdir -p "$STATE/ns"
  if ! mountpoint -q "$STATE/ns"; then
    mount --bind "$STATE/ns" "$STATE/ns"
    mount --make-private "$STATE/ns"
  fi
  if [ -f "$handle" ] && nsenter --mount="$handle" true 2>/dev/null; then return 0; fi
  mkdir -p "$dir"/{dev,run,kubelet,cni-state,log,e2e/sys,etc-kubernetes/pki/etcd}
  prepare_node_dev "$dir/dev"
  mkdir -p /var/lib/kubelet /var/lib/cni /var/log/pods /var/lib/homelab-e2e /etc/kubernetes
  touch "$handle"
  unshare --mount="$handle" --propagation private bash -euc '
    dir=$1
    mount --bind "$dir/etc-kubernetes" /etc/kubernetes
    mount --bind "$dir/dev" /dev
    mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
    mount -t tmpfs -o mode=1777 shm /dev/shm
    mount --bind "$dir/run" /run
    mount --bind "$dir/kubelet" /var/lib/kubelet
    mount --bind "$dir/cni-state" /var/lib/cni
    mount --bind "$dir/log" /var/log/pods
    # What tests lay down for the node, such as a USB sysfs tree (this machine
    # has no USB bus to show): the node agent reads it there.
    mount --bind "$dir/e2e" /var/lib/homelab-e2e
  ' _ "$dir"
}

# Runs a command inside the node: its network and mount namespaces, its cgroup.
in_node() { "$E2E_DIR/lib/in-node" "$STATE" "$@"; } # node, command...

# kube-proxy exits when its configuration file changes: rewrite only what differs.
write_if_changed() { # file (content on stdin)
  local new
  new=$(cat)
  [ -f "$1" ] && [ "$(cat "$1")" = "$new" ] && return 0
  printf '%s\n' "$new" >"$1"
}

write_node_configs() { # node
  local node=$1 dir ip cidr
  dir=$(node_dir "$node")
  ip=$(node_ip "$node")
  cidr=$(node_pod_cidr "$node")
  mkdir -p "$dir/containerd" "$dir/cni/net.d"
  pki_cert ca "node-$node" "/O=system:nodes/CN=system:node:$node" clientAuth
  kubeconfig_for "node-$node" "$dir/kubelet.kubeconfig" "https://$CONTROL_PLANE_IP:$APISERVER_PORT"
  kubeconfig_for kube-proxy "$dir/kube-proxy.kubeconfig" "https://$CONTROL_PLANE_IP:$APISERVER_PORT"

  write_if_changed "$dir/cni/net.d/10-homelab.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "homelab-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$cidr" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF

  write_if_changed "$dir/containerd/config.toml" <<EOF
version = 3
root = "$dir/containerd/root"
state = "$dir/containerd/state"
# NRI's socket has a fixed path; nothing here uses it.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = "$dir/containerd/containerd.sock"

[ttrpc]
  address = "$dir/containerd/containerd.sock.ttrpc"

[plugins.'io.containerd.cri.v1.runtime']
  # This sandbox lacks CAP_SYS_RESOURCE: runc may not lower oom_score_adj.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$RUNC_BIN/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$dir/cni/net.d"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"
EOF

  write_if_changed "$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine mounts cgroup v1 (hybrid), which kubelet 1.35+ refuses by default.
failCgroupV1: false
cgroupDriver: cgroupfs
# Each node's pods under a cgroup of their own: two kubelets on one host.
cgroupRoot: /$(node_cgroup "$node")
failSwapOn: false
enforceNodeAllocatable: []
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
address: $ip
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: AlwaysAllow
# The cluster's DNS (e2e/lib/dns.sh) and nothing else: no host nameserver, so
# nothing a pod resolves leaves this machine.
resolvConf: ""
clusterDNS: [$DNS_SERVICE_IP]
clusterDomain: cluster.local
serializeImagePulls: false
maxPods: 50
EOF

  write_if_changed "$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $dir/kube-proxy.kubeconfig
hostnameOverride: $node
mode: iptables
clusterCIDR: $POD_CIDR
# Service traffic is masqueraded to the node's bridge address, so replies find
# their way without br_netfilter (which this kernel may not have).
iptables:
  masqueradeAll: true
# Conntrack sizes are host-wide sysctls: leave them alone.
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
EOF
}

node_component() { echo "$1-$2"; } # node, daemon → component name for pid files and logs

containerd_ready() { # node
  "$CONTAINERD_BIN/ctr" --address "$(node_socket "$1")" version
}

start_node() { # node
  local node=$1 dir
  dir=$(node_dir "$node")
  ensure_netns "$node"
  ensure_cgroups "$node"
  ensure_mountns "$node"
  write_node_configs "$node"
  start_process "$(node_component "$node" containerd)" env PATH="$CONTAINERD_BIN:$RUNC_BIN:$PATH" \
    "$E2E_DIR/lib/in-node" "$STATE" "$node" \
    "$CONTAINERD_BIN/containerd" --config "$dir/containerd/config.toml"
  wait_until "containerd on $node" 30 "$(node_component "$node" containerd)" containerd_ready "$node"
  import_image "$node" "$PAUSE_ARCHIVE"
  import_image "$node" "$BUSYBOX_ARCHIVE"
  # Workers carry a taint of their own; the control-plane node the one kubeadm
  # and k3s servers carry.
  local taint="$REAL_NODE_TAINT=true:NoSchedule"
  is_control_plane "$node" && taint="node-role.kubernetes.io/control-plane=:NoSchedule"
  start_process "$(node_component "$node" kubelet)" \
    "$E2E_DIR/lib/in-node" "$STATE" "$node" \
    "$KUBE_BIN/kubelet" --config="$dir/kubelet.yaml" --kubeconfig="$dir/kubelet.kubeconfig" \
    --hostname-override="$node" --node-ip="$(node_ip "$node")" \
    --node-labels="e2e.homelab.home.arpa/real=true" \
    --register-with-taints="$taint" --v="$LOG_LEVEL"
  start_process "$(node_component "$node" kube-proxy)" \
    "$E2E_DIR/lib/in-node" "$STATE" "$node" \
    "$KUBE_BIN/kube-proxy" --config="$dir/kube-proxy.yaml" --v="$LOG_LEVEL"
}

# Every process of the node at once, pods included, as when its power goes: the
# node's daemons and containers all live in its cgroup.
power_off_node() { # node
  local cg pids daemon
  cg=/sys/fs/cgroup/pids/$(node_cgroup "$1")
  pids=$(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
  [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  for daemon in "${NODE_COMPONENTS[@]}"; do rm -f "$STATE/run/$(node_component "$1" "$daemon").pid"; done
}

import_image() { # node, OCI archive
  local out
  out=$("$CONTAINERD_BIN/ctr" --address "$(node_socket "$1")" -n k8s.io images import --local "$2" 2>&1) ||
    { echo "$out" >&2; return 1; }
}

start_real_nodes() {
  [ ${#REAL_NODES[@]} -gt 0 ] || return 0
  local node
  node_images
  for node in "${REAL_NODES[@]}"; do start_node "$node"; done
}

# What a kubelet may not say about itself (NodeRestriction): the role label, set
# by the administrator as kubeadm does, with kubeadm's etcd client files.
label_control_plane() {
  is_real_node "$CONTROL_PLANE_NODE" || return 0
  wait_until "node $CONTROL_PLANE_NODE registered" 60 "$(node_component "$CONTROL_PLANE_NODE" kubelet)" \
    kubectl_e2e get node "$CONTROL_PLANE_NODE"
  # A kubeadm server unless a scenario dresses it otherwise (e2e/lib/distributions.sh).
  cmd_distribution kubeadm >/dev/null
  kubectl_e2e annotate --overwrite node "$CONTROL_PLANE_NODE" \
    "homelab.home.arpa/hardware=Intel N100 mini PC, control plane (a real kubelet: this machine)" >/dev/null
}

stop_real_nodes() {
  local node
  for node in "${REAL_NODES[@]}"; do power_off_node "$node"; done
}

# The images every real node has before anything runs: the sandbox image
# (Kubernetes' own pause, built from the pinned module's source) and a busybox for
# the tests' own pods (Debian's busybox-static), both made here, neither pulled.
node_images() {
  PAUSE_ARCHIVE=$STATE/images/pause.oci.tar
  BUSYBOX_ARCHIVE=$STATE/images/e2e-busybox.oci.tar
  mkdir -p "$STATE/images"
  [ -f "$PAUSE_ARCHIVE" ] && [ "$PAUSE_ARCHIVE" -nt "$PAUSE_BIN/pause" ] ||
    python3 "$E2E_DIR/lib/oci_image.py" --name "$PAUSE_IMAGE" --out "$PAUSE_ARCHIVE" \
      --user 65535:65535 --entrypoint /pause --file "$PAUSE_BIN/pause:/pause:0555" >/dev/null
  [ -f "$BUSYBOX_ARCHIVE" ] && [ "$BUSYBOX_ARCHIVE" -nt /bin/busybox ] ||
    python3 "$E2E_DIR/lib/oci_image.py" --name "$BUSYBOX_IMAGE" --out "$BUSYBOX_ARCHIVE" \
      --user 65534:65534 --entrypoint /bin/busybox --file /bin/busybox:/bin/busybox:0555 >/dev/null
}
