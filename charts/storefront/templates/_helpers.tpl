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
{{- range $ports | uniq }}
- port: {{ . }}
  protocol: TCP
{{- end -}}
{{- end -}}

{{/* Where the services find the CA certificate of externalRedis.tls.caSecret. */}}
{{- define "storefront.externalRedis.caFile" -}}
/etc/storefront/redis-tls/{{ .Values.externalRedis.tls.caSecretKey }}
{{- end -}}

{{/* "true" when the services use a managed Redis of externalRedis.architecture $arch; takes (dict "context" $ "architecture" "cluster"). */}}
{{- define "storefront.externalRedis.is" -}}
{{- if and (not .context.Values.redis.enabled) (eq .context.Values.externalRedis.architecture .architecture) }}true{{ end -}}
{{- end -}}

{{/* Non-secret Redis settings of the services (their ConfigMap): REDIS_SENTINELS and REDIS_SENTINEL_MASTER with Sentinels, REDIS_CLUSTER_NODES with a cluster (in-cluster or managed), and for a managed cluster or Sentinel setup with TLS, REDIS_URL as rediss:// (cartlib takes only TLS and its CA file from it there). */}}
{{- define "storefront.redis.configEnv" -}}
{{- $external := .Values.externalRedis -}}
{{- if include "storefront.redis.sentinelMode" . }}
REDIS_SENTINELS: {{ include "storefront.redis.sentinels" . | quote }}
REDIS_SENTINEL_MASTER: {{ .Values.redis.sentinel.masterSet | quote }}
{{- else if include "storefront.redis.clusterMode" . }}
REDIS_CLUSTER_NODES: {{ include "storefront.redis.clusterNodes" . | quote }}
{{- else if include "storefront.externalRedis.is" (dict "context" . "architecture" "cluster") }}
REDIS_CLUSTER_NODES: {{ join "," $external.cluster.nodes | quote }}
{{- else if include "storefront.externalRedis.is" (dict "context" . "architecture" "sentinel") }}
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

{{/* The CA volume of externalRedis.tls.caSecret for the services' pods, when set (storefront.redis.volumeMounts mounts it). */}}
{{- define "storefront.redis.volumes" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.tls.caSecret }}
- name: redis-tls
  secret:
    secretName: {{ .Values.externalRedis.tls.caSecret }}
    items:
      - key: {{ .Values.externalRedis.tls.caSecretKey }}
        path: {{ .Values.externalRedis.tls.caSecretKey }}
{{- end }}
{{- end -}}

{{/* Mount of storefront.redis.volumes in the services' containers. */}}
{{- define "storefront.redis.volumeMounts" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.tls.caSecret }}
- name: redis-tls
  mountPath: /etc/storefront/redis-tls
  readOnly: true
{{- end }}
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

{{/* Redis environment of inventory and checkout that comes from Secrets (never plain values): REDIS_URL (standalone), or REDIS_PASSWORD (and REDIS_SENTINEL_PASSWORD with Sentinels) beside the ConfigMap's storefront.redis.configEnv. */}}
{{- define "storefront.redis.secretEnv" -}}
{{- $secret := include "storefront.secretName" . -}}
{{- $external := .Values.externalRedis -}}
{{- $externalSecret := include "storefront.externalRedis.secretName" . -}}
{{- if or (include "storefront.redis.sentinelMode" .) (include "storefront.redis.clusterMode" .) }}
{{- /* Sentinel mode: the services ask REDIS_SENTINELS (in the ConfigMap) for the master; cluster mode: the nodes of REDIS_CLUSTER_NODES. */}}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secrets.keys.redisPassword }}
{{- if include "storefront.redis.sentinelMode" . }}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secrets.keys.sentinelPassword }}
{{- end }}
{{- else if .Values.redis.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secrets.keys.redisPassword }}
- name: REDIS_URL
  value: {{ include "storefront.redis.url" . | quote }}
{{- else if eq $external.architecture "standalone" }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $externalSecret }}
      key: {{ include "storefront.externalRedis.secretKey" . }}
{{- else }}
{{- if or $external.existingSecret $external.password }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $externalSecret }}
      key: {{ ternary $external.existingSecretPasswordKey "redis-password" (ne $external.existingSecret "") }}
{{- end }}
{{- if and (eq $external.architecture "sentinel") $external.existingSecret }}
{{- /* Optional: Sentinels without a password have no such key. */}}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $externalSecret }}
      key: {{ $external.existingSecretSentinelPasswordKey }}
      optional: true
{{- else if and (eq $external.architecture "sentinel") $external.sentinel.password }}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $externalSecret }}
      key: sentinel-password
{{- end }}
{{- end }}
{{- end -}}

{{/* Environment of inventory and checkout that comes from Secrets (never plain values): storefront.redis.secretEnv, CART_TOKEN_SECRET, ADMIN_TOKEN. */}}
{{- define "storefront.secretEnv" -}}
{{- $secret := include "storefront.secretName" . -}}
{{- include "storefront.redis.secretEnv" . }}
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
