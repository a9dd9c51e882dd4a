# The cluster's DNS, as k3s and kubeadm run it: CoreDNS with its kubernetes plugin,
# behind the Service kube-system/kube-dns at the address every kubelet hands its
# pods. CoreDNS runs beside the control plane (no image can be pulled here), and
# the Service's endpoint is its address on the nodes' bridge. It answers the
# cluster's own names only: nothing a pod resolves leaves this machine.
# Sourced by e2e/cluster; expects STATE, PKI, COREDNS_BIN, CONTROL_PLANE_IP.

DNS_SERVICE_IP=10.96.0.10
COREDNS_HEALTH_PORT=${COREDNS_HEALTH_PORT:-10253}
COREDNS_READY_PORT=${COREDNS_READY_PORT:-10254}

coredns_ready() { curl -sf --max-time 2 "http://127.0.0.1:$COREDNS_READY_PORT/ready"; }

# What kubeadm gives CoreDNS: read Services, EndpointSlices and Namespaces.
coredns_objects() {
  cat <<EOF2
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
rules:
  - apiGroups: [""]
    resources: [services, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:coredns
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: system:coredns
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
spec:
  clusterIP: $DNS_SERVICE_IP
  ports:
    - { name: dns, port: 53, protocol: UDP, targetPort: 53 }
    - { name: dns-tcp, port: 53, protocol: TCP, targetPort: 53 }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-coredns
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: e2e.homelab.home.arpa
addressType: IPv4
endpoints:
  - addresses: [$CONTROL_PLANE_IP]
    conditions: { ready: true }
ports:
  - { name: dns, port: 53, protocol: UDP }
  - { name: dns-tcp, port: 53, protocol: TCP }
EOF2
}

start_coredns() {
  pki_cert ca coredns "/CN=system:coredns" clientAuth
  kubeconfig_for coredns "$STATE/coredns.kubeconfig"
  cat >"$STATE/Corefile" <<EOF2
.:53 {
    bind $CONTROL_PLANE_IP
    errors
    health 127.0.0.1:$COREDNS_HEALTH_PORT
    ready 127.0.0.1:$COREDNS_READY_PORT
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $STATE/coredns.kubeconfig
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
}
EOF2
  coredns_objects | kubectl_e2e apply --server-side --field-manager=e2e-cluster -f - >/dev/null
  start_process coredns "$COREDNS_BIN/coredns" -conf "$STATE/Corefile"
  wait_until "CoreDNS /ready" 60 coredns coredns_ready
}
