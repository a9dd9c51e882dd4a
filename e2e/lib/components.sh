# Starting, stopping and probing the control-plane processes.
# Sourced by e2e/cluster; expects STATE, PKI, the *_BIN dirs and the port variables.

COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok coredns)

pid_of() { # component → pid if alive
  local f="$STATE/run/$1.pid" pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

start_process() { # component, command...
  local name=$1; shift
  pid_of "$name" >/dev/null && return 0
  mkdir -p "$STATE/run" "$STATE/logs"
  # setsid: the component outlives the shell that started it. 9>&-: it must not
  # inherit the lock `up` holds, or the next `up` would wait for it forever.
  setsid "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$STATE/run/$name.pid"
}

stop_process() { # component
  local pid
  pid=$(pid_of "$1") || { rm -f "$STATE/run/$1.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 20))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then kill -KILL "$pid" 2>/dev/null || true; fi
    sleep 0.2
  done
  rm -f "$STATE/run/$1.pid"
}

# Polls a command until it succeeds; prints the component's log tail on timeout.
wait_until() { # description, seconds, log component, command...
  local what=$1 limit=$2 log=$3; shift 3
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "timed out after ${limit}s waiting for $what; last lines of $STATE/logs/$log.log:" >&2
      tail -n 20 "$STATE/logs/$log.log" >&2 2>/dev/null || true
      return 1
    fi
    if [ -n "$log" ] && ! pid_of "$log" >/dev/null; then
      echo "$log exited while waiting for $what; last lines of $STATE/logs/$log.log:" >&2
      tail -n 20 "$STATE/logs/$log.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
}

https_ok() { # url, then curl auth args
  local url=$1; shift
  curl -sf --max-time 2 --cacert "$PKI/ca.crt" "$@" "$url"
}

etcd_healthy() {
  curl -sf --max-time 2 --cacert "$PKI/etcd-ca.crt" --cert "$PKI/etcd-healthcheck-client.crt" \
    --key "$PKI/etcd-healthcheck-client.key" "https://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'
}
apiserver_ready() { https_ok "https://127.0.0.1:$APISERVER_PORT/readyz" --cert "$PKI/admin.crt" --key "$PKI/admin.key"; }
# The controller-manager and scheduler serve /healthz without authentication on
# their secure ports, but with their own self-signed certificates.
controller_manager_healthy() { curl -skf --max-time 2 "https://127.0.0.1:$CONTROLLER_MANAGER_PORT/healthz"; }
scheduler_healthy() { curl -skf --max-time 2 "https://127.0.0.1:$SCHEDULER_PORT/healthz"; }
kwok_healthy() { curl -sf --max-time 2 "http://127.0.0.1:$KWOK_PORT/healthz"; }

component_healthy() {
  case $1 in
  etcd) etcd_healthy ;;
  kube-apiserver) apiserver_ready ;;
  kube-controller-manager) controller_manager_healthy ;;
  kube-scheduler) scheduler_healthy ;;
  kwok) kwok_healthy ;;
  coredns) coredns_ready ;;
  esac
}

start_etcd() {
  start_process etcd "$ETCD_BIN/etcd" \
    --name=homelab-e2e --data-dir="$STATE/etcd" \
    --listen-client-urls="https://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="https://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="homelab-e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
    --cert-file="$PKI/etcd-server.crt" --key-file="$PKI/etcd-server.key" \
    --trusted-ca-file="$PKI/etcd-ca.crt" --client-cert-auth=true \
    --listen-metrics-urls="http://127.0.0.1:$ETCD_METRICS_PORT" \
    --quota-backend-bytes=$((2 * 1024 * 1024 * 1024)) \
    --unsafe-no-fsync=true
  wait_until "etcd health" 30 etcd etcd_healthy
}

start_apiserver() {
  start_process kube-apiserver "$KUBE_BIN/kube-apiserver" \
    --bind-address=0.0.0.0 --advertise-address="$CONTROL_PLANE_IP" --secure-port="$APISERVER_PORT" \
    --etcd-servers="https://127.0.0.1:$ETCD_PORT" --etcd-cafile="$PKI/etcd-ca.crt" \
    --etcd-certfile="$PKI/apiserver-etcd-client.crt" --etcd-keyfile="$PKI/apiserver-etcd-client.key" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --allow-privileged=true \
    --default-not-ready-toleration-seconds="$NOT_READY_TOLERATION_SECONDS" \
    --default-unreachable-toleration-seconds="$UNREACHABLE_TOLERATION_SECONDS" \
    --profiling=false --v="$LOG_LEVEL"
  wait_until "kube-apiserver /readyz" 90 kube-apiserver apiserver_ready
}

# CONTROLLER_MANAGER_EXTRA_ARGS: more flags, space-separated, appended last (so
# they win over the ones above), e.g. "--kube-api-qps=100 --kube-api-burst=200".
# `e2e/cluster restart-controller-manager` restarts only this component with them.
start_controller_manager() {
  local extra=()
  read -r -a extra <<<"${CONTROLLER_MANAGER_EXTRA_ARGS:-}"
  start_process kube-controller-manager "$KUBE_BIN/kube-controller-manager" \
    --kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$CONTROLLER_MANAGER_PORT" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --node-monitor-period="$NODE_MONITOR_PERIOD" \
    --node-monitor-grace-period="$NODE_MONITOR_GRACE_PERIOD" \
    --node-startup-grace-period="$NODE_STARTUP_GRACE_PERIOD" \
    --profiling=false --v="$LOG_LEVEL" "${extra[@]}"
  wait_until "kube-controller-manager /healthz" 60 kube-controller-manager controller_manager_healthy
}

start_scheduler() {
  start_process kube-scheduler "$KUBE_BIN/kube-scheduler" \
    --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" \
    --leader-elect=false --profiling=false --v="$LOG_LEVEL"
  wait_until "kube-scheduler /healthz" 60 kube-scheduler scheduler_healthy
}

start_kwok() {
  start_process kwok "$KWOK_BIN/kwok" \
    --kubeconfig="$STATE/kwok.kubeconfig" \
    --config="$STATE/kwok-stages.yaml" \
    --manage-all-nodes=false \
    --manage-nodes-with-label-selector="$KUBELET_LABEL=alive" \
    --node-lease-duration-seconds="$NODE_LEASE_DURATION_SECONDS" \
    --cidr=10.244.0.0/16 --node-ip=127.0.0.1 \
    --server-address="127.0.0.1:$KWOK_PORT"
  wait_until "kwok /healthz" 30 kwok kwok_healthy
}
