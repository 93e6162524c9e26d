{{- /*
Helpers of the services (inventory and checkout), for the templates in app/. configEnv and
podAnnotations take (dict "context" $ "component" "inventory") and read
.Values.<component>; the others take the root context: both services get the same.
*/ -}}

{{/* The ConfigMap's data of a service (and so what checksum/config hashes): HOST, PORT, WEB_CONCURRENCY, config.* as CONFIG_NAME, and storefront.app.redisConfigEnv. */}}
{{- define "storefront.app.configEnv" -}}
{{- $values := index .context.Values .component -}}
HOST: "0.0.0.0"
PORT: {{ $values.containerPort | toString | quote }}
WEB_CONCURRENCY: {{ $values.webConcurrency | toString | quote }}
{{- range $key, $value := .context.Values.config }}
{{ $key | snakecase | upper }}: {{ $value | toString | quote }}
{{- end }}
{{- with include "storefront.app.redisConfigEnv" .context | trim }}
{{ . }}
{{- end }}
{{- end -}}

{{/* Where Redis is, for the ConfigMap: REDIS_SENTINELS and REDIS_SENTINEL_MASTER with Sentinels, REDIS_CLUSTER_NODES with a cluster (in-cluster or managed), and for a managed cluster or Sentinel setup with TLS, REDIS_URL as rediss:// (cartlib takes only TLS and its CA file from it there); empty for a standalone Redis, whose URL is in storefront.app.redisSecretEnv. */}}
{{- define "storefront.app.redisConfigEnv" -}}
{{- $external := .Values.externalRedis -}}
{{- if include "storefront.redis.sentinelMode" . -}}
REDIS_SENTINELS: {{ include "storefront.redis.sentinels" . | quote }}
REDIS_SENTINEL_MASTER: {{ .Values.redis.sentinel.masterSet | quote }}
{{- else if include "storefront.redis.clusterMode" . -}}
REDIS_CLUSTER_NODES: {{ include "storefront.redis.clusterNodes" . | quote }}
{{- else if include "storefront.externalRedis.is" (dict "context" . "architecture" "cluster") -}}
REDIS_CLUSTER_NODES: {{ join "," $external.cluster.nodes | quote }}
{{- else if include "storefront.externalRedis.is" (dict "context" . "architecture" "sentinel") -}}
REDIS_SENTINELS: {{ join "," $external.sentinel.sentinels | quote }}
REDIS_SENTINEL_MASTER: {{ $external.sentinel.masterSet | quote }}
{{- end }}
{{- if and (not .Values.redis.enabled) (ne $external.architecture "standalone") $external.tls.enabled }}
{{- /* The host is not used: the seeds or the Sentinels say where the servers are. */}}
{{- $query := "" }}
{{- if $external.tls.caSecret }}
{{- $query = printf "?ssl_ca_certs=%s" (include "storefront.externalRedis.caFile" .) }}
{{- end }}
REDIS_URL: {{ printf "rediss://localhost:6379/0%s" $query | quote }}
{{- end }}
{{- end -}}

{{/* The env entries of a service that come from Secrets (never plain values): storefront.app.redisSecretEnv, CART_TOKEN_SECRET, ADMIN_TOKEN. */}}
{{- define "storefront.app.secretEnv" -}}
{{- $secret := include "storefront.secretName" . -}}
{{- with include "storefront.app.redisSecretEnv" . -}}
{{ . }}
{{ end -}}
- name: CART_TOKEN_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secrets.keys.cartTokenSecret }}
{{- if .Values.secrets.adminApi }}
- name: ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secrets.keys.adminToken }}
{{- end }}
{{- end -}}

{{/* The Redis env entries of a service that come from Secrets: REDIS_PASSWORD (and REDIS_SENTINEL_PASSWORD in sentinel mode) of the in-cluster Redis, with REDIS_URL when it is standalone; else storefront.app.externalRedisSecretEnv. */}}
{{- define "storefront.app.redisSecretEnv" -}}
{{- if .Values.redis.enabled -}}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "storefront.secretName" . }}
      key: {{ .Values.secrets.keys.redisPassword }}
{{- if include "storefront.redis.sentinelMode" . }}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "storefront.secretName" . }}
      key: {{ .Values.secrets.keys.sentinelPassword }}
{{- else if not (include "storefront.redis.clusterMode" .) }}
{{- /* Standalone only: in cluster mode the ConfigMap's REDIS_CLUSTER_NODES says where the servers are. */}}
- name: REDIS_URL
  value: {{ include "storefront.redis.url" . | quote }}
{{- end }}
{{- else -}}
{{- include "storefront.app.externalRedisSecretEnv" . | trim -}}
{{- end -}}
{{- end -}}

{{/* The env entries from the external Redis' Secret: REDIS_URL (standalone), or REDIS_PASSWORD and REDIS_SENTINEL_PASSWORD (cluster, sentinel) when there are passwords. */}}
{{- define "storefront.app.externalRedisSecretEnv" -}}
{{- $external := .Values.externalRedis -}}
{{- $secret := include "storefront.externalRedis.secretName" . -}}
{{- if eq $external.architecture "standalone" -}}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "storefront.externalRedis.secretKey" . }}
{{- else -}}
{{- if or $external.existingSecret $external.password }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ ternary $external.existingSecretPasswordKey "redis-password" (ne $external.existingSecret "") }}
{{- end }}
{{- if and (eq $external.architecture "sentinel") $external.existingSecret }}
{{- /* Optional: Sentinels without a password have no such key. */}}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $external.existingSecretSentinelPasswordKey }}
      optional: true
{{- else if and (eq $external.architecture "sentinel") $external.sentinel.password }}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: sentinel-password
{{- end }}
{{- end -}}
{{- end -}}

{{/* The volume with externalRedis.tls.caSecret's CA for a service's pod, when set (storefront.app.redisVolumeMounts mounts it). */}}
{{- define "storefront.app.redisVolumes" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.tls.caSecret -}}
- name: redis-tls
  secret:
    secretName: {{ .Values.externalRedis.tls.caSecret }}
    items:
      - key: {{ .Values.externalRedis.tls.caSecretKey }}
        path: {{ .Values.externalRedis.tls.caSecretKey }}
{{- end -}}
{{- end -}}

{{/* The mount of storefront.app.redisVolumes in a service's container. */}}
{{- define "storefront.app.redisVolumeMounts" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.tls.caSecret -}}
- name: redis-tls
  mountPath: /etc/storefront/redis-tls
  readOnly: true
{{- end -}}
{{- end -}}

{{/* A service's pod annotations: prometheus.io/* when metrics.scrapeAnnotations.enabled, then its podAnnotations (which win); empty when there are none. */}}
{{- define "storefront.app.podAnnotations" -}}
{{- $values := index .context.Values .component -}}
{{- $annotations := dict -}}
{{- if .context.Values.metrics.scrapeAnnotations.enabled -}}
{{- $annotations = dict "prometheus.io/scrape" "true" "prometheus.io/port" ($values.containerPort | toString) "prometheus.io/path" "/metrics" -}}
{{- end -}}
{{- $all := merge (dict) (default (dict) $values.podAnnotations) $annotations -}}
{{- if $all }}
{{- toYaml $all }}
{{- end -}}
{{- end -}}
