{{/* Chart name, or nameOverride. */}}
{{- define "storefront.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* `<release>-<chart>` (just `<release>` when it contains the chart name), or fullnameOverride; at most 40 characters so component names fit. */}}
{{- define "storefront.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of a component's resources, `<fullname>-<component>`; takes (dict "context" $ "component" "inventory"). */}}
{{- define "storefront.componentName" -}}
{{- printf "%s-%s" (include "storefront.fullname" .context) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Namespace of every resource. */}}
{{- define "storefront.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* `helm.sh/chart` label value: chart name and version. */}}
{{- define "storefront.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Standard labels of a component's resources (version: the chart's appVersion, Redis' image tag for redis); takes (dict "context" $ "component" "inventory"). */}}
{{- define "storefront.labels" -}}
{{- $ctx := .context -}}
{{- $version := $ctx.Chart.AppVersion -}}
{{- if and (eq .component "redis") $ctx.Values.redis.image.tag -}}
{{- $version = $ctx.Values.redis.image.tag -}}
{{- end -}}
helm.sh/chart: {{ include "storefront.chart" $ctx }}
{{ include "storefront.selectorLabels" . }}
app.kubernetes.io/version: {{ $version | toString | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: storefront
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels that select a component's pods (Services, PDBs, NetworkPolicies, spread constraints); takes (dict "context" $ "component" "inventory"). */}}
{{- define "storefront.selectorLabels" -}}
app.kubernetes.io/name: {{ include "storefront.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* commonAnnotations merged with a resource's own annotations; takes (dict "context" $ "annotations" $map); empty when there are none. */}}
{{- define "storefront.annotations" -}}
{{- $all := merge (dict) (default (dict) .annotations) (default (dict) .context.Values.commonAnnotations) -}}
{{- if $all }}
{{- toYaml $all }}
{{- end -}}
{{- end -}}

{{/* Labels of a metrics object (ServiceMonitor, PrometheusRule, dashboard ConfigMap): the standard labels, with extra ones (e.g. release: kube-prometheus-stack for its selectors) merged over them; takes (dict "context" $ "component" "inventory" "labels" $extra). */}}
{{- define "storefront.metrics.labels" -}}
{{- $standard := include "storefront.labels" (dict "context" .context "component" .component) | fromYaml -}}
{{- toYaml (merge (dict) (default (dict) .labels) $standard) -}}
{{- end -}}

{{/* Namespace of a metrics object: its own override (e.g. the monitoring namespace), else the release's; takes (dict "context" $ "namespace" $override). */}}
{{- define "storefront.metrics.namespace" -}}
{{- default (include "storefront.namespace" .context) .namespace -}}
{{- end -}}

{{/* The job label the shipped rules and dashboard select (job=~"storefront-.+"): storefront-<component>, whatever the release is called; takes the component. */}}
{{- define "storefront.metrics.job" -}}
{{- printf "storefront-%s" . -}}
{{- end -}}

{{/* Label that lets a pod reach the services when networkPolicy.allowExternal is false. */}}
{{- define "storefront.clientLabel" -}}
{{ include "storefront.fullname" . }}-client: "true"
{{- end -}}

{{/* URL of a service (inventory or checkout) by its Service's name and port, as the load generator reaches it; takes (dict "context" $ "component" "inventory"). */}}
{{- define "storefront.loadgenerator.url" -}}
{{- printf "http://%s:%v" (include "storefront.componentName" .) (index .context.Values .component).service.port -}}
{{- end -}}

{{/* Name of a component's ServiceAccount; takes (dict "context" $ "component" "inventory"). */}}
{{- define "storefront.serviceAccountName" -}}
{{- $sa := (index .context.Values .component).serviceAccount -}}
{{- if $sa.create -}}
{{- default (include "storefront.componentName" .) $sa.name -}}
{{- else -}}
{{- default "default" $sa.name -}}
{{- end -}}
{{- end -}}

{{/* Full image reference `[registry/]repository(@digest|:tag)`; takes (dict "image" $imageValues "context" $); the tag defaults to the chart's appVersion. */}}
{{- define "storefront.image" -}}
{{- $repository := .image.repository -}}
{{- if .image.registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" .image.registry) .image.repository -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .context.Chart.AppVersion .image.tag | toString) -}}
{{- end -}}
{{- end -}}

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

{{/* Environment of inventory and checkout that comes from Secrets (never plain values): REDIS_URL (or, in sentinel mode, REDIS_PASSWORD and REDIS_SENTINEL_PASSWORD), CART_TOKEN_SECRET, ADMIN_TOKEN. */}}
{{- define "storefront.secretEnv" -}}
{{- $secret := include "storefront.secretName" . -}}
{{- if include "storefront.redis.sentinelMode" . }}
{{- /* Sentinel mode: the services ask REDIS_SENTINELS (in the ConfigMap) for the master. */}}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secrets.keys.redisPassword }}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secrets.keys.sentinelPassword }}
{{- else if .Values.redis.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secrets.keys.redisPassword }}
- name: REDIS_URL
  value: {{ include "storefront.redis.url" . | quote }}
{{- else }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "storefront.externalRedis.secretName" . }}
      key: {{ include "storefront.externalRedis.secretKey" . }}
{{- end }}
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

{{/* What the pods' Secrets are made of (names, keys, the external URL; not the generated random values, which lookup keeps): its hash is the checksum/secret pod annotation. */}}
{{- define "storefront.secretChecksum" -}}
{{- $parts := dict "secrets" .Values.secrets "redis" .Values.redis.enabled "externalRedis" .Values.externalRedis -}}
{{- if include "storefront.redis.sentinelMode" . -}}
{{- $_ := set $parts "sentinel" true -}}
{{- else -}}
{{- /* The Sentinel password's key matters only in sentinel mode: leave standalone pods' checksum (and so the pods) as they were before the key existed. */ -}}
{{- $_ := set $parts "secrets" (merge (dict "keys" (omit .Values.secrets.keys "sentinelPassword")) (omit .Values.secrets "keys")) -}}
{{- end -}}
{{- $parts | toJson | sha256sum -}}
{{- end -}}

{{/* Fails the render with every VALUES VALIDATION message at once, naming the key and the fix. */}}
{{- define "storefront.validateValues" -}}
{{- $messages := list -}}
{{- $messages = append $messages (include "storefront.validateValues.redis" .) -}}
{{- $messages = append $messages (include "storefront.validateValues.sentinel" .) -}}
{{- $messages = append $messages (include "storefront.validateValues.minReplicas" .) -}}
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

{{/* Validation: exactly one Redis (in-cluster, or external by URL or Secret). */}}
{{- define "storefront.validateValues.redis" -}}
{{- $external := or .Values.externalRedis.url .Values.externalRedis.existingSecret -}}
{{- if and (not .Values.redis.enabled) (not $external) -}}
storefront: redis.enabled
    redis.enabled is false but no external Redis is set. Either run Redis in the cluster
    (--set redis.enabled=true) or name a managed one
    (--set externalRedis.url=rediss://:PASSWORD@HOST:6380/0, or
    --set externalRedis.existingSecret=SECRET_WITH_THE_URL).
{{- else if and .Values.redis.enabled $external -}}
storefront: externalRedis
    externalRedis is set but so is redis.enabled, which runs Redis in the cluster. To use
    the external Redis: --set redis.enabled=false
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

{{/* "true" when a value is neither missing (null) nor "" (0 is set). */}}
{{- define "storefront.isSet" -}}
{{- if not (or (kindIs "invalid" .) (eq (toString .) "")) }}true{{ end -}}
{{- end -}}

{{/* Warnings printed by NOTES.txt. */}}
{{- define "storefront.warnings" -}}
{{- $warnings := list -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.url (hasPrefix "redis://" .Values.externalRedis.url) -}}
{{- $warnings = append $warnings "externalRedis.url uses redis:// (no TLS): the password and the carts cross the network in clear text. Use rediss:// if your Redis offers TLS." -}}
{{- end -}}
{{- if and (include "storefront.redis.sentinelMode" .) (not .Values.redis.persistence.enabled) -}}
{{- $warnings = append $warnings "redis.persistence.enabled is false: a master pod replaced before the Sentinels deem it down (redis.sentinel.downAfterMilliseconds) comes back empty, still the master, and its replicas copy the empty data set." -}}
{{- else if and .Values.redis.enabled (not .Values.redis.persistence.enabled) -}}
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
