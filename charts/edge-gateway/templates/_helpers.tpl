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

{{/*
What the gateway lists and watches in the namespaces it serves (cluster-wide, or in each of
gateway.namespaces), and the KIngress status it writes. See templates/rbac.yaml.
*/}}
{{- define "edge-gateway.watchRules" -}}
- apiGroups: ["networking.internal.knative.dev"]
  resources: ["ingresses"]
  verbs: ["list", "watch"]
# Ready, observedGeneration and the load balancer addresses; written by the elected replica.
- apiGroups: ["networking.internal.knative.dev"]
  resources: ["ingresses/status"]
  verbs: ["patch"]
- apiGroups: ["serving.knative.dev"]
  resources: ["revisions"]
  verbs: ["list", "watch"]
{{- if .Values.gateway.watchServing }}
# gateway.watchServing: Routes and DomainMappings translated by the gateway itself, and the
# Services and Configurations it derives Revisions and Routes from (in its own memory only).
- apiGroups: ["serving.knative.dev"]
  resources: ["routes", "domainmappings", "services", "configurations"]
  verbs: ["list", "watch"]
{{- end }}
- apiGroups: [""]
  resources: ["services", "secrets"]
  verbs: ["list", "watch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list", "watch"]
# Read only, and only asked for where needed: while requests are held for a revision with no
# ready pod, the gateway watches that revision's pods (namespaced, by their
# serving.knative.dev/revision label), so an image that cannot be pulled, a crash loop or an
# unschedulable pod answers the held requests at once (503 revision-failed, Kubernetes' reason in
# the body) instead of after the cold-start timeout. It never lists the cluster's pods.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
{{- end }}

{{/*
gateway.namespaces: what watchRules grants, as a Role and its RoleBinding in one namespace.
Called with (dict "root" <the top context> "namespace" <name>).
*/}}
{{- define "edge-gateway.namespacedWatch" -}}
# gateway.namespaces: the gateway watches only these namespaces, so it is granted only there.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ include "edge-gateway.fullname" .root }}
  namespace: {{ .namespace }}
  labels:
    {{- include "edge-gateway.labels" .root | nindent 4 }}
rules:
  {{- include "edge-gateway.watchRules" .root | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ include "edge-gateway.fullname" .root }}
  namespace: {{ .namespace }}
  labels:
    {{- include "edge-gateway.labels" .root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ include "edge-gateway.fullname" .root }}
subjects:
  - kind: ServiceAccount
    name: {{ include "edge-gateway.serviceAccountName" .root }}
    namespace: {{ .root.Release.Namespace }}
{{- end }}
