# Certificates for a loopback control plane, made with openssl once per state dir.
# Sourced by e2e/cluster; expects PKI.

pki_key() { openssl genrsa -out "$1" 2048 2>/dev/null; }

pki_ca() { # name, subject
  [ -f "$PKI/$1.crt" ] && return 0
  pki_key "$PKI/$1.key"
  openssl req -x509 -new -key "$PKI/$1.key" -subj "$2" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/$1.crt" 2>/dev/null
}

pki_cert() { # ca, name, subject, extendedKeyUsage, subjectAltName(optional)
  local ca=$1 name=$2 subject=$3 eku=$4 san=${5:-}
  [ -f "$PKI/$name.crt" ] && return 0
  pki_key "$PKI/$name.key"
  local ext="$PKI/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } >"$ext"
  openssl req -new -key "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

pki_all() {
  mkdir -p "$PKI" && chmod 700 "$PKI"
  local loopback="IP:127.0.0.1,DNS:localhost"
  # etcd has its own CA, as with kubeadm, so the backup tests see a real layout.
  pki_ca etcd-ca "/CN=etcd-ca"
  pki_cert etcd-ca etcd-server "/CN=etcd" serverAuth,clientAuth "$loopback"
  pki_cert etcd-ca apiserver-etcd-client "/CN=kube-apiserver-etcd-client" clientAuth
  pki_cert etcd-ca etcd-healthcheck-client "/CN=kube-etcd-healthcheck-client" clientAuth
  pki_ca ca "/CN=kubernetes"
  pki_cert ca apiserver "/CN=kube-apiserver" serverAuth \
    "$loopback,IP:10.96.0.1,IP:10.200.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  pki_cert ca admin "/O=system:masters/CN=kubernetes-admin" clientAuth
  pki_cert ca controller-manager "/CN=system:kube-controller-manager" clientAuth
  pki_cert ca scheduler "/CN=system:kube-scheduler" clientAuth
  pki_cert ca kwok "/O=system:masters/CN=kwok-controller" clientAuth
  # The real nodes: kube-proxy, and the API server's identity towards kubelets.
  pki_cert ca kube-proxy "/CN=system:kube-proxy" clientAuth
  pki_cert ca apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  [ -f "$PKI/sa.key" ] || {
    pki_key "$PKI/sa.key"
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  }
}

kubeconfig_for() { # user cert name, output file, server (default: loopback)
  b64() { base64 -w0 <"$1"; }
  cat >"$2" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: homelab-e2e
  cluster:
    server: ${3:-https://127.0.0.1:$APISERVER_PORT}
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $1
  user:
    client-certificate-data: $(b64 "$PKI/$1.crt")
    client-key-data: $(b64 "$PKI/$1.key")
contexts:
- name: homelab-e2e
  context:
    cluster: homelab-e2e
    user: $1
current-context: homelab-e2e
KUBECONFIG
  chmod 600 "$2"
}
