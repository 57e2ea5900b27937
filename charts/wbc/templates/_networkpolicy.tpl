{{/*
Helpers of the NetworkPolicies (templates/networkpolicy). The README's "Network policies" lists what they
allow; tests/chart/test_network_policies.py checks it with network-config-analyzer.
*/}}

{{/*
The header of one component's NetworkPolicy, named "<fullname>-<component>" and selecting the
component's pods: (dict "ctx" $ "component" "api").
*/}}
{{- define "wbc.np.header" -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "wbc.componentName" . }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "wbc.componentLabels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "wbc.componentSelectorLabels" . | nindent 6 }}
{{- end }}

{{/*
A peer: the pods of one component of this release, in its namespace: (dict "ctx" $ "component" "api").
*/}}
{{- define "wbc.np.peer" -}}
- podSelector:
    matchLabels:
      {{- include "wbc.componentSelectorLabels" . | nindent 6 }}
{{- end }}

{{/*
The peers that may scrape /metrics: pods of the namespaces networkPolicy.metrics names, and the bundled
kube-prometheus-stack's Prometheus. Empty when there are none: the caller then renders no rule, since a
rule without peers would admit every source.
*/}}
{{- define "wbc.np.scrapers" -}}
{{- $metrics := .Values.networkPolicy.metrics }}
{{- range $metrics.namespaces }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ . | quote }}
  podSelector:
    {{- with $metrics.podLabels }}
    matchLabels:
      {{- toYaml . | nindent 6 }}
    {{- else }} {}
    {{- end }}
{{- end }}
{{- if (index .Values "kube-prometheus-stack").enabled }}
- podSelector:
    matchLabels:
      app.kubernetes.io/name: prometheus
{{- end }}
{{- end }}

{{/*
The ingress of a policy: one rule on a named port from the peers given as YAML text, or none when there
are no peers: (dict "port" "metrics" "peers" (include "wbc.np.scrapers" $)).
*/}}
{{- define "wbc.np.ingressFrom" -}}
{{- if trim .peers }}
ingress:
  - from:
      {{- .peers | trim | nindent 6 }}
    ports:
      - protocol: TCP
        port: {{ .port }}
{{- else }}
ingress: []
{{- end }}
{{- end }}

{{/*
The port of the OTLP endpoint the API and worker send traces to (the URL's, else its scheme's), or nothing
when they send none.
*/}}
{{- define "wbc.np.otlpPort" -}}
{{- with include "wbc.otlpEndpoint" . }}
{{- $url := urlParse . }}
{{- /* the host's trailing ":port" (an IPv6 address in brackets has colons of its own) */}}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" }}
{{- if $port }}{{ $port }}{{ else if eq $url.scheme "https" }}443{{ else }}80{{ end }}
{{- end }}
{{- end }}

{{/*
The egress rules of the API and worker: their Redis and PostgreSQL (the release's pods, or an external
store's port at any address), the OTLP collector's port, and networkPolicy.extraEgress.
*/}}
{{- define "wbc.np.pipelineEgress" -}}
{{- $ := . }}
{{- range $store := list (dict "component" "redis" "enabled" .Values.redis.enabled "port" 6379 "externalPort" .Values.externalRedis.port)
                         (dict "component" "postgresql" "enabled" .Values.postgresql.enabled "port" 5432 "externalPort" .Values.externalPostgresql.port) }}
{{- if $store.enabled }}
- to:
    {{- include "wbc.np.peer" (dict "ctx" $ "component" $store.component) | nindent 4 }}
  ports:
    - protocol: TCP
      port: {{ $store.port }}
{{- else }}
- ports:
    - protocol: TCP
      port: {{ $store.externalPort }}
{{- end }}
{{- end }}
{{- with include "wbc.np.otlpPort" . }}
- ports:
    - protocol: TCP
      port: {{ . }}
{{- end }}
{{- with .Values.networkPolicy.extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The egress rule to the Kubernetes API server (networkPolicy.kubeApiServer), for the controller and the
pre-delete hook that deletes the chart's cache.
*/}}
{{- define "wbc.np.kubeApiServerEgress" -}}
{{- $api := .Values.networkPolicy.kubeApiServer }}
- to:
    {{- range $api.cidrs }}
    - ipBlock:
        cidr: {{ . | quote }}
    {{- end }}
  ports:
    {{- range $api.ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- end }}
