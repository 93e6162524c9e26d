{{- /* Where Redis is: the in-cluster Redis (redis.*) and a managed one (externalRedis.*). */ -}}

{{/* Host name of the in-cluster Redis (its client Service). */}}
{{- define "storefront.redis.host" -}}
{{- printf "%s.%s.svc" (include "storefront.componentName" (dict "context" . "component" "redis")) (include "storefront.namespace" .) -}}
{{- end -}}

{{/* REDIS_URL of the in-cluster Redis, with the password as the dependent env var $(REDIS_PASSWORD) (Kubernetes expands it; the value holds no secret). */}}
{{- define "storefront.redis.url" -}}
{{- printf "redis://:$(REDIS_PASSWORD)@%s:6379/0" (include "storefront.redis.host" .) -}}
{{- end -}}

{{/* "true" when the in-cluster Redis runs in sentinel mode (redis.architecture=sentinel). */}}
{{- define "storefront.redis.sentinelMode" -}}
{{- if and .Values.redis.enabled (eq .Values.redis.architecture "sentinel") }}true{{ end -}}
{{- end -}}

{{/* "true" when the in-cluster Redis is a Redis Cluster (redis.architecture=cluster). */}}
{{- define "storefront.redis.clusterMode" -}}
{{- if and .Values.redis.enabled (eq .Values.redis.architecture "cluster") }}true{{ end -}}
{{- end -}}

{{/* Name of Redis' headless Service, the StatefulSet's governing Service (pod DNS names). */}}
{{- define "storefront.redis.headlessName" -}}
{{- printf "%s-headless" (include "storefront.componentName" (dict "context" . "component" "redis")) -}}
{{- end -}}

{{/* The DNS domain of Redis' pods: `<headless>.<namespace>.svc.<clusterDomain>`. */}}
{{- define "storefront.redis.podDomain" -}}
{{- printf "%s.%s.svc.%s" (include "storefront.redis.headlessName" .) (include "storefront.namespace" .) .Values.clusterDomain -}}
{{- end -}}

{{/* REDIS_SENTINELS: `host:port` of every Redis pod's Sentinel by its stable DNS name, comma-separated. */}}
{{- define "storefront.redis.sentinels" -}}
{{- $statefulSet := include "storefront.componentName" (dict "context" . "component" "redis") -}}
{{- $domain := include "storefront.redis.podDomain" . -}}
{{- $sentinels := list -}}
{{- range $ordinal := until (int .Values.redis.sentinel.replicas) -}}
{{- $sentinels = append $sentinels (printf "%s-%d.%s:%d" $statefulSet $ordinal $domain (int $.Values.redis.sentinel.port)) -}}
{{- end -}}
{{- join "," $sentinels -}}
{{- end -}}

{{/* REDIS_CLUSTER_NODES of the in-cluster cluster: `host:6379` of every pod by its stable DNS name, comma-separated. */}}
{{- define "storefront.redis.clusterNodes" -}}
{{- $statefulSet := include "storefront.componentName" (dict "context" . "component" "redis") -}}
{{- $domain := include "storefront.redis.podDomain" . -}}
{{- $nodes := list -}}
{{- range $ordinal := until (int .Values.redis.cluster.nodes) -}}
{{- $nodes = append $nodes (printf "%s-%d.%s:6379" $statefulSet $ordinal $domain) -}}
{{- end -}}
{{- join "," $nodes -}}
{{- end -}}

{{/* "true" when the services use a managed Redis of externalRedis.architecture $arch; takes (dict "context" $ "architecture" "cluster"). */}}
{{- define "storefront.externalRedis.is" -}}
{{- if and (not .context.Values.redis.enabled) (eq .context.Values.externalRedis.architecture .architecture) }}true{{ end -}}
{{- end -}}

{{/* Name of the Secret holding the external Redis URL: externalRedis.existingSecret or the one made from externalRedis.url. */}}
{{- define "storefront.externalRedis.secretName" -}}
{{- if .Values.externalRedis.existingSecret -}}
{{- .Values.externalRedis.existingSecret -}}
{{- else -}}
{{- printf "%s-external-redis" (include "storefront.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Key of the URL in the external Redis Secret. */}}
{{- define "storefront.externalRedis.secretKey" -}}
{{- if .Values.externalRedis.existingSecret -}}
{{- .Values.externalRedis.existingSecretUrlKey -}}
{{- else -}}
redis-url
{{- end -}}
{{- end -}}

{{/* The managed Redis' ports for the services' NetworkPolicy egress rule: externalRedis.port and, in cluster and sentinel architectures, every port of the seed nodes or Sentinels. */}}
{{- define "storefront.externalRedis.egressPorts" -}}
{{- $external := .Values.externalRedis -}}
{{- $ports := list (int $external.port) -}}
{{- $addresses := list -}}
{{- if eq $external.architecture "cluster" -}}
{{- $addresses = $external.cluster.nodes -}}
{{- else if eq $external.architecture "sentinel" -}}
{{- $addresses = $external.sentinel.sentinels -}}
{{- end -}}
{{- range $addresses -}}
{{- $ports = append $ports (regexFind "[0-9]+$" . | int) -}}
{{- end -}}
{{- $rules := list -}}
{{- range $ports | uniq -}}
{{- $rules = append $rules (dict "port" . "protocol" "TCP") -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}

{{/* Where the services find the CA certificate of externalRedis.tls.caSecret. */}}
{{- define "storefront.externalRedis.caFile" -}}
/etc/storefront/redis-tls/{{ .Values.externalRedis.tls.caSecretKey }}
{{- end -}}
