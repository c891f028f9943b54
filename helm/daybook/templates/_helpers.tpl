{{/*
Templates here take a context with `.Values` (this chart's values) and `.Release`.
In this chart that is `.`; a host chart passes
  (dict "Values" .Values.daybook "Release" .Release)
so that the names it computes match the ConfigMap this chart renders.
*/}}

{{- define "daybook.name" -}}
{{- default "daybook" .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The same in this chart and in a host chart's context: no `.Chart` in it. */}}
{{- define "daybook.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "daybook.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "daybook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "daybook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "daybook.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "daybook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: metering
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "daybook.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "daybook.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "daybook.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end }}
{{- end }}

{{/* The [server] table of daybook.toml. */}}
{{- define "daybook.serverConfig" -}}
{{- $c := .Values.config -}}
{{- $server := dict
  "data_dir" "/var/lib/daybook"
  "health_listen" (printf "0.0.0.0:%d" (int .Values.ports.health))
  "admin" (printf "0.0.0.0:%d" (int .Values.ports.admin))
  "durability" $c.durability
  "max_batch" (int $c.maxBatch)
  "max_message_bytes" (int $c.maxMessageBytes)
  "deadline_ceiling" $c.deadlineCeiling
  "grace_period" $c.gracePeriod
  "snapshot_entries" (int $c.snapshotEntries)
  "snapshot_interval" $c.snapshotInterval
  "otlp_interval" .Values.otel.interval
  "metrics_tenant_label" .Values.otel.tenantLabel
-}}
{{- if .Values.otel.endpoint }}
{{- $_ := set $server "otlp_endpoint" .Values.otel.endpoint }}
{{- end }}
{{- if eq .Values.mode "sidecar" }}
{{- $_ := set $server "listen" "off" }}
{{- $_ := set $server "uds" (printf "%s/%s" .Values.socket.dir .Values.socket.name) }}
{{- $_ := set $server "uds_mode" .Values.socket.mode }}
{{- else }}
{{- $_ := set $server "listen" (printf "0.0.0.0:%d" (int .Values.ports.grpc)) }}
{{- if and (not .Values.auth.existingSecret) (not .Values.auth.insecure) }}
{{- fail "standalone mode serves gRPC to every workload of the cluster: set auth.existingSecret (a Secret with daybook's credentials file) or, knowingly, auth.insecure=true" }}
{{- end }}
{{- if .Values.tls.existingSecret }}
{{- $_ := set $server "tls_cert" "/etc/daybook/tls/tls.crt" }}
{{- $_ := set $server "tls_key" "/etc/daybook/tls/tls.key" }}
{{- with .Values.tls.clientAuth }}
{{- $_ := set $server "tls_client_ca" "/etc/daybook/tls/ca.crt" }}
{{- $_ := set $server "tls_client_auth" . }}
{{- end }}
{{- else if .Values.tls.clientAuth }}
{{- fail "tls.clientAuth needs tls.existingSecret (its ca.crt verifies client certificates)" }}
{{- end }}
{{- end }}
{{- if .Values.auth.existingSecret }}
{{- $_ := set $server "auth_file" (printf "/etc/daybook/auth/%s" .Values.auth.key) }}
{{- else if .Values.auth.insecure }}
{{- $_ := set $server "insecure" true }}
{{- end }}
{{- with .Values.redis.memoryCeiling }}
{{- if not $.Values.redis.existingSecret }}
{{- fail "redis.memoryCeiling needs redis.existingSecret: only in Redis mode can the near cache forget what Redis keeps" }}
{{- end }}
{{- $_ := set $server "memory_ceiling" . }}
{{- end }}
{{- with .Values.redis.tenantLog }}
{{- if not $.Values.redis.existingSecret }}
{{- fail "redis.tenantLog needs redis.existingSecret: tenant logs order events across replicas in Redis" }}
{{- end }}
{{- $_ := set $server "redis_tenant_log" . }}
{{- end }}
{{- if .Values.redis.tls.existingSecret }}
{{- if not .Values.redis.existingSecret }}
{{- fail "redis.tls.existingSecret needs redis.existingSecret (a rediss:// URL)" }}
{{- end }}
{{- $_ := set $server "redis_ca_file" "/etc/daybook/redis-tls/ca.crt" }}
{{- if .Values.redis.tls.clientCertificate }}
{{- $_ := set $server "redis_client_cert" "/etc/daybook/redis-tls/tls.crt" }}
{{- $_ := set $server "redis_client_key" "/etc/daybook/redis-tls/tls.key" }}
{{- end }}
{{- end }}
{{- toToml (dict "server" $server) }}
{{- end }}

{{/*
The daybook container, for both modes. A sidecar serves its API on the shared socket;
standalone serves it on TCP. Probes are gRPC, on the health-only port.
*/}}
{{- define "daybook.container" -}}
name: daybook
image: {{ include "daybook.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
args:
  - serve
  - --config
  - /etc/daybook/daybook.toml
ports:
  {{- if ne .Values.mode "sidecar" }}
  - name: grpc
    containerPort: {{ .Values.ports.grpc }}
    protocol: TCP
  {{- end }}
  - name: health
    containerPort: {{ .Values.ports.health }}
    protocol: TCP
  - name: admin
    containerPort: {{ .Values.ports.admin }}
    protocol: TCP
env:
  - name: POD_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  - name: POD_NAMESPACE
    valueFrom:
      fieldRef:
        fieldPath: metadata.namespace
  - name: OTEL_RESOURCE_ATTRIBUTES
    value: "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE)"
  {{- if .Values.redis.existingSecret }}
  - name: DAYBOOK_REDIS_URL
    valueFrom:
      secretKeyRef:
        name: {{ .Values.redis.existingSecret }}
        key: {{ .Values.redis.urlKey }}
  {{- with .Values.redis.timeout }}
  - name: DAYBOOK_REDIS_TIMEOUT
    value: {{ . | quote }}
  {{- end }}
  {{- end }}
startupProbe:
  grpc:
    port: {{ .Values.ports.health }}
  periodSeconds: {{ .Values.probes.startup.periodSeconds }}
  failureThreshold: {{ .Values.probes.startup.failureThreshold }}
readinessProbe:
  grpc:
    port: {{ .Values.ports.health }}
  periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
livenessProbe:
  # The process, not the service: readiness ("" above) goes NOT_SERVING while draining or
  # when the journal fails, and a restart would not help either.
  grpc:
    port: {{ .Values.ports.health }}
    service: liveness
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
{{- $kubeVersion := "" }}
{{- with .Capabilities }}{{ $kubeVersion = .KubeVersion.Version }}{{ end }}
{{- if and .Values.preStopSleepSeconds $kubeVersion (semverCompare ">=1.30-0" $kubeVersion) }}
lifecycle:
  # Endpoints are removed from Services while the pod keeps serving: callers stop
  # choosing it before SIGTERM starts the drain.
  preStop:
    sleep:
      seconds: {{ .Values.preStopSleepSeconds }}
{{- end }}
resources:
  {{- toYaml .Values.resources | nindent 2 }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: daybook-config
    mountPath: /etc/daybook
    readOnly: true
  - name: daybook-data
    mountPath: /var/lib/daybook
  {{- if eq .Values.mode "sidecar" }}
  - name: daybook-socket
    mountPath: {{ .Values.socket.dir }}
  {{- end }}
  {{- /* Whole-Secret mounts, never subPath: Kubernetes updates them in place, and daybook
  reloads credentials and certificates when they change. */}}
  {{- if .Values.auth.existingSecret }}
  - name: daybook-auth
    mountPath: /etc/daybook/auth
    readOnly: true
  {{- end }}
  {{- if and .Values.tls.existingSecret (ne .Values.mode "sidecar") }}
  - name: daybook-tls
    mountPath: /etc/daybook/tls
    readOnly: true
  {{- end }}
  {{- if .Values.redis.tls.existingSecret }}
  - name: daybook-redis-tls
    mountPath: /etc/daybook/redis-tls
    readOnly: true
  {{- end }}
  {{- if .Values.sinkSecret }}
  - name: daybook-sinks
    mountPath: /etc/daybook/sinks
    readOnly: true
  {{- end }}
{{- end }}

{{/*
The native sidecar: put it under the host pod's `initContainers`. Kubernetes starts it
before the app containers, keeps it running beside them (restartPolicy: Always), and
stops it after them, so no message is sent to a daybook that is not there.
*/}}
{{- define "daybook.sidecar" -}}
- {{ include "daybook.container" . | nindent 2 | trim }}
  restartPolicy: Always
{{- end }}

{{/* For the host pod's `volumes`: the shared socket, the data and the config. */}}
{{- define "daybook.volumes" -}}
- name: daybook-config
  configMap:
    name: {{ include "daybook.fullname" . }}-config
{{- /* A StatefulSet's replicas each get theirs from its volumeClaimTemplates. */}}
{{- if not (and .Values.persistence.enabled (eq .Values.mode "standalone") (eq (default "Deployment" .Values.workload) "StatefulSet")) }}
- name: daybook-data
  {{- if and .Values.persistence.enabled (ne .Values.mode "sidecar") }}
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-data" (include "daybook.fullname" .)) .Values.persistence.existingClaim }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- end }}
{{- if eq .Values.mode "sidecar" }}
- name: daybook-socket
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end }}
{{- with .Values.auth.existingSecret }}
- name: daybook-auth
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- if and .Values.tls.existingSecret (ne .Values.mode "sidecar") }}
- name: daybook-tls
  secret:
    secretName: {{ .Values.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- with .Values.redis.tls.existingSecret }}
- name: daybook-redis-tls
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- with .Values.sinkSecret }}
- name: daybook-sinks
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{/* For the app container's `volumeMounts`: the socket directory. */}}
{{- define "daybook.socketMount" -}}
- name: daybook-socket
  mountPath: {{ .Values.socket.dir }}
{{- end }}

{{/* For the app container's `env`: where daybook answers. */}}
{{- define "daybook.clientEnv" -}}
- name: DAYBOOK_ADDR
  value: {{ printf "unix:%s/%s" .Values.socket.dir .Values.socket.name | quote }}
{{- end }}

{{/*
The standalone pod template, shared by the Deployment and the StatefulSet.
*/}}
{{- define "daybook.podTemplate" -}}
metadata:
  annotations:
    # Server keys need a restart; tenants reload live and are left out of it.
    checksum/server-config: {{ include "daybook.serverConfig" . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  labels:
    {{- include "daybook.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "daybook.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  containers:
    - {{ include "daybook.container" . | nindent 6 | trim }}
  volumes:
    {{- include "daybook.volumes" . | nindent 4 }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
