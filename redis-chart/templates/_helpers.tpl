{{/* Chart name, shortened to the 63 characters a label value allows. */}}
{{- define "redis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Object names: the release name when it already contains the chart name (release
"orders-redis" gives "orders-redis"), else "<release>-redis".
*/}}
{{- define "redis.fullname" -}}
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

{{- define "redis.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "redis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "redis.labels" -}}
helm.sh/chart: {{ include "redis.chart" . }}
{{ include "redis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: idempotency-store
{{- end -}}

{{/* The Secret holding the password: the user's existingSecret, else the chart's own. */}}
{{- define "redis.secretName" -}}
{{- default (include "redis.fullname" .) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "redis.secretPasswordKey" -}}
{{- if .Values.auth.existingSecret -}}
{{- required "auth.existingSecretPasswordKey is required with auth.existingSecret" .Values.auth.existingSecretPasswordKey -}}
{{- else -}}
redis-password
{{- end -}}
{{- end -}}

{{/* In-cluster DNS name of the headless Service. */}}
{{- define "redis.host" -}}
{{- printf "%s.%s.svc.cluster.local" (include "redis.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "redis.sentinelMode" -}}
{{- if eq .Values.architecture "sentinel" }}true{{ end -}}
{{- end -}}

{{/* The DNS domain of the pods behind the headless Service: <pod>.<this>. */}}
{{- define "redis.podDomain" -}}
{{- include "redis.host" . -}}
{{- end -}}

{{/* Every sentinel, host:port,host:port,... as REDIS_URL lists them. */}}
{{- define "redis.sentinelHosts" -}}
{{- $hosts := list -}}
{{- range $n := until (int .Values.sentinel.replicas) -}}
{{- $hosts = append $hosts (printf "%s-%d.%s:%d" (include "redis.fullname" $) $n (include "redis.podDomain" $) (int $.Values.sentinel.port)) -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end -}}

{{- define "redis.clusterMode" -}}
{{- if eq .Values.architecture "cluster" }}true{{ end -}}
{{- end -}}

{{/* Pods in cluster mode: every primary and its replicas. */}}
{{- define "redis.clusterNodes" -}}
{{- mul (int .Values.cluster.primaries) (add 1 (int .Values.cluster.replicasPerPrimary)) -}}
{{- end -}}

{{/* Every cluster pod as host:port, the seed nodes of REDIS_URL. */}}
{{- define "redis.clusterHosts" -}}
{{- $hosts := list -}}
{{- range $n := until (int (include "redis.clusterNodes" .)) -}}
{{- $hosts = append $hosts (printf "%s-%d.%s:%d" (include "redis.fullname" $) $n (include "redis.podDomain" $) (int $.Values.service.port)) -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end -}}
