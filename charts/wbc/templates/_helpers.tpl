{{/*
The chart's name.
*/}}
{{- define "wbc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name, at most 63 characters. If the release name contains the chart name,
it is used alone.
*/}}
{{- define "wbc.fullname" -}}
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
Name of one component's resources, "<fullname>-<component>", at most 52 characters with the component
intact: a StatefulSet's name goes into its pods' controller-revision-hash label (name plus 11
characters, at most 63). (dict "ctx" $ "component" "redis")
*/}}
{{- define "wbc.componentName" -}}
{{- $room := int (sub 51 (len .component)) }}
{{- printf "%s-%s" (include "wbc.fullname" .ctx | trunc $room | trimSuffix "-") .component }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "wbc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "wbc.labels" -}}
helm.sh/chart: {{ include "wbc.chart" . }}
{{ include "wbc.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels of every workload.
*/}}
{{- define "wbc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wbc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the controller's ServiceAccount.
*/}}
{{- define "wbc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wbc.componentName" (dict "ctx" . "component" "controller")) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Labels of one component's resources: (dict "ctx" $ "component" "api").
*/}}
{{- define "wbc.componentLabels" -}}
{{ include "wbc.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Selector labels of one component: (dict "ctx" $ "component" "api").
*/}}
{{- define "wbc.componentSelectorLabels" -}}
{{ include "wbc.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The label the controller's default target selector needs besides app.kubernetes.io/instance: only the
API and worker carry it, so that the controller never rolls itself or the databases.
*/}}
{{- define "wbc.pipelineLabels" -}}
app.kubernetes.io/part-of: wbc
{{- end }}

{{/*
An image reference from {repository, tag}.
*/}}
{{- define "wbc.image" -}}
{{- printf "%s:%s" .repository (toString .tag) }}
{{- end }}

{{/*
Name of the WriteBehindCache of this release, and of the ConfigMap the controller renders from it.
*/}}
{{- define "wbc.cacheName" -}}
{{- .Release.Name }}
{{- end }}

{{- define "wbc.configMapName" -}}
{{- printf "%s-config" (include "wbc.cacheName" .) }}
{{- end }}

{{/*
In-cluster DNS name of a Service of this release: (dict "ctx" $ "service" "redis").
*/}}
{{- define "wbc.serviceHost" -}}
{{- printf "%s.%s.svc.%s" (include "wbc.componentName" (dict "ctx" .ctx "component" .service)) .ctx.Release.Namespace .ctx.Values.clusterDomain }}
{{- end }}

{{/*
The environment of the API and worker that does not come from the WriteBehindCache: connections,
logs and traces. (dict "ctx" $ "component" .Values.api)
*/}}
{{- define "wbc.commonEnv" -}}
{{- $ := .ctx -}}
{{ include "wbc.connectionEnv" $ | trim }}
- name: DATABASE_MAX_CONNECTIONS
  value: {{ .component.databaseMaxConnections | quote }}
- name: LOG_FORMAT
  value: {{ $.Values.logFormat | quote }}
- name: RUST_LOG
  value: {{ $.Values.logLevel | quote }}
{{- with include "wbc.otlpEndpoint" $ }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .component.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The OTLP endpoint: the value, else the bundled Jaeger's collector, else none.
*/}}
{{- define "wbc.otlpEndpoint" -}}
{{- if .Values.tracing.otlpEndpoint }}
{{- .Values.tracing.otlpEndpoint }}
{{- else if .Values.jaeger.enabled }}
{{- printf "http://%s-jaeger-collector.%s.svc.%s:4318" .Release.Name .Release.Namespace .Values.clusterDomain }}
{{- end }}
{{- end }}

{{/*
The ConfigMap the API and worker read their pipeline settings from, rendered by the controller.
*/}}
{{- define "wbc.pipelineEnvFrom" -}}
- configMapRef:
    name: {{ include "wbc.configMapName" . }}
    optional: {{ not .Values.cache.waitForConfig }}
{{- end }}

{{/*
A password kept across upgrades: the one in the live Secret if there is one, else the value, else a new
random one. (dict "ctx" $ "secret" "name" "key" "password" "value" "")
*/}}
{{- define "wbc.password" -}}
{{- $live := lookup "v1" "Secret" .ctx.Release.Namespace .secret }}
{{- if and $live $live.data (hasKey $live.data .key) (not .value) }}
{{- index $live.data .key | b64dec }}
{{- else }}
{{- default (randAlphaNum 32) .value }}
{{- end }}
{{- end }}

{{/*
The apiVersion of PodDisruptionBudgets: policy/v1 from Kubernetes 1.21, policy/v1beta1 before.
*/}}
{{- define "wbc.pdbApiVersion" -}}
{{- if and (.Capabilities.APIVersions.Has "policy/v1") (semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version) -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end }}
{{- end }}

{{/*
Whether the cluster serves the Prometheus operator's resources.
*/}}
{{- define "wbc.hasPrometheusOperator" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- end }}

{{/*
Probes of an HTTP endpoint on a named port: (dict "port" "http").
*/}}
{{- define "wbc.httpProbes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end }}

{{/*
"true" while the cluster does not serve WriteBehindCache yet (a first install): the chart's cache is then a
post-install hook (writebehindcache.yaml), which the pre-delete hook (controller/uninstall-hook.yaml) deletes.
*/}}
{{- define "wbc.cacheIsHook" -}}
{{ not (.Capabilities.APIVersions.Has "wbc.dev/v1alpha1/WriteBehindCache") }}
{{- end }}
