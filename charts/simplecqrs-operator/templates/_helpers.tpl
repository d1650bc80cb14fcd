{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "simplecqrs-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, or release-chart when the release
name does not already contain the chart name.
*/}}
{{- define "simplecqrs-operator.fullname" -}}
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

{{/*
chart-version, as used by the helm.sh/chart label.
*/}}
{{- define "simplecqrs-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels (every object).
*/}}
{{- define "simplecqrs-operator.labels" -}}
helm.sh/chart: {{ include "simplecqrs-operator.chart" . }}
{{ include "simplecqrs-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: simplecqrs
app.kubernetes.io/component: operator
{{- end }}

{{/*
Selector labels (immutable once a Deployment exists: never add to these).
*/}}
{{- define "simplecqrs-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "simplecqrs-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "simplecqrs-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "simplecqrs-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository[:tag][@digest]; the tag defaults to appVersion.
*/}}
{{- define "simplecqrs-operator.image" -}}
{{- $ref := .Values.image.repository }}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if $tag }}{{ $ref = printf "%s:%s" $ref $tag }}{{ end }}
{{- if .Values.image.digest }}{{ $ref = printf "%s@%s" $ref .Values.image.digest }}{{ end }}
{{- $ref }}
{{- end }}

{{/*
The namespace the operator watches in namespace scope (default: the release's).
*/}}
{{- define "simplecqrs-operator.watchNamespace" -}}
{{- .Values.rbac.watchNamespace | default .Release.Namespace }}
{{- end }}

{{/*
The rules of the first Role/ClusterRole of kind KIND in a file under files/
(symlinks to k8s/operator/rbac*.yaml, the single source of the operator's
permissions).  Usage: include "simplecqrs-operator.rules" (dict "ctx" . "file" "files/rbac.yaml" "kind" "ClusterRole")
*/}}
{{- define "simplecqrs-operator.rules" -}}
{{- $rules := list }}
{{- range regexSplit "(?m)^---\\s*$" (.ctx.Files.Get .file) -1 }}
{{- $doc := fromYaml . }}
{{- if and (not $rules) (eq (toString $doc.kind) $.kind) }}
{{- $rules = $doc.rules }}
{{- end }}
{{- end }}
{{- if not $rules }}
{{- fail (printf "no %s with rules in %s" .kind .file) }}
{{- end }}
{{- /* the Lease's name is this release's (leaderElection.lease), not the file's default */}}
{{- range $rules }}
{{- if and (has "leases" .resources) .resourceNames }}
{{- $_ := set . "resourceNames" (list (include "simplecqrs-operator.leaseName" $.ctx)) }}
{{- end }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{- define "simplecqrs-operator.leaseName" -}}
{{- .Values.leaderElection.lease | default (include "simplecqrs-operator.fullname" .) }}
{{- end }}
