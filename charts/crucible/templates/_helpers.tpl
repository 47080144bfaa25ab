{{- define "crucible.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "crucible.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "crucible.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "crucible.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: crucible
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{ include "crucible.selectorLabels" . }}
{{- end -}}

{{- define "crucible.selectorLabels" -}}
app.kubernetes.io/name: {{ include "crucible.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "crucible.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "crucible.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Namespaces whose Roles, artifact claims and peering objects the chart makes (namespaced mode). */}}
{{- define "crucible.watchedNamespaces" -}}
{{- if .Values.watch.allNamespaces -}}
{{- list | toJson -}}
{{- else -}}
{{- .Values.watch.namespaces | uniq | toJson -}}
{{- end -}}
{{- end -}}

{{/* Where trainer and server pods run, and so where the artifacts claim must exist. */}}
{{- define "crucible.artifactNamespaces" -}}
{{- $namespaces := list .Release.Namespace -}}
{{- if not .Values.watch.allNamespaces -}}
{{- $namespaces = concat $namespaces .Values.watch.namespaces -}}
{{- end -}}
{{- concat $namespaces .Values.artifacts.pvc.extraNamespaces | uniq | toJson -}}
{{- end -}}

{{- define "crucible.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* An image of the pods the operator creates: (dict "root" $ "repository" "crucible-trainer" "suffix" "-cuda") */}}
{{- define "crucible.workloadImage" -}}
{{- $images := .root.Values.workloadImages -}}
{{- printf "%s%s%s:%s" $images.registry .repository (default "" .suffix) (default .root.Chart.AppVersion $images.tag) -}}
{{- end -}}
