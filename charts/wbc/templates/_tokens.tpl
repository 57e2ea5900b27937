{{/*
The API's bearer tokens: the admin token (always) and the products token (when enabled), each from
the Secret the chart makes (a random token, kept across upgrades) or from the user's own Secret,
mounted as files; no token passes through the environment.
*/}}

{{/*
The Secret the chart makes for the tokens that have no existingSecret.
*/}}
{{- define "wbc.apiTokensSecret" -}}
{{- include "wbc.componentName" (dict "ctx" . "component" "api-tokens") }}
{{- end }}

{{- define "wbc.tokenFilesDir" -}}
/etc/wbc/tokens
{{- end }}

{{/*
The token files of the API, as YAML `files: [{env, secret, key, path}]` like wbc.storeFiles.
*/}}
{{- define "wbc.tokenFiles" -}}
files:
{{- $admin := .Values.api.adminToken }}
  - {env: ADMIN_TOKEN_FILE, secret: {{ default (include "wbc.apiTokensSecret" .) $admin.existingSecret | quote }}, key: {{ ternary $admin.existingSecretKey "admin-token" (ne $admin.existingSecret "") | quote }}, path: admin-token}
{{- $products := .Values.api.productsToken }}
{{- if $products.enabled }}
  - {env: PRODUCTS_TOKEN_FILE, secret: {{ default (include "wbc.apiTokensSecret" .) $products.existingSecret | quote }}, key: {{ ternary $products.existingSecretKey "products-token" (ne $products.existingSecret "") | quote }}, path: products-token}
{{- end }}
{{- end }}

{{- define "wbc.tokenEnv" -}}
{{- range (fromYaml (include "wbc.tokenFiles" .)).files }}
- name: {{ .env }}
  value: {{ printf "%s/%s" (include "wbc.tokenFilesDir" $) .path | quote }}
{{- end }}
{{- end }}

{{- define "wbc.tokenFilesVolume" -}}
{{- include "wbc.secretFilesVolume" (dict "name" "api-tokens" "files" (fromYaml (include "wbc.tokenFiles" .)).files) }}
{{- end }}

{{- define "wbc.tokenFilesMount" -}}
- name: api-tokens
  mountPath: {{ include "wbc.tokenFilesDir" . }}
  readOnly: true
{{- end }}
