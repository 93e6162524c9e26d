{{- /* The Secret the services and Redis read: its name, its generated values, and the checksum that rolls pods when what it is made of changes. */ -}}

{{/* Name of the Secret with the token secret, admin token and Redis password: secrets.existingSecret or the generated one. */}}
{{- define "storefront.secretName" -}}
{{- default (include "storefront.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* True ("true") when the chart generates the Secret. */}}
{{- define "storefront.createSecret" -}}
{{- if not .Values.secrets.existingSecret }}true{{ end -}}
{{- end -}}

{{/* A value of the generated Secret, base64: the one already in the cluster (kept across upgrades), else a new random one; takes (dict "context" $ "key" "admin-token" "length" 40). */}}
{{- define "storefront.secretValue" -}}
{{- $existing := lookup "v1" "Secret" (include "storefront.namespace" .context) (include "storefront.secretName" .context) -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- index $existing.data .key -}}
{{- else -}}
{{- randAlphaNum (int .length) | b64enc -}}
{{- end -}}
{{- end -}}

{{/* What the pods' Secrets are made of (names, keys, the external URL; not the generated random values, which lookup keeps): its hash is the checksum/secret pod annotation. */}}
{{- define "storefront.secretChecksum" -}}
{{- /* The externalRedis keys of a managed cluster or Sentinel setup count only there: other pods keep the checksum (and so stay) they had before those keys existed. */ -}}
{{- $external := pick .Values.externalRedis "url" "existingSecret" "existingSecretUrlKey" "port" -}}
{{- if and (not .Values.redis.enabled) (ne .Values.externalRedis.architecture "standalone") -}}
{{- $external = .Values.externalRedis -}}
{{- end -}}
{{- $parts := dict "secrets" .Values.secrets "redis" .Values.redis.enabled "externalRedis" $external -}}
{{- if include "storefront.redis.sentinelMode" . -}}
{{- $_ := set $parts "sentinel" true -}}
{{- else if include "storefront.redis.clusterMode" . -}}
{{- $_ := set $parts "cluster" true -}}
{{- $_ := set $parts "secrets" (merge (dict "keys" (omit .Values.secrets.keys "sentinelPassword")) (omit .Values.secrets "keys")) -}}
{{- else -}}
{{- /* The Sentinel password's key matters only in sentinel mode: leave standalone pods' checksum (and so the pods) as they were before the key existed. */ -}}
{{- $_ := set $parts "secrets" (merge (dict "keys" (omit .Values.secrets.keys "sentinelPassword")) (omit .Values.secrets "keys")) -}}
{{- end -}}
{{- $parts | toJson | sha256sum -}}
{{- end -}}
