{{/* The chart name. */}}
{{- define "mcpgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's resources. */}}
{{- define "mcpgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels that select the release's pods. */}}
{{- define "mcpgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcpgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "mcpgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mcpgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: gateway
{{- end }}

{{/* The ServiceAccount's name. */}}
{{- define "mcpgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mcpgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository@digest, or repository:tag (default appVersion). */}}
{{- define "mcpgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Refuses several replicas that would not behave as one gateway: they need one session key, and
shared limits and ended sessions (Redis) unless per-replica state is accepted explicitly.
*/}}
{{- define "mcpgate.checkReplicas" -}}
{{- $v := .Values }}
{{- $several := or (gt (int $v.replicaCount) 1) $v.autoscaling.enabled }}
{{- if and $several (not $v.session.existingSecret) }}
{{- fail "several replicas (replicaCount > 1 or autoscaling) need session.existingSecret: one session key for all, or a session opened on one replica is unknown on the others" }}
{{- end }}
{{- if and $several (not $v.redis.url) (not $v.acceptPerReplicaState) }}
{{- fail "several replicas (replicaCount > 1 or autoscaling) without redis.url enforce the rate limits each alone (the limit times the replica count) and do not share ended sessions: set redis.url, or acceptPerReplicaState: true" }}
{{- end }}
{{- end }}

{{/* Whether a policy directory is mounted. */}}
{{- define "mcpgate.hasPolicies" -}}
{{- if or .Values.policies.files .Values.policies.existingConfigMap .Values.policies.volume }}true{{ end }}
{{- end }}

{{/*
mcpgate.yaml: `config` with what the chart owns laid over it (listen and admin addresses,
TLS or plain HTTP, mounted secret paths, the policy directory, shutdown timings).
*/}}
{{- define "mcpgate.config" -}}
{{- $v := .Values }}
{{- $listen := dict "addr" (printf "0.0.0.0:%d" (int $v.ports.mcp)) }}
{{- if $v.publicUrl }}
{{- $_ := set $listen "public_url" $v.publicUrl }}
{{- end }}
{{- if $v.tls.secretName }}
{{- $tls := dict "cert_file" "/etc/mcpgate/tls/tls.crt" "key_file" "/etc/mcpgate/tls/tls.key" }}
{{- if $v.tls.clientCaSecretName }}
{{- $_ := set $tls "client_ca_file" (printf "/etc/mcpgate/client-ca/%s" $v.tls.clientCaKey) }}
{{- $_ := set $tls "client_auth" $v.tls.clientAuth }}
{{- end }}
{{- $_ := set $listen "tls" $tls }}
{{- else }}
{{- if $v.tls.clientCaSecretName }}
{{- fail "tls.clientCaSecretName needs tls.secretName: client certificates are checked where TLS terminates" }}
{{- end }}
{{- $_ := set $listen "plain_http" true }}
{{- end }}
{{- $owned := dict "listen" $listen "admin" (dict "addr" (printf "0.0.0.0:%d" (int $v.ports.admin))) }}
{{- $_ := set $owned "shutdown" (dict "drain_delay" (printf "%ds" (int $v.shutdown.drainDelaySeconds)) "grace" (printf "%ds" (int $v.shutdown.graceSeconds))) }}
{{- if $v.session.existingSecret }}
{{- $_ := set $owned "session" (dict "key_file" (printf "/etc/mcpgate/session/%s" $v.session.secretKey)) }}
{{- end }}
{{- if include "mcpgate.hasPolicies" . }}
{{- $_ := set $owned "policies" (dict "dir" "/etc/mcpgate/policies" "mode" $v.policies.mode) }}
{{- else if hasKey $v.config "policies" }}
{{- fail "set the policy directory with policies.files, policies.existingConfigMap or policies.volume, not config.policies" }}
{{- end }}
{{- if $v.auditKey.existingSecret }}
{{- if not (hasKey $v.config "audit") }}
{{- fail "auditKey.existingSecret needs an audit log: set config.audit" }}
{{- end }}
{{- $_ := set $owned "audit" (dict "key_file" (printf "/etc/mcpgate/audit-key/%s" $v.auditKey.secretKey)) }}
{{- end }}
{{- if $v.redis.url }}
{{- $redis := dict "url" $v.redis.url "timeout" $v.redis.timeout }}
{{- if $v.redis.sentinels }}
{{- $_ := set $redis "sentinels" $v.redis.sentinels }}
{{- end }}
{{- $limits := dict "store" "redis" "redis" $redis "on_store_error" $v.redis.onStoreError }}
{{- $_ := set $owned "limits" $limits }}
{{- end }}
{{- $config := mustMergeOverwrite (deepCopy $v.config) $owned }}
{{- toYaml $config }}
{{- end }}
