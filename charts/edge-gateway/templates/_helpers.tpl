{{/*
Named templates shared by the chart. Keep them in the small template subset that
test/chart.test.ts renders: absolute .Values paths, if/else, include, and simple pipelines.
*/}}

{{/* Chart name, used in the app.kubernetes.io/name label. */}}
{{- define "edge-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the namespaced and cluster-scoped objects (Deployment, RBAC, PDB, HPA). */}}
{{- define "edge-gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "edge-gateway.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "edge-gateway.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "edge-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the gateway pods. Never change them on an installed release. */}}
{{- define "edge-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edge-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "edge-gateway.labels" -}}
helm.sh/chart: {{ include "edge-gateway.chart" . }}
{{ include "edge-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: gateway
app.kubernetes.io/part-of: knative-serving
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "edge-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "edge-gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Services' names: the gateway is told both, and writes them into KIngress status. */}}
{{- define "edge-gateway.publicServiceName" -}}
{{- default (include "edge-gateway.fullname" .) .Values.publicService.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "edge-gateway.localServiceName" -}}
{{- default (printf "%s-local" (include "edge-gateway.fullname" .)) .Values.localService.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "edge-gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
