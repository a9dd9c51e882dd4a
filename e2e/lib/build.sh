# Builds the pinned Go tools into a content-addressed cache outside the work tree.
# Sourced by e2e/cluster; expects E2E_DIR and CACHE_DIR.

# shellcheck source=../versions.env
source "$E2E_DIR/versions.env"

go_env() {
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
}

# A directory whose name is a hash of everything that decides what gets built: the
# pin files and the shell functions that build it (not the whole of this file, so
# adding a tool rebuilds no other). A pin change lands in a new directory and an
# unchanged pin is never rebuilt.
tool_dir() { # name, build function, files that pin it...
  local name=$1 fn=$2; shift 2
  local key
  key=$({ cat "$@"; declare -f go_env "$fn"; [ "$fn" != build_kubernetes ] || declare -f kubernetes_ldflags; } | sha256sum | cut -c1-16)
  echo "$CACHE_DIR/$name-$key"
}

kubernetes_ldflags() {
  local v=$KUBERNETES_VERSION minor
  minor=$(echo "$v" | cut -d. -f2)
  local flags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit=published-go-module"
    flags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

build_into() { # dir, label, command...
  local dir=$1 label=$2; shift 2
  [ -f "$dir/.complete" ] && return 0
  # Two e2e/cluster commands at once (`up` beside a test's `kubectl`) would
  # build into the same .partial directory: the second waits for the first.
  local lock
  mkdir -p "$(dirname "$dir")"
  exec {lock}>"$dir.lock"
  flock "$lock"
  if [ -f "$dir/.complete" ]; then
    exec {lock}>&-
    return 0
  fi
  local started=$SECONDS
  echo "building $label into $dir (once per pin; a cold build takes a while on 2 cores)" >&2
  rm -rf "$dir.partial" && mkdir -p "$dir.partial"
  if ! ( "$@" "$dir.partial" ) >"$dir.partial.log" 2>&1; then
    tail -n 30 "$dir.partial.log" >&2
    echo "build of $label failed; full log: $dir.partial.log" >&2
    exec {lock}>&-
    return 1
  fi
  rm -rf "$dir" && mv "$dir.partial" "$dir" && touch "$dir/.complete"
  exec {lock}>&-
  echo "built $label in $((SECONDS - started))s" >&2
}

build_kubernetes() { # out
  go_env
  (cd "$E2E_DIR/tools/kubernetes" &&
    go build -trimpath -ldflags "$(kubernetes_ldflags)" -o "$1/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler \
      k8s.io/kubernetes/cmd/kubectl \
      k8s.io/kubernetes/cmd/kubelet \
      k8s.io/kubernetes/cmd/kube-proxy)
}

build_etcd() { # out
  go_env
  (cd "$E2E_DIR/tools/etcd" &&
    go build -trimpath -ldflags "-s -w" -o "$1/etcd" go.etcd.io/etcd/server/v3 &&
    go build -trimpath -ldflags "-s -w" -o "$1/etcdctl" go.etcd.io/etcd/etcdctl/v3 &&
    go build -trimpath -ldflags "-s -w" -o "$1/etcdutl" go.etcd.io/etcd/etcdutl/v3)
}

build_go_install() { # module/cmd@version, out
  go_env
  GOBIN=$2 go install -trimpath -ldflags "-s -w" "$1"
}

build_kwok() { build_go_install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "$1"; }
build_helm() { build_go_install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "$1"; }
build_versitygw() { build_go_install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" "$1"; }

# promtool alone (not the server), without the service-discovery plugins it never
# uses to check and test rule files: the chart's alerts are tested with it.
build_promtool() { # out
  go_env
  GOBIN=$1 go install -trimpath -tags remove_all_sd -ldflags "-s -w" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION"
}

# The cluster DNS: a CoreDNS with the plugins tools/coredns/main.go names.
build_coredns() { # out
  go_env
  (cd "$E2E_DIR/tools/coredns" && go build -trimpath -ldflags "-s -w" -o "$1/coredns" .)
}

# The real nodes' runtime: containerd 2 (Debian's 1.6 is too old for kubelet 1.36),
# without the snapshotters that need kernel modules or cgo.
build_containerd() { # out
  go_env
  local cmd
  for cmd in containerd ctr containerd-shim-runc-v2; do
    GOBIN=$1 go install -trimpath -tags "no_btrfs no_devmapper no_zfs" -ldflags "-s -w" \
      "github.com/containerd/containerd/v2/cmd/$cmd@$CONTAINERD_VERSION"
  done
}

# runc needs cgo for seccomp (Debian's libseccomp-dev); Debian's runc 1.1 cannot
# start sandboxes on this kernel's hybrid cgroups.
build_runc() { # out
  go_env
  CGO_ENABLED=1 GOBIN=$1 go install -trimpath -tags seccomp -ldflags "-s -w" \
    "github.com/opencontainers/runc@$RUNC_VERSION"
}

# The sandbox ("pause") image's binary, from the source the pinned Kubernetes
# module ships, so no image is pulled.
build_pause() { # out
  go_env
  local dir
  dir=$(cd "$E2E_DIR/tools/kubernetes" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  gcc -Os -static -DVERSION="$KUBERNETES_VERSION" -o "$1/pause" "$dir/build/pause/linux/pause.c"
  strip "$1/pause"
}

# Sets KUBE_BIN, ETCD_BIN, KWOK_BIN, HELM_BIN, VERSITYGW_BIN, CONTAINERD_BIN,
# RUNC_BIN, PAUSE_BIN, COREDNS_BIN and PROMTOOL_BIN without building anything.
tool_paths() {
  local k8s_pin=("$E2E_DIR/tools/kubernetes/go.mod" "$E2E_DIR/tools/kubernetes/go.sum")
  KUBE_BIN=$(tool_dir kubernetes build_kubernetes "${k8s_pin[@]}")
  ETCD_BIN=$(tool_dir etcd build_etcd "$E2E_DIR/tools/etcd/go.mod" "$E2E_DIR/tools/etcd/go.sum")
  KWOK_BIN=$(tool_dir kwok build_kwok <(echo "$KWOK_VERSION"))
  HELM_BIN=$(tool_dir helm build_helm <(echo "$HELM_VERSION"))
  VERSITYGW_BIN=$(tool_dir versitygw build_versitygw <(echo "$VERSITYGW_VERSION"))
  CONTAINERD_BIN=$(tool_dir containerd build_containerd <(echo "$CONTAINERD_VERSION"))
  RUNC_BIN=$(tool_dir runc build_runc <(echo "$RUNC_VERSION"))
  PAUSE_BIN=$(tool_dir pause build_pause <(echo "$KUBERNETES_VERSION") "${k8s_pin[0]}")
  COREDNS_BIN=$(tool_dir coredns build_coredns "$E2E_DIR/tools/coredns/go.mod" "$E2E_DIR/tools/coredns/go.sum" \
    "$E2E_DIR/tools/coredns/main.go")
  PROMTOOL_BIN=$(tool_dir promtool build_promtool <(echo "$PROMTOOL_VERSION"))
  grep -q "k8s.io/kubernetes $KUBERNETES_VERSION" "$E2E_DIR/tools/kubernetes/go.mod" || {
    echo "tools/kubernetes/go.mod does not pin $KUBERNETES_VERSION: run e2e/tools/pin-kubernetes $KUBERNETES_VERSION" >&2
    return 1
  }
}

# tool_paths, then builds whatever is missing.
ensure_tools() {
  tool_paths
  build_into "$ETCD_BIN" "etcd $ETCD_VERSION" build_etcd
  build_into "$KWOK_BIN" "kwok $KWOK_VERSION" build_kwok
  build_into "$KUBE_BIN" "kubernetes $KUBERNETES_VERSION" build_kubernetes
  build_into "$HELM_BIN" "helm $HELM_VERSION" build_helm
  build_into "$VERSITYGW_BIN" "versitygw $VERSITYGW_VERSION" build_versitygw
  build_into "$CONTAINERD_BIN" "containerd $CONTAINERD_VERSION" build_containerd
  build_into "$RUNC_BIN" "runc $RUNC_VERSION" build_runc
  build_into "$PAUSE_BIN" "pause (Kubernetes $KUBERNETES_VERSION)" build_pause
  build_into "$COREDNS_BIN" "coredns (tools/coredns)" build_coredns
  build_into "$PROMTOOL_BIN" "promtool $PROMTOOL_VERSION" build_promtool
}

# The kwok module ships its default stages (node initialize, heartbeat with lease,
# pod ready/complete/delete) as YAML; use the pinned release's own files.
kwok_stages() { # out file
  go_env
  local dir
  dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  local stage_dir=$dir/kustomize/stage
  local f first=1
  : >"$1"
  for f in "$stage_dir"/node/fast/node-initialize.yaml \
    "$stage_dir"/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    "$stage_dir"/pod/fast/pod-ready.yaml \
    "$stage_dir"/pod/fast/pod-complete.yaml \
    "$stage_dir"/pod/fast/pod-delete.yaml; do
    [ -f "$f" ] || { echo "kwok stage file missing: $f" >&2; return 1; }
    [ $first = 1 ] || echo "---" >>"$1"
    first=0
    cat "$f" >>"$1"
  done
}
