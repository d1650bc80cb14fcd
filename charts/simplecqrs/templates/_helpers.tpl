{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "simplecqrs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, or release-chart when the release
name does not already contain the chart name.  Object names derived from it
add a suffix, so keep 20 characters for that.
*/}}
{{- define "simplecqrs.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 43 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 43 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 43 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "simplecqrs.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels (every object).  Callers add app.kubernetes.io/component.
*/}}
{{- define "simplecqrs.labels" -}}
helm.sh/chart: {{ include "simplecqrs.chart" . }}
{{ include "simplecqrs.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: simplecqrs
{{- end }}

{{/*
Selector labels of this release's objects.
*/}}
{{- define "simplecqrs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "simplecqrs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of a development store (name: mysql | cassandra | kafka): its own
app.kubernetes.io/name, so that nothing meant for the simplecqrs pods (the
operator's NetworkPolicy selects app.kubernetes.io/name=simplecqrs and the
instance) ever selects a store.
Usage: include "simplecqrs.storeLabels" (dict "ctx" . "name" "mysql" "component" "write-store")
*/}}
{{- define "simplecqrs.storeSelectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "simplecqrs.storeLabels" -}}
helm.sh/chart: {{ include "simplecqrs.chart" .ctx }}
{{ include "simplecqrs.storeSelectorLabels" . }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: simplecqrs
{{- end }}

{{/*
The image of the API, the consumer and the test hook: repository[:tag][@digest].
*/}}
{{- define "simplecqrs.image" -}}
{{- $ref := .Values.image.repository }}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if $tag }}{{ $ref = printf "%s:%s" $ref $tag }}{{ end }}
{{- if .Values.image.digest }}{{ $ref = printf "%s@%s" $ref .Values.image.digest }}{{ end }}
{{- $ref }}
{{- end }}

{{/*
Restricted-profile security contexts (Pod Security Standard "restricted").
*/}}
{{- define "simplecqrs.podSecurityContext" -}}
runAsNonRoot: true
{{- with .runAsUser }}
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
fsGroupChangePolicy: OnRootMismatch
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "simplecqrs.containerSecurityContext" -}}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* ------------------------------------------------ the OrderService and its addresses */}}

{{- define "simplecqrs.orderServiceName" -}}
{{- .Values.orderService.name | default (include "simplecqrs.fullname" . | trunc 40 | trimSuffix "-") }}
{{- end }}

{{/* Strimzi Kafka cluster deployed by this chart (kafka.deploy.enabled); Strimzi
names its bootstrap Service <cluster>-kafka-bootstrap. */}}
{{- define "simplecqrs.kafkaClusterName" -}}
{{- include "simplecqrs.fullname" . }}
{{- end }}

{{- define "simplecqrs.kafkaBootstrapServers" -}}
{{- if .Values.kafka.deploy.enabled }}
{{- printf "%s-kafka-bootstrap.%s.svc:9092" (include "simplecqrs.kafkaClusterName" .) .Release.Namespace }}
{{- else }}
{{- .Values.kafka.bootstrapServers }}
{{- end }}
{{- end }}

{{- define "simplecqrs.mysqlName" -}}
{{- printf "%s-mysql" (include "simplecqrs.fullname" .) }}
{{- end }}

{{- define "simplecqrs.mysqlHost" -}}
{{- if .Values.mysql.deploy.enabled }}
{{- printf "%s.%s.svc" (include "simplecqrs.mysqlName" .) .Release.Namespace }}
{{- else }}
{{- .Values.mysql.host }}
{{- end }}
{{- end }}

{{/* The Secret with the MySQL admin credentials the operator uses. */}}
{{- define "simplecqrs.mysqlAdminSecretName" -}}
{{- if .Values.mysql.deploy.enabled }}
{{- printf "%s-admin" (include "simplecqrs.mysqlName" .) }}
{{- else }}
{{- .Values.mysql.adminSecret.name }}
{{- end }}
{{- end }}

{{- define "simplecqrs.cassandraName" -}}
{{- printf "%s-cassandra" (include "simplecqrs.fullname" .) }}
{{- end }}

{{- define "simplecqrs.cassandraContactPoints" -}}
{{- if .Values.cassandra.deploy.enabled }}
{{- printf "%s.%s.svc" (include "simplecqrs.cassandraName" .) .Release.Namespace }}
{{- else }}
{{- .Values.cassandra.contactPoints }}
{{- end }}
{{- end }}

{{/*
A generated password that survives upgrades: reuse the key from the Secret
already in the cluster (lookup), else draw a new random one.  `helm template`
and `--dry-run` without a cluster cannot look up and always draw a new one.
Usage: include "simplecqrs.stablePassword" (dict "ctx" . "secret" NAME "key" KEY)
*/}}
{{- define "simplecqrs.stablePassword" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .secret }}
{{- if and $existing $existing.data (hasKey $existing.data .key) }}
{{- index $existing.data .key }}
{{- else }}
{{- randAlphaNum 32 | b64enc }}
{{- end }}
{{- end }}

{{/*
The children the operator creates for the OrderService (k8s/operator/
simplecqrs_operator/children.py): Service and Ingress <name>-api (port "http",
80 -> 8080), consumer pods with port "metrics" (9102), labelled
app.kubernetes.io/{name: simplecqrs, instance: <name>, component: api|consumer}.
*/}}
{{- define "simplecqrs.apiServiceName" -}}
{{- printf "%s-api" (include "simplecqrs.orderServiceName" .) }}
{{- end }}

{{- define "simplecqrs.instanceSelector" -}}
app.kubernetes.io/name: simplecqrs
app.kubernetes.io/instance: {{ include "simplecqrs.orderServiceName" . }}
{{- end }}
