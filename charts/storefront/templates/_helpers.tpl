{{- /* Names, labels, annotations and images every template shares. */ -}}

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

{{/* Label that lets a pod reach the services when networkPolicy.allowExternal is false. */}}
{{- define "storefront.clientLabel" -}}
{{ include "storefront.fullname" . }}-client: "true"
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

{{/* The budget of a PodDisruptionBudget from a pdb value: `minAvailable` if set, else `maxUnavailable` (default 1); takes .Values.<component>.pdb. */}}
{{- define "storefront.disruptionBudget" -}}
{{- if include "storefront.isSet" .minAvailable -}}
minAvailable: {{ .minAvailable }}
{{- else if include "storefront.isSet" .maxUnavailable -}}
maxUnavailable: {{ .maxUnavailable }}
{{- else -}}
maxUnavailable: 1
{{- end -}}
{{- end -}}

{{/* "true" when a value is neither missing (null) nor "" (0 is set). */}}
{{- define "storefront.isSet" -}}
{{- if not (or (kindIs "invalid" .) (eq (toString .) "")) }}true{{ end -}}
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

{{/* URL of a service (inventory or checkout) by its Service's name and port, as the load generator reaches it; takes (dict "context" $ "component" "inventory"). */}}
{{- define "storefront.loadgenerator.url" -}}
{{- printf "http://%s:%v" (include "storefront.componentName" .) (index .context.Values .component).service.port -}}
{{- end -}}
