{{/* The chart's name, or nameOverride. */}}
{{- define "apprelease-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every object: the release name when it already contains the chart's name (so
`helm install apprelease-operator` names them as manifests/ does), else "<release>-<name>".
*/}}
{{- define "apprelease-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "apprelease-operator.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "apprelease-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "apprelease-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "apprelease-operator.labels" -}}
{{ include "apprelease-operator.selectorLabels" . }}
app.kubernetes.io/part-of: apprelease
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/*
What the operator does, and nothing more — the rules of manifests/rbac.yaml, where each is
explained (operator/tests/chart.rs checks that they are the same). Used by the ClusterRole,
or by the Role of the watched namespace.
*/}}
{{- define "apprelease-operator.rules" -}}
- apiGroups: ["apprelease.io"]
  resources: ["appreleases"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["apprelease.io"]
  resources: ["appreleases/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["apprelease.io"]
  resources: ["appreleasebackups", "appreleaserestores"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apprelease.io"]
  resources: ["appreleasebackups/status", "appreleaserestores/status"]
  verbs: ["get", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["apps"]
  resources: ["statefulsets/scale"]
  verbs: ["patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
