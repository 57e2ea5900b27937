{{/*
The stores, Redis and PostgreSQL: their password Secrets, and how the API and worker reach them
(addresses in the environment; passwords, URLs and certificates as files of mounted Secrets).
*/}}

{{/*
Redis: the Secret holding its password ("" when there is none), and the key in it.
*/}}
{{- define "wbc.redis.passwordSecret" -}}
{{- if .Values.redis.enabled }}
{{- if .Values.redis.auth.enabled }}
{{- default (include "wbc.componentName" (dict "ctx" . "component" "redis")) .Values.redis.auth.existingSecret }}
{{- end }}
{{- else if .Values.externalRedis.existingSecretPasswordKey }}
{{- .Values.externalRedis.existingSecret }}
{{- end }}
{{- end }}

{{- define "wbc.redis.passwordKey" -}}
{{- if .Values.redis.enabled }}
{{- if .Values.redis.auth.existingSecret }}{{ .Values.redis.auth.existingSecretPasswordKey }}{{ else }}password{{ end }}
{{- else }}
{{- .Values.externalRedis.existingSecretPasswordKey }}
{{- end }}
{{- end }}

{{/*
PostgreSQL: the Secret holding the password ("" when there is none), and the key in it.
*/}}
{{- define "wbc.postgresql.passwordSecret" -}}
{{- if .Values.postgresql.enabled }}
{{- default (include "wbc.componentName" (dict "ctx" . "component" "postgresql")) .Values.postgresql.auth.existingSecret }}
{{- else if and .Values.externalPostgresql.existingSecret .Values.externalPostgresql.existingSecretPasswordKey (not .Values.externalPostgresql.existingSecretUrlKey) }}
{{- .Values.externalPostgresql.existingSecret }}
{{- end }}
{{- end }}

{{- define "wbc.postgresql.passwordKey" -}}
{{- if .Values.postgresql.enabled }}
{{- if .Values.postgresql.auth.existingSecret }}{{ .Values.postgresql.auth.existingSecretPasswordKey }}{{ else }}password{{ end }}
{{- else }}
{{- .Values.externalPostgresql.existingSecretPasswordKey }}
{{- end }}
{{- end }}

{{/*
Where the API and worker find the credentials and certificates of the stores: one read-only projected
volume of Secret keys, so that no credential passes through the environment.
*/}}
{{- define "wbc.storeFilesDir" -}}
/etc/wbc/stores
{{- end }}

{{/*
The files of the stores that the API and worker read, as YAML `files: [{env, secret, key, path}]`:
env names the *_FILE variable given the file's path, secret and key where the file comes from. The
variables and the volume both derive from this one list.
*/}}
{{- define "wbc.storeFiles" -}}
files:
{{- $r := .Values.externalRedis }}
{{- if and (not .Values.redis.enabled) $r.existingSecretUrlKey }}
  - {env: REDIS_URL_FILE, secret: {{ $r.existingSecret | quote }}, key: {{ $r.existingSecretUrlKey | quote }}, path: redis-url}
{{- else if include "wbc.redis.passwordSecret" . }}
  - {env: REDIS_PASSWORD_FILE, secret: {{ include "wbc.redis.passwordSecret" . | quote }}, key: {{ include "wbc.redis.passwordKey" . | quote }}, path: redis-password}
{{- end }}
{{- if not .Values.redis.enabled }}
{{- with $r.caSecret }}
  - {env: REDIS_CA_FILE, secret: {{ . | quote }}, key: ca.crt, path: redis-ca.crt}
{{- end }}
{{- with $r.clientCertSecret }}
  - {env: REDIS_CLIENT_CERT_FILE, secret: {{ . | quote }}, key: tls.crt, path: redis-client.crt}
  - {env: REDIS_CLIENT_KEY_FILE, secret: {{ . | quote }}, key: tls.key, path: redis-client.key}
{{- end }}
{{- end }}
{{- $p := .Values.externalPostgresql }}
{{- if and (not .Values.postgresql.enabled) $p.existingSecretUrlKey }}
  - {env: DATABASE_URL_FILE, secret: {{ $p.existingSecret | quote }}, key: {{ $p.existingSecretUrlKey | quote }}, path: database-url}
{{- else if include "wbc.postgresql.passwordSecret" . }}
  - {env: DATABASE_PASSWORD_FILE, secret: {{ include "wbc.postgresql.passwordSecret" . | quote }}, key: {{ include "wbc.postgresql.passwordKey" . | quote }}, path: database-password}
{{- end }}
{{- if not .Values.postgresql.enabled }}
{{- with $p.caSecret }}
  - {env: DATABASE_CA_FILE, secret: {{ . | quote }}, key: ca.crt, path: database-ca.crt}
{{- end }}
{{- with $p.clientCertSecret }}
  - {env: DATABASE_CLIENT_CERT_FILE, secret: {{ . | quote }}, key: tls.crt, path: database-client.crt}
  - {env: DATABASE_CLIENT_KEY_FILE, secret: {{ . | quote }}, key: tls.key, path: database-client.key}
{{- end }}
{{- end }}
{{- end }}

{{/*
The connection settings of the API and worker: REDIS_URL and DATABASE_URL without credentials, and
the *_FILE variables of the mounted passwords, URLs and certificates (the binaries put a password into
its URL themselves, percent-encoded, so it may hold any character).
*/}}
{{- define "wbc.connectionEnv" -}}
{{- if not (and (not .Values.redis.enabled) .Values.externalRedis.existingSecretUrlKey) }}
{{- $r := .Values.externalRedis }}
{{- $scheme := ternary "rediss" "redis" (and (not .Values.redis.enabled) $r.tls) }}
{{- $user := "" }}
{{- if and (not .Values.redis.enabled) $r.username }}{{ $user = printf "%s@" $r.username }}{{ end }}
{{- $host := ternary (include "wbc.serviceHost" (dict "ctx" . "service" "redis")) $r.host .Values.redis.enabled }}
{{- $port := ternary 6379 $r.port .Values.redis.enabled }}
- name: REDIS_URL
  value: {{ printf "%s://%s%s:%v" $scheme $user $host $port | quote }}
{{- end }}
{{- if not (and (not .Values.postgresql.enabled) .Values.externalPostgresql.existingSecretUrlKey) }}
{{- $pg := .Values.externalPostgresql }}
{{- $host := $pg.host }}
{{- $port := $pg.port }}
{{- $user := $pg.username }}
{{- $database := $pg.database }}
{{- if .Values.postgresql.enabled }}
{{- $host = include "wbc.serviceHost" (dict "ctx" . "service" "postgresql") }}
{{- $port = 5432 }}
{{- $user = .Values.postgresql.auth.username }}
{{- $database = .Values.postgresql.auth.database }}
{{- end }}
{{- $query := ternary (printf "?%s" $pg.parameters) "" (and (not .Values.postgresql.enabled) (ne $pg.parameters "")) }}
- name: DATABASE_URL
  value: {{ printf "postgres://%s@%s:%v/%s%s" $user $host $port $database $query | quote }}
{{- end }}
{{- range (fromYaml (include "wbc.storeFiles" .)).files }}
- name: {{ .env }}
  value: {{ printf "%s/%s" (include "wbc.storeFilesDir" $) .path | quote }}
{{- end }}
{{- end }}

{{/*
The volume of the stores' files of the API and worker (nothing when there is none): Secret keys
projected into one read-only directory.
*/}}
{{- define "wbc.storeFilesVolume" -}}
{{- include "wbc.secretFilesVolume" (dict "name" "store-files" "files" (fromYaml (include "wbc.storeFiles" .)).files) }}
{{- end }}

{{/*
A volume `name` of Secret keys projected into one read-only directory, from a list of `files` as
wbc.storeFiles makes it (nothing when the list is empty).
*/}}
{{- define "wbc.secretFilesVolume" -}}
{{- if .files }}
- name: {{ .name }}
  projected:
    sources:
      {{- range .files }}
      - secret:
          name: {{ .secret }}
          items:
            - key: {{ .key }}
              path: {{ .path }}
      {{- end }}
{{- end }}
{{- end }}

{{- define "wbc.storeFilesMount" -}}
{{- if (fromYaml (include "wbc.storeFiles" .)).files }}
- name: store-files
  mountPath: {{ include "wbc.storeFilesDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
sha256 of the chart-managed configuration the API and worker read: their connection settings and the
passwords given in values (a generated password is stable, so it is left out). It rolls their pods when
either changes.
*/}}
{{- define "wbc.connectionChecksum" -}}
{{- $auth := dict "postgresql" .Values.postgresql.auth "redis" .Values.redis.auth }}
{{- print (include "wbc.connectionEnv" .) (include "wbc.storeFiles" .) (toJson $auth) | sha256sum }}
{{- end }}
