{{/* The release's base name, at most 63 characters. */}}
{{- define "homelab.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "homelab.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on everything the chart creates. */}}
{{- define "homelab.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "homelab.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: homelab-operators
{{- end -}}

{{/*
One controller's names and labels. Called with a dict:
  root:      the top-level context
  component: the binary's name, e.g. mediaserver-controller
  values:    the controller's values block
*/}}
{{- define "homelab.component.name" -}}
{{- printf "%s-%s" (include "homelab.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "homelab.component.selectorLabels" -}}
app.kubernetes.io/name: {{ include "homelab.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "homelab.component.labels" -}}
{{ include "homelab.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* repository:tag or repository@digest, per-controller overrides first. */}}
{{- define "homelab.component.image" -}}
{{- $image := merge (deepCopy (default dict .values.image)) .root.Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The ServiceAccount, Deployment, metrics Service, ServiceMonitor and Lease
Role/RoleBinding of one controller. Its ClusterRoles live beside it, since they
differ per controller. Dict: root, component, values; optional command (default
/usr/local/bin/<component>) and env (extra variables the chart computes).
*/}}
{{- define "homelab.controller" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $name := include "homelab.component.name" . -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "homelab.component.labels" . | nindent 4 }}
automountServiceAccountToken: true
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "homelab.component.labels" . | nindent 4 }}
spec:
  replicas: {{ $v.replicas }}
  revisionHistoryLimit: 3
  selector:
    matchLabels:
      {{- include "homelab.component.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "homelab.component.selectorLabels" . | nindent 8 }}
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $root.Values.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ $name }}
      automountServiceAccountToken: true
      enableServiceLinks: false
      {{- with $root.Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      # SIGTERM ends the watches and releases the Lease; this is ample.
      terminationGracePeriodSeconds: 30
      containers:
        - name: controller
          image: {{ include "homelab.component.image" . | quote }}
          imagePullPolicy: {{ (merge (deepCopy (default dict $v.image)) $root.Values.image).pullPolicy }}
          command: {{ toJson (default (list (printf "/usr/local/bin/%s" .component)) .command) }}
          env:
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: POD_NAMESPACE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.namespace
            - name: HOMELAB_HTTP_ADDR
              value: "0.0.0.0:{{ $root.Values.metrics.port }}"
            - name: HOMELAB_LEADER_ELECTION
              value: {{ $root.Values.leaderElection.enabled | quote }}
            - name: HOMELAB_WATCH_NAMESPACE
              value: {{ $root.Values.watchNamespace | quote }}
            - name: HOMELAB_CONCURRENCY
              value: {{ $v.concurrency | quote }}
            - name: HOMELAB_API_QPS
              value: {{ $root.Values.apiRateLimit.qps | quote }}
            - name: HOMELAB_API_BURST
              value: {{ $root.Values.apiRateLimit.burst | quote }}
            # The administrator's settings (fencing.enabled, hostPaths.allowed).
            - name: HOMELAB_FENCING_ALLOWED
              value: {{ $root.Values.fencing.enabled | quote }}
            - name: HOMELAB_ALLOWED_HOST_PATHS
              value: {{ join "," $root.Values.hostPaths.allowed | quote }}
            - name: HOMELAB_LOG_FORMAT
              value: {{ $root.Values.logFormat | quote }}
            - name: RUST_LOG
              value: {{ $root.Values.logLevel | quote }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: http-metrics
              containerPort: {{ $root.Values.metrics.port }}
              protocol: TCP
          # /healthz fails only when a watch has been failing for minutes (the
          # API server is gone), not during a leader change.
          livenessProbe:
            httpGet:
              path: /healthz
              port: http-metrics
            periodSeconds: 20
            timeoutSeconds: 5
            failureThreshold: 3
          # /readyz passes once every watch has listed its objects (standby
          # replicas too).
          readinessProbe:
            httpGet:
              path: /readyz
              port: http-metrics
            periodSeconds: 10
            timeoutSeconds: 5
            failureThreshold: 3
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
      nodeSelector:
        {{- toYaml (default $root.Values.nodeSelector $v.nodeSelector) | nindent 8 }}
      {{- /* Replicas on different nodes, so the standby survives the leader's node.
      Preferred, not required: a one-node homelab still installs. A user's own
      podAntiAffinity replaces the default one. */}}
      {{- $affinity := deepCopy (default $root.Values.affinity $v.affinity) }}
      {{- if not (hasKey $affinity "podAntiAffinity") }}
      {{- $term := dict "weight" 100 "podAffinityTerm" (dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "homelab.component.selectorLabels" . | fromYaml))) }}
      {{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list $term)) }}
      {{- end }}
      affinity:
        {{- toYaml $affinity | nindent 8 }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "homelab.component.selectorLabels" . | nindent 14 }}
      {{- /* Kubernetes' default is 300 s on a dead node before the pod is
      replaced; the standby has taken the Lease long before, and the replacement
      restores the spare. */}}
      tolerations:
        {{- range $key := list "node.kubernetes.io/not-ready" "node.kubernetes.io/unreachable" }}
        - key: {{ $key }}
          operator: Exists
          effect: NoExecute
          tolerationSeconds: {{ $root.Values.controllerNodeLossSeconds }}
        {{- end }}
        {{- with (default $root.Values.tolerations $v.tolerations) }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
{{- if gt (int $v.replicas) 1 }}
---
# A drain or an upgrade never takes every replica at once.
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "homelab.component.labels" . | nindent 4 }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "homelab.component.selectorLabels" . | nindent 6 }}
{{- end }}
{{- if $root.Values.metrics.service.enabled }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name | trunc 55 | trimSuffix "-" }}-metrics
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "homelab.component.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "homelab.component.selectorLabels" . | nindent 4 }}
  ports:
    - name: http-metrics
      port: {{ $root.Values.metrics.port }}
      targetPort: http-metrics
      protocol: TCP
{{- end }}
{{- if and $root.Values.metrics.service.enabled $root.Values.metrics.serviceMonitor.enabled }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "homelab.component.labels" . | nindent 4 }}
    {{- with $root.Values.metrics.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "homelab.component.selectorLabels" . | nindent 6 }}
  namespaceSelector:
    matchNames: [{{ $root.Release.Namespace }}]
  endpoints:
    - port: http-metrics
      path: /metrics
      interval: {{ $root.Values.metrics.serviceMonitor.interval }}
      scrapeTimeout: {{ $root.Values.metrics.serviceMonitor.scrapeTimeout }}
{{- end }}
{{- if $root.Values.leaderElection.enabled }}
---
# Leader election: the Lease named after the controller, in the release
# namespace, and nothing else. (RBAC cannot limit `create` to a name.)
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ $name }}-leader-election
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "homelab.component.labels" . | nindent 4 }}
rules:
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["create"]
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    resourceNames: [{{ .component | quote }}]
    verbs: ["get", "update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $name }}-leader-election
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "homelab.component.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $name }}-leader-election
subjects:
  - kind: ServiceAccount
    name: {{ $name }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
{{- end -}}

{{/*
Binds a controller's two ClusterRoles: `-cluster` (cluster-scoped kinds) always
with a ClusterRoleBinding; the namespaced one with a ClusterRoleBinding, or with a
RoleBinding in watchNamespace when one is set. Dict: root, component.
*/}}
{{- define "homelab.controller.bindings" -}}
{{- $root := .root -}}
{{- $name := include "homelab.component.name" . -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $name }}-cluster
  labels:
    {{- include "homelab.component.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $name }}-cluster
subjects:
  - kind: ServiceAccount
    name: {{ $name }}
    namespace: {{ $root.Release.Namespace }}
---
apiVersion: rbac.authorization.k8s.io/v1
{{- if $root.Values.watchNamespace }}
kind: RoleBinding
metadata:
  name: {{ $name }}
  namespace: {{ $root.Values.watchNamespace }}
{{- else }}
kind: ClusterRoleBinding
metadata:
  name: {{ $name }}
{{- end }}
  labels:
    {{- include "homelab.component.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ $name }}
    namespace: {{ $root.Release.Namespace }}
{{- end -}}

{{/*
The namespaces where the controllers may read Secrets and delete pods, as a
comma-separated list: `namespaces`, else watchNamespace, else none.
*/}}
{{- define "homelab.homeNamespaces" -}}
{{- $namespaces := .Values.namespaces -}}
{{- if and (not $namespaces) .Values.watchNamespace -}}
{{- $namespaces = list .Values.watchNamespace -}}
{{- end -}}
{{- join "," $namespaces -}}
{{- end -}}

{{/*
A controller's rights that reach into a home's data (Secrets, deleting pods):
the ClusterRole `<name>-<suffix>` holding `rules`, bound with a RoleBinding in
each namespace of `namespaces` (a comma-separated list), or with one
ClusterRoleBinding when `clusterWide`. Dict: root, component, suffix, rules
(YAML), namespaces, clusterWide.
*/}}
{{- define "homelab.controller.scopedAccess" -}}
{{- $root := .root -}}
{{- $ctx := . -}}
{{- $name := printf "%s-%s" (include "homelab.component.name" .) .suffix -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ $name }}
  labels:
    {{- include "homelab.component.labels" . | nindent 4 }}
rules:
  {{- .rules | nindent 2 }}
{{- if .clusterWide }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $name }}
  labels:
    {{- include "homelab.component.labels" $ctx | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ include "homelab.component.name" $ctx }}
    namespace: {{ $root.Release.Namespace }}
{{- else }}
{{- range $ns := compact (splitList "," .namespaces) }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $name }}
  namespace: {{ $ns }}
  labels:
    {{- include "homelab.component.labels" $ctx | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ include "homelab.component.name" $ctx }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
{{- end }}
{{- end -}}
