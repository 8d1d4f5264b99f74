{{/* The chart's resource name. */}}
{{- define "bend.fullname" -}}
{{- printf "%s" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every resource. */}}
{{- define "bend.labels" -}}
app.kubernetes.io/name: bend
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels that select the pods. */}}
{{- define "bend.selectorLabels" -}}
app.kubernetes.io/name: bend
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* config.yaml: the chart's keys with .Values.config merged over them. */}}
{{- define "bend.config" -}}
{{- if not .Values.kafka.brokers -}}
{{- fail "kafka.brokers is required: the embedded broker serves one process, not a consumer group of replicas" -}}
{{- end -}}
{{- $base := dict "kafka" (dict "brokers" .Values.kafka.brokers) "distributor" (dict "group" (.Values.group | default .Release.Name)) -}}
{{- toYaml (mergeOverwrite $base .Values.config) -}}
{{- end -}}
