{{/*
Names, labels and the pieces every workload shares. The hardened security contexts
live here once, so that no Pod of the chart can be written without them.
*/}}

{{- define "folio.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "folio.fullname" -}}
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

{{/* A component's resource name: FULLNAME-COMPONENT, e.g. folio-operator. */}}
{{- define "folio.componentName" -}}
{{- printf "%s-%s" (include "folio.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "folio.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "folio.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: folio
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one component; call with (dict "root" $ "component" "operator"). */}}
{{- define "folio.componentLabels" -}}
{{ include "folio.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "folio.selectorLabels" -}}
app.kubernetes.io/name: {{ include "folio.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "folio.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "folio.chromiumImage" -}}
{{- $image := .Values.renderer.chromiumImage }}
{{- $tag := printf "%s-chromium" (default .Chart.AppVersion .Values.image.tag) }}
{{- printf "%s:%s" (default .Values.image.repository $image.repository) (default $tag $image.tag) }}
{{- end }}

{{- define "folio.minioImage" -}}
{{- printf "%s:%s" .Values.minio.image.repository .Values.minio.image.tag }}
{{- end }}

{{/* Pod-level security context: non-root (the image's numeric user), RuntimeDefault seccomp. */}}
{{- define "folio.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
{{- if .fsGroup }}
fsGroup: {{ .uid }}
fsGroupChangePolicy: OnRootMismatch
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container security context: read-only root, no privilege escalation, no capabilities. */}}
{{- define "folio.containerSecurityContext" -}}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Spread a component's replicas over nodes unless the user gave an affinity. */}}
{{- define "folio.affinity" -}}
{{- if .affinity }}
{{- toYaml .affinity }}
{{- else -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "folio.selectorLabels" . | nindent 12 }}
{{- end }}
{{- end }}

{{/* The S3 endpoint: the bundled MinIO by its namespace-qualified name (renderer Pods
in other namespaces upload to it), or the external one. */}}
{{- define "folio.s3Endpoint" -}}
{{- if .Values.minio.enabled }}
{{- printf "http://%s.%s.svc:9000" (include "folio.componentName" (dict "root" . "component" "minio")) .Release.Namespace }}
{{- else }}
{{- required "s3.endpoint is required when minio.enabled is false" .Values.s3.endpoint }}
{{- end }}
{{- end }}

{{/* The Secret holding accessKey and secretKey. */}}
{{- define "folio.s3Secret" -}}
{{- if .Values.minio.enabled }}
{{- default (include "folio.componentName" (dict "root" . "component" "minio")) .Values.minio.existingSecret }}
{{- else }}
{{- required "s3.existingSecret is required when minio.enabled is false" .Values.s3.existingSecret }}
{{- end }}
{{- end }}

{{/* S3 settings shared by the operator and the API. */}}
{{- define "folio.s3Env" -}}
- name: FOLIO_S3_ENDPOINT
  value: {{ include "folio.s3Endpoint" . | quote }}
- name: FOLIO_S3_BUCKET
  value: {{ .Values.s3.bucket | quote }}
{{- with .Values.s3.publicEndpoint }}
- name: FOLIO_S3_PUBLIC_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: FOLIO_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "folio.s3Secret" . }}
      key: accessKey
- name: FOLIO_S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "folio.s3Secret" . }}
      key: secretKey
{{- end }}
