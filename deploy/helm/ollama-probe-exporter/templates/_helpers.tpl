{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "ollama-probe-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, prefixed with the chart name unless it already contains it. */}}
{{- define "ollama-probe-exporter.fullname" -}}
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

{{- define "ollama-probe-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the pods; never change them in an upgrade (selectors are immutable). */}}
{{- define "ollama-probe-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ollama-probe-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ollama-probe-exporter.labels" -}}
helm.sh/chart: {{ include "ollama-probe-exporter.chart" . }}
{{ include "ollama-probe-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: exporter
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ollama-probe-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ollama-probe-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ollama-probe-exporter.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* A Prometheus duration such as 15m or 1h30m as a number of seconds (units s, m, h, d, w). */}}
{{- define "ollama-probe-exporter.seconds" -}}
{{- if not (regexMatch "^([0-9]+[smhdw])+$" .) }}
{{- fail (printf "%q is not a duration such as 15m or 1h30m (units s, m, h, d, w)" .) }}
{{- end }}
{{- $units := dict "s" 1 "m" 60 "h" 3600 "d" 86400 "w" 604800 }}
{{- $total := 0 }}
{{- range regexFindAll "[0-9]+[smhdw]" . -1 }}
{{- $unit := regexFind "[smhdw]$" . }}
{{- $total = add $total (mul (trimSuffix $unit . | atoi) (get $units $unit)) }}
{{- end }}
{{- $total }}
{{- end }}
