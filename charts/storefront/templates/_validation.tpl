{{- /* Checks of the values beyond values.schema.json: the errors that fail the render (storefront.validateValues) and the warnings NOTES.txt prints. */ -}}

{{/* Fails the render with every VALUES VALIDATION message at once, naming the key and the fix. */}}
{{- define "storefront.validateValues" -}}
{{- $messages := list -}}
{{- $messages = append $messages (include "storefront.validateValues.redis" .) -}}
{{- $messages = append $messages (include "storefront.validateValues.sentinel" .) -}}
{{- $messages = append $messages (include "storefront.validateValues.minReplicas" .) -}}
{{- $messages = append $messages (include "storefront.validateValues.cluster" .) -}}
{{- range $component := list "inventory" "checkout" -}}
{{- $messages = append $messages (include "storefront.validateValues.autoscaling" (dict "context" $ "component" $component)) -}}
{{- end -}}
{{- range $component := list "inventory" "checkout" "redis" -}}
{{- $messages = append $messages (include "storefront.validateValues.pdb" (dict "context" $ "component" $component)) -}}
{{- end -}}
{{- $messages = without $messages "" -}}
{{- if $messages -}}
{{- printf "\nVALUES VALIDATION:\n%s" (join "\n" $messages) | fail -}}
{{- end -}}
{{- end -}}

{{/* Validation: exactly one Redis (in-cluster, or external by URL or Secret, seed nodes or Sentinels). */}}
{{- define "storefront.validateValues.redis" -}}
{{- $ext := .Values.externalRedis -}}
{{- $external := or $ext.url $ext.existingSecret $ext.password $ext.cluster.nodes $ext.sentinel.sentinels $ext.sentinel.password $ext.tls.enabled $ext.tls.caSecret (ne $ext.architecture "standalone") -}}
{{- if and .Values.redis.enabled $external -}}
storefront: externalRedis
    externalRedis is set but so is redis.enabled, which runs Redis in the cluster. To use
    the external Redis: --set redis.enabled=false
{{- else if .Values.redis.enabled -}}
{{- else if and (eq $ext.architecture "standalone") (not (or $ext.url $ext.existingSecret)) -}}
storefront: redis.enabled
    redis.enabled is false but no external Redis is set. Either run Redis in the cluster
    (--set redis.enabled=true) or name a managed one
    (--set externalRedis.url=rediss://:PASSWORD@HOST:6380/0, or
    --set externalRedis.existingSecret=SECRET_WITH_THE_URL, or a cluster:
    --set externalRedis.architecture=cluster --set externalRedis.cluster.nodes={HOST:PORT}).
{{- else if and (eq $ext.architecture "cluster") (not $ext.cluster.nodes) -}}
storefront: externalRedis.cluster.nodes
    externalRedis.architecture is cluster but no seed node is set:
    --set externalRedis.cluster.nodes={clustercfg.example.com:6379}
{{- else if and (eq $ext.architecture "sentinel") (not $ext.sentinel.sentinels) -}}
storefront: externalRedis.sentinel.sentinels
    externalRedis.architecture is sentinel but no Sentinel is set:
    --set externalRedis.sentinel.sentinels={sentinel-0.example.com:26379,sentinel-1.example.com:26379}
{{- else if and (eq $ext.architecture "standalone") (or $ext.password $ext.cluster.nodes $ext.sentinel.sentinels $ext.tls.enabled) -}}
storefront: externalRedis.architecture
    externalRedis.architecture is standalone, which takes everything (password, TLS) from
    externalRedis.url; the password, seed nodes, Sentinels and tls.enabled are for cluster or
    sentinel: --set externalRedis.architecture=cluster (or sentinel)
{{- else if and (ne $ext.architecture "standalone") $ext.url -}}
storefront: externalRedis.url
    externalRedis.url is for architecture standalone; a {{ $ext.architecture }} takes
    externalRedis.password (or externalRedis.existingSecret) and tls.enabled instead.
{{- else if and $ext.tls.caSecret (ne $ext.architecture "standalone") (not $ext.tls.enabled) -}}
storefront: externalRedis.tls.caSecret
    externalRedis.tls.caSecret is set but TLS is off: --set externalRedis.tls.enabled=true
{{- end -}}
{{- end -}}

{{/* Validation: in sentinel mode, the quorum is a number of the Sentinels there are (the schema keeps it >= 1 and the replicas >= 3). */}}
{{- define "storefront.validateValues.sentinel" -}}
{{- $sentinel := .Values.redis.sentinel -}}
{{- if and (include "storefront.redis.sentinelMode" .) (gt (int $sentinel.quorum) (int $sentinel.replicas)) -}}
storefront: redis.sentinel.quorum
    redis.sentinel.quorum ({{ $sentinel.quorum }}) is above redis.sentinel.replicas ({{ $sentinel.replicas }}):
    no failover could ever be agreed. A majority is usual:
    --set redis.sentinel.quorum={{ add1 (div (int $sentinel.replicas) 2) }}
{{- end -}}
{{- end -}}

{{/* Validation: in sentinel mode, min-replicas-to-write is a number of replicas a master can have. */}}
{{- define "storefront.validateValues.minReplicas" -}}
{{- $sentinel := .Values.redis.sentinel -}}
{{- if and (include "storefront.redis.sentinelMode" .) (ge (int $sentinel.minReplicasToWrite) (int $sentinel.replicas)) -}}
storefront: redis.sentinel.minReplicasToWrite
    redis.sentinel.minReplicasToWrite ({{ $sentinel.minReplicasToWrite }}) is not below redis.sentinel.replicas ({{ $sentinel.replicas }}):
    a master has at most {{ sub (int $sentinel.replicas) 1 }} replicas, so it would refuse every write:
    --set redis.sentinel.minReplicasToWrite=1
{{- end -}}
{{- end -}}

{{/* Validation: in cluster mode, at least three masters, each with redis.cluster.replicas replicas. */}}
{{- define "storefront.validateValues.cluster" -}}
{{- $cluster := .Values.redis.cluster -}}
{{- $group := add1 (int $cluster.replicas) -}}
{{- if and (include "storefront.redis.clusterMode" .) (or (lt (int $cluster.nodes) (mul 3 $group)) (ne (mod (int $cluster.nodes) $group) 0)) -}}
storefront: redis.cluster.nodes
    redis.cluster.nodes ({{ $cluster.nodes }}) must be a multiple of redis.cluster.replicas + 1 ({{ $group }})
    and give at least 3 masters (a cluster needs a majority of masters to fail one over):
    --set redis.cluster.nodes={{ mul 3 $group }}
{{- end -}}
{{- end -}}

{{/* Validation: an autoscaler's minReplicas is at most its maxReplicas; takes (dict "context" $ "component" "inventory"). */}}
{{- define "storefront.validateValues.autoscaling" -}}
{{- $hpa := (index .context.Values .component).autoscaling -}}
{{- if and $hpa.enabled (gt (int $hpa.minReplicas) (int $hpa.maxReplicas)) -}}
storefront: {{ .component }}.autoscaling.minReplicas
    {{ .component }}.autoscaling.minReplicas ({{ $hpa.minReplicas }}) is above maxReplicas ({{ $hpa.maxReplicas }}):
    --set {{ .component }}.autoscaling.maxReplicas={{ $hpa.minReplicas }}
{{- end -}}
{{- end -}}

{{/* Validation: a PodDisruptionBudget sets minAvailable or maxUnavailable, not both; takes (dict "context" $ "component" "inventory"). */}}
{{- define "storefront.validateValues.pdb" -}}
{{- $pdb := (index .context.Values .component).pdb -}}
{{- if and $pdb.create (include "storefront.isSet" $pdb.minAvailable) (include "storefront.isSet" $pdb.maxUnavailable) -}}
storefront: {{ .component }}.pdb
    {{ .component }}.pdb sets both minAvailable and maxUnavailable; a PodDisruptionBudget takes one:
    --set {{ .component }}.pdb.maxUnavailable="" (or --set {{ .component }}.pdb.minAvailable="")
{{- end -}}
{{- end -}}

{{/* Warnings printed by NOTES.txt. */}}
{{- define "storefront.warnings" -}}
{{- $warnings := list -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.url (hasPrefix "redis://" .Values.externalRedis.url) -}}
{{- $warnings = append $warnings "externalRedis.url uses redis:// (no TLS): the password and the carts cross the network in clear text. Use rediss:// if your Redis offers TLS." -}}
{{- end -}}
{{- if and (not .Values.redis.enabled) (ne .Values.externalRedis.architecture "standalone") (not .Values.externalRedis.tls.enabled) -}}
{{- $warnings = append $warnings (printf "externalRedis.tls.enabled is false: the password and the carts cross the network to the managed %s in clear text. Set it to true if your Redis offers TLS." .Values.externalRedis.architecture) -}}
{{- end -}}
{{- if and (include "storefront.redis.clusterMode" .) (not .Values.redis.persistence.enabled) -}}
{{- $warnings = append $warnings "redis.persistence.enabled is false: a replaced Redis pod comes back as an empty node outside the cluster (its replica has taken its slots over); the next helm upgrade adds it back as a replica." -}}
{{- end -}}
{{- if and (include "storefront.redis.sentinelMode" .) (not .Values.redis.persistence.enabled) -}}
{{- $warnings = append $warnings "redis.persistence.enabled is false: a master pod replaced before the Sentinels deem it down (redis.sentinel.downAfterMilliseconds) comes back empty, still the master, and its replicas copy the empty data set." -}}
{{- else if and .Values.redis.enabled (not .Values.redis.persistence.enabled) (not (include "storefront.redis.clusterMode" .)) -}}
{{- $warnings = append $warnings "redis.persistence.enabled is false: carts, stock and orders are lost whenever the Redis pod is replaced." -}}
{{- end -}}
{{- range $component := list "inventory" "checkout" -}}
{{- $values := index $.Values $component -}}
{{- if and (not $values.autoscaling.enabled) (lt (int $values.replicaCount) 2) -}}
{{- $warnings = append $warnings (printf "%s.replicaCount is %d: the service is down while its only pod restarts." $component (int $values.replicaCount)) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.networkPolicy.enabled -}}
{{- $warnings = append $warnings "networkPolicy.enabled is false: any pod in the cluster can reach inventory and checkout (Redis is still restricted)." -}}
{{- end -}}
{{- $policy := .Values.networkPolicy -}}
{{- $scraped := or .Values.metrics.serviceMonitor.enabled .Values.metrics.scrapeAnnotations.enabled -}}
{{- $metricsRule := or $policy.metrics.namespaceSelector $policy.metrics.podSelector -}}
{{- if and $policy.enabled (not $policy.allowExternal) $scraped (not $metricsRule) (not $policy.extraIngress) -}}
{{- $warnings = append $warnings "the services' NetworkPolicies admit only labelled clients (networkPolicy.allowExternal=false), so Prometheus cannot scrape them: set networkPolicy.metrics.namespaceSelector and podSelector to Prometheus' namespace and pods." -}}
{{- end -}}
{{- range $warnings }}
WARNING: {{ . }}
{{- end -}}
{{- end -}}
