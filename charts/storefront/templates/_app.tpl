{{- /*
The resources of one storefront service (inventory or checkout), shared by both: each
templates/<component>/<kind>.yaml includes one of these with
(dict "context" $ "component" "<component>"), and the component's values are
.Values.<component>.
*/ -}}

{{/* ConfigMap with the service's non-secret environment (config.* as CONFIG_NAME, HOST, PORT, WEB_CONCURRENCY; where Redis is: storefront.redis.configEnv). */}}
{{- define "storefront.app.configmap" -}}
{{- $ctx := .context -}}
{{- $values := index $ctx.Values .component -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "storefront.componentName" . }}
  namespace: {{ include "storefront.namespace" $ctx }}
  labels:
    {{- include "storefront.labels" . | nindent 4 }}
  {{- with include "storefront.annotations" (dict "context" $ctx) }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
data:
  HOST: "0.0.0.0"
  PORT: {{ $values.containerPort | toString | quote }}
  WEB_CONCURRENCY: {{ $values.webConcurrency | toString | quote }}
  {{- range $key, $value := $ctx.Values.config }}
  {{ $key | snakecase | upper }}: {{ $value | toString | quote }}
  {{- end }}
  {{- with include "storefront.redis.configEnv" $ctx }}
  {{- . | trim | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* Pod annotations of a service: prometheus.io/* when metrics.scrapeAnnotations.enabled, then its podAnnotations (which win); takes (dict "context" $ "component" "inventory"); empty when there are none. */}}
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

{{/* Deployment of the service: rolling updates that never drop below the desired pods, restricted security, probes on /healthz and /readyz. */}}
{{- define "storefront.app.deployment" -}}
{{- $ctx := .context -}}
{{- $values := index $ctx.Values .component -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "storefront.componentName" . }}
  namespace: {{ include "storefront.namespace" $ctx }}
  labels:
    {{- include "storefront.labels" . | nindent 4 }}
  {{- with include "storefront.annotations" (dict "context" $ctx) }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
spec:
  {{- if not $values.autoscaling.enabled }}
  replicas: {{ $values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: {{ $values.revisionHistoryLimit }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  selector:
    matchLabels:
      {{- include "storefront.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "storefront.labels" . | nindent 8 }}
        {{- with $values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "storefront.app.configmap" . | sha256sum }}
        checksum/secret: {{ include "storefront.secretChecksum" $ctx }}
        {{- with include "storefront.app.podAnnotations" . }}
        {{- . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "storefront.serviceAccountName" . }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with $ctx.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml $values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $values.topologySpread.enabled }}
      topologySpreadConstraints:
        {{- range $topologyKey := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
        - topologyKey: {{ $topologyKey }}
          maxSkew: {{ $values.topologySpread.maxSkew }}
          whenUnsatisfiable: {{ $values.topologySpread.whenUnsatisfiable }}
          labelSelector:
            matchLabels:
              {{- include "storefront.selectorLabels" $ | nindent 14 }}
          matchLabelKeys:
            - pod-template-hash
        {{- end }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "storefront.image" (dict "image" $values.image "context" $ctx) }}
          imagePullPolicy: {{ $values.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ $values.containerPort }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "storefront.componentName" . }}
            {{- with $values.extraEnvFrom }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          env:
            {{- include "storefront.secretEnv" $ctx | trim | nindent 12 }}
            {{- with $values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- if $values.startupProbe.enabled }}
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: {{ $values.startupProbe.periodSeconds }}
            failureThreshold: {{ $values.startupProbe.failureThreshold }}
          {{- end }}
          {{- if $values.preStopSleepSeconds }}
          # Keep serving while the endpoint removal reaches every node, then take SIGTERM.
          lifecycle:
            preStop:
              exec:
                command:
                  - python
                  - -c
                  - import time; time.sleep({{ $values.preStopSleepSeconds }})
          {{- end }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            {{- toYaml $values.livenessProbe | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            {{- toYaml $values.readinessProbe | nindent 12 }}
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with include "storefront.redis.volumeMounts" $ctx }}
            {{- . | trim | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- with include "storefront.redis.volumes" $ctx }}
        {{- . | trim | nindent 8 }}
        {{- end }}
{{- end -}}

{{/* ClusterIP Service of the service, port named http. */}}
{{- define "storefront.app.service" -}}
{{- $ctx := .context -}}
{{- $values := index $ctx.Values .component -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "storefront.componentName" . }}
  namespace: {{ include "storefront.namespace" $ctx }}
  labels:
    {{- include "storefront.labels" . | nindent 4 }}
  {{- with include "storefront.annotations" (dict "context" $ctx "annotations" $values.service.annotations) }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
spec:
  type: ClusterIP
  ports:
    - name: http
      port: {{ $values.service.port }}
      targetPort: http
      protocol: TCP
  selector:
    {{- include "storefront.selectorLabels" . | nindent 4 }}
{{- end -}}

{{/* ServiceAccount of the service, when serviceAccount.create; its token is never mounted. */}}
{{- define "storefront.app.serviceAccount" -}}
{{- $ctx := .context -}}
{{- $values := index $ctx.Values .component -}}
{{- if $values.serviceAccount.create -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "storefront.serviceAccountName" . }}
  namespace: {{ include "storefront.namespace" $ctx }}
  labels:
    {{- include "storefront.labels" . | nindent 4 }}
  {{- with include "storefront.annotations" (dict "context" $ctx "annotations" $values.serviceAccount.annotations) }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end -}}
{{- end -}}

{{/* HorizontalPodAutoscaler (autoscaling/v2) of the service, when autoscaling.enabled. */}}
{{- define "storefront.app.hpa" -}}
{{- $ctx := .context -}}
{{- $values := index $ctx.Values .component -}}
{{- if $values.autoscaling.enabled -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "storefront.componentName" . }}
  namespace: {{ include "storefront.namespace" $ctx }}
  labels:
    {{- include "storefront.labels" . | nindent 4 }}
  {{- with include "storefront.annotations" (dict "context" $ctx) }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "storefront.componentName" . }}
  minReplicas: {{ $values.autoscaling.minReplicas }}
  maxReplicas: {{ $values.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $values.autoscaling.targetCPUUtilizationPercentage }}
    {{- with $values.autoscaling.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
{{- end -}}
{{- end -}}

{{/* PodDisruptionBudget of a component (inventory, checkout or redis), when pdb.create: minAvailable if set, else maxUnavailable (default 1). */}}
{{- define "storefront.pdb" -}}
{{- $ctx := .context -}}
{{- $pdb := (index $ctx.Values .component).pdb -}}
{{- if $pdb.create -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "storefront.componentName" . }}
  namespace: {{ include "storefront.namespace" $ctx }}
  labels:
    {{- include "storefront.labels" . | nindent 4 }}
  {{- with include "storefront.annotations" (dict "context" $ctx) }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
spec:
  {{- if include "storefront.isSet" $pdb.minAvailable }}
  minAvailable: {{ $pdb.minAvailable }}
  {{- else if include "storefront.isSet" $pdb.maxUnavailable }}
  maxUnavailable: {{ $pdb.maxUnavailable }}
  {{- else }}
  maxUnavailable: 1
  {{- end }}
  selector:
    matchLabels:
      {{- include "storefront.selectorLabels" . | nindent 6 }}
{{- end -}}
{{- end -}}

{{/* NetworkPolicy of the service, when networkPolicy.enabled: ingress to its port (from anyone, or from labelled clients and the load generator); egress to Redis and DNS only. */}}
{{- define "storefront.app.networkPolicy" -}}
{{- $ctx := .context -}}
{{- $values := index $ctx.Values .component -}}
{{- $policy := $ctx.Values.networkPolicy -}}
{{- if $policy.enabled -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "storefront.componentName" . }}
  namespace: {{ include "storefront.namespace" $ctx }}
  labels:
    {{- include "storefront.labels" . | nindent 4 }}
  {{- with include "storefront.annotations" (dict "context" $ctx) }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
spec:
  podSelector:
    matchLabels:
      {{- include "storefront.selectorLabels" . | nindent 6 }}
  policyTypes:
    - Ingress
    - Egress
  ingress:
    - ports:
        - port: {{ $values.containerPort }}
          protocol: TCP
      {{- if not $policy.allowExternal }}
      from:
        - podSelector:
            matchLabels:
              {{- include "storefront.clientLabel" $ctx | nindent 14 }}
        {{- if $ctx.Values.loadgenerator.enabled }}
        # The load generator (loadgenerator.enabled).
        - podSelector:
            matchLabels:
              {{- include "storefront.selectorLabels" (dict "context" $ctx "component" "loadgenerator") | nindent 14 }}
        {{- end }}
      {{- end }}
    {{- $scraper := dict }}
    {{- with $policy.metrics.namespaceSelector }}
    {{- $_ := set $scraper "namespaceSelector" . }}
    {{- end }}
    {{- with $policy.metrics.podSelector }}
    {{- $_ := set $scraper "podSelector" . }}
    {{- end }}
    {{- if $scraper }}
    # Prometheus scraping /metrics (networkPolicy.metrics): one peer, so both selectors must match.
    - ports:
        - port: {{ $values.containerPort }}
          protocol: TCP
      from:
        {{- toYaml (list $scraper) | nindent 8 }}
    {{- end }}
    {{- with $policy.extraIngress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  egress:
    {{- if $ctx.Values.redis.enabled }}
    - to:
        - podSelector:
            matchLabels:
              {{- include "storefront.selectorLabels" (dict "context" $ctx "component" "redis") | nindent 14 }}
      ports:
        - port: 6379
          protocol: TCP
        {{- if include "storefront.redis.sentinelMode" $ctx }}
        - port: {{ $ctx.Values.redis.sentinel.port }}
          protocol: TCP
        {{- end }}
    {{- else }}
    - ports:
        {{- include "storefront.externalRedis.egressPorts" $ctx | trim | nindent 8 }}
    {{- end }}
    - ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
    {{- with $policy.extraEgress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}
{{- end -}}

{{/* ServiceMonitor of the service (Prometheus Operator), when metrics.serviceMonitor.enabled: scrapes /metrics on port http of the service's Service, and relabels job to storefront-<component> (after the operator's own job label, the Service's name, which carries the release name); namespace stays the Service's. */}}
{{- define "storefront.app.serviceMonitor" -}}
{{- $ctx := .context -}}
{{- $monitor := $ctx.Values.metrics.serviceMonitor -}}
{{- if $monitor.enabled -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "storefront.componentName" . }}
  namespace: {{ include "storefront.metrics.namespace" (dict "context" $ctx "namespace" $monitor.namespace) }}
  labels:
    {{- include "storefront.metrics.labels" (dict "context" $ctx "component" .component "labels" $monitor.labels) | nindent 4 }}
  {{- with include "storefront.annotations" (dict "context" $ctx) }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
spec:
  namespaceSelector:
    matchNames:
      - {{ include "storefront.namespace" $ctx }}
  selector:
    matchLabels:
      {{- include "storefront.selectorLabels" . | nindent 6 }}
  endpoints:
    - port: http
      path: /metrics
      scheme: http
      {{- with $monitor.interval }}
      interval: {{ . }}
      {{- end }}
      {{- with $monitor.scrapeTimeout }}
      scrapeTimeout: {{ . }}
      {{- end }}
      relabelings:
        - action: replace
          targetLabel: job
          replacement: {{ include "storefront.metrics.job" .component }}
{{- end -}}
{{- end -}}
