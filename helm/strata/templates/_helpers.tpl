{{/* Names, labels and the pod pieces every component shares. */}}

{{- define "strata.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "strata.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels of everything the chart makes; component in .component. */}}
{{- define "strata.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "strata.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "strata.selectorLabels" -}}
app.kubernetes.io/name: {{ include "strata.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "strata.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret holding the bucket.yml. */}}
{{- define "strata.objstoreSecret" -}}
{{- if .Values.objstore.existingSecret -}}
{{- .Values.objstore.existingSecret -}}
{{- else -}}
{{- printf "%s-objstore" (include "strata.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The ServiceAccount a component's pods run as. */}}
{{- define "strata.serviceAccountName" -}}
{{- $own := (dig "serviceAccount" "name" "" (default dict .values)) -}}
{{- if $own -}}
{{- $own -}}
{{- else if .root.Values.serviceAccount.create -}}
{{- include "strata.componentName" (dict "root" .root "component" (default .component .serviceAccountComponent)) -}}
{{- else -}}
default
{{- end -}}
{{- end -}}

{{/* <fullname>-<component>, at most .max characters (63; StatefulSets 52, since their pods'
revision label adds 11): a name that would be cut gets a hash of the whole name as its
suffix, so two long names never collide once truncated. */}}
{{- define "strata.componentName" -}}
{{- $name := printf "%s-%s" (include "strata.fullname" .root) .component -}}
{{- $max := int (default 63 .max) -}}
{{- if gt (len $name) $max -}}
{{- printf "%s-%s" ($name | trunc (int (sub $max 9)) | trimSuffix "-") ($name | sha256sum | trunc 8) -}}
{{- else -}}
{{- $name -}}
{{- end -}}
{{- end -}}

{{/* Pod-level settings: service account, security context, pull secrets, scheduling.
.values: the component's values. */}}
{{- define "strata.podSpecCommon" -}}
serviceAccountName: {{ include "strata.serviceAccountName" . }}
automountServiceAccountToken: {{ .root.Values.serviceAccount.automountServiceAccountToken }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Container settings shared by every component: image, ports, probes on the HTTP address. */}}
{{- define "strata.containerCommon" -}}
image: {{ include "strata.image" .root }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
securityContext:
  {{- toYaml .root.Values.containerSecurityContext | nindent 2 }}
ports:
  - name: http
    containerPort: 10902
    protocol: TCP
{{- if .grpc }}
  - name: grpc
    containerPort: 10901
    protocol: TCP
{{- end }}
livenessProbe:
  httpGet:
    path: /-/healthy
    port: http
  initialDelaySeconds: 10
  periodSeconds: 30
  timeoutSeconds: 5
  failureThreshold: 4
readinessProbe:
  httpGet:
    path: /-/ready
    port: http
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 3
{{- with .values.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* --grpc-server-tls-* flags for a component's .values.grpcServerTls. */}}
{{- define "strata.grpcServerTlsArgs" -}}
{{- if .enabled }}
- --grpc-server-tls-cert=/etc/strata/grpc-tls/tls.crt
- --grpc-server-tls-key=/etc/strata/grpc-tls/tls.key
{{- if .clientAuth }}
- --grpc-server-tls-client-ca=/etc/strata/grpc-tls/ca.crt
{{- end }}
- --grpc-server-tls-min-version={{ .minVersion }}
{{- end }}
{{- end -}}

{{/* A ServiceMonitor for the Service named .name (component .component). */}}
{{- define "strata.serviceMonitor" -}}
{{- if .root.Values.serviceMonitor.enabled }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "strata.labels" . | nindent 4 }}
    {{- with .root.Values.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "strata.selectorLabels" . | nindent 6 }}
  namespaceSelector:
    matchNames:
      - {{ .root.Release.Namespace }}
  endpoints:
    - port: http
      path: /metrics
      interval: {{ .root.Values.serviceMonitor.interval }}
      scrapeTimeout: {{ .root.Values.serviceMonitor.scrapeTimeout }}
      relabelings:
        # One job per kind of component, as the shipped alerts and dashboards select it.
        - action: replace
          targetLabel: job
          replacement: {{ include "strata.job" . }}
{{- end }}
{{- end -}}

{{/* The job label of .component's metrics: <fullname>-compact, -query, -query-frontend,
-store, -sidecar, -sidecar-query, and -observee-query for every observee querier (Thanos'
names, which the mixin's default selectors follow). */}}
{{- define "strata.job" -}}
{{- $kinds := dict "compactor" "compact" "store-gateway" "store" "query" "query" "query-frontend" "query-frontend" "sidecar" "sidecar" "sidecar-query" "sidecar-query" -}}
{{- $kind := .component -}}
{{- if hasKey $kinds $kind -}}
{{- $kind = get $kinds $kind -}}
{{- else if hasPrefix "compactor-" $kind -}}
{{- $kind = printf "compact-%s" (trimPrefix "compactor-" $kind) -}}
{{- else if hasPrefix "query-" $kind -}}
{{- $kind = "observee-query" -}}
{{- end -}}
{{- printf "%s-%s" (include "strata.fullname" .root) $kind -}}
{{- end -}}

{{/* The job regex the shipped rules and dashboards select for .kind (compact, query,
queryFrontend, sidecar, store): mixin.jobs.<kind> if set, else the ServiceMonitors' job. */}}
{{- define "strata.jobSelector" -}}
{{- $override := get .root.Values.mixin.jobs .kind -}}
{{- if $override -}}
{{- $override -}}
{{- else if eq .kind "query" -}}
{{- printf "%s-((observee|sidecar)-)?query" (include "strata.fullname" .root) -}}
{{- else if eq .kind "compact" -}}
{{- printf "%s-compact(-.+)?" (include "strata.fullname" .root) -}}
{{- else -}}
{{- include "strata.job" (dict "root" .root "component" (get (dict "compact" "compactor" "queryFrontend" "query-frontend" "sidecar" "sidecar" "store" "store-gateway") .kind)) -}}
{{- end -}}
{{- end -}}

{{/* Text of a generated mixin file with its __STRATA_JOB_*__ placeholders replaced. */}}
{{- define "strata.mixinFile" -}}
{{- $text := .root.Files.Get .path -}}
{{- range $kind, $placeholder := dict "compact" "COMPACT" "query" "QUERY" "queryFrontend" "QUERY_FRONTEND" "sidecar" "SIDECAR" "store" "STORE" -}}
{{- $text = replace (printf "__STRATA_JOB_%s__" $placeholder) (include "strata.jobSelector" (dict "root" $.root "kind" $kind)) $text -}}
{{- end -}}
{{- $text -}}
{{- end -}}

{{/* A PodDisruptionBudget for the pods of .component when .pdb.enabled. */}}
{{- define "strata.pdb" -}}
{{- if .pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "strata.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "strata.selectorLabels" . | nindent 6 }}
      {{- with .extraSelector }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
{{- end }}
{{- end -}}

{{/* The buckets store gateways serve: the chart's objstore, or storeGateway.buckets. */}}
{{- define "strata.storeBuckets" -}}
{{- $buckets := list -}}
{{- if .Values.storeGateway.buckets -}}
{{- range .Values.storeGateway.buckets -}}
{{- $buckets = append $buckets (dict "name" .name "secret" .existingSecret "key" (default "objstore.yml" .key)) -}}
{{- end -}}
{{- else -}}
{{- $buckets = append $buckets (dict "name" "" "secret" (include "strata.objstoreSecret" .) "key" .Values.objstore.key) -}}
{{- end -}}
{{- toJson $buckets -}}
{{- end -}}

{{/* Name of the store gateway StatefulSet for bucket .bucket, shard .shard. */}}
{{- define "strata.storeName" -}}
{{- if .bucket -}}
{{- include "strata.componentName" (dict "root" .root "component" (printf "store-%s-%d" .bucket (int .shard)) "max" 52) -}}
{{- else -}}
{{- include "strata.componentName" (dict "root" .root "component" (printf "store-%d" (int .shard)) "max" 52) -}}
{{- end -}}
{{- end -}}

{{/* Every Store API endpoint the main querier fans out to, one per line. */}}
{{- define "strata.queryEndpoints" -}}
{{- $root := . -}}
{{- $ns := .Release.Namespace -}}
{{- $domain := .Values.clusterDomain -}}
{{- if .Values.storeGateway.enabled -}}
{{- $tls := .Values.storeGateway.grpcServerTls -}}
{{- $sd := list -}}
{{- range $b := include "strata.storeBuckets" $root | fromJsonArray -}}
{{- range $i := until (int $root.Values.storeGateway.shards) -}}
{{- $host := printf "%s.%s.svc.%s" (include "strata.storeName" (dict "root" $root "bucket" $b.name "shard" $i)) $ns $domain -}}
{{- if $tls.enabled -}}
{{- $t := dict "enabled" true "ca_file" "/etc/strata/store-client-tls/ca.crt" -}}
{{- if $tls.clientAuth -}}
{{- $_ := set $t "cert_file" "/etc/strata/store-client-tls/tls.crt" -}}
{{- $_ := set $t "key_file" "/etc/strata/store-client-tls/tls.key" -}}
{{- end -}}
{{- $sd = append $sd (dict "address" (printf "dns+%s:10901" $host) "client_config" (dict "server_name" (default $host $tls.serverName) "tls_config" $t)) -}}
{{- else }}
- --endpoint=dns+{{ $host }}:10901
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $sd }}
{{- /* TLS store gateways: Thanos' endpoint config gives them client TLS and their
server name, while other endpoints keep the plain --grpc-client settings. */}}
- --endpoint.sd-config={{ dict "endpoints" $sd | toJson }}
{{- end -}}
{{- end -}}
{{- range .Values.observees }}
- --endpoint=dns+{{ include "strata.componentName" (dict "root" $root "component" (printf "query-%s" .name)) }}.{{ $ns }}.svc.{{ $domain }}:10901
{{- end -}}
{{- if .Values.sidecar.enabled }}
- --endpoint=dns+{{ include "strata.componentName" (dict "root" $root "component" "sidecar") }}.{{ $ns }}.svc.{{ $domain }}:{{ .Values.sidecar.grpcPort }}
{{- end -}}
{{- range .Values.query.extraEndpoints }}
- --endpoint={{ . }}
{{- end -}}
{{- end -}}

{{/* The chart's memcached, as the components reach it: every pod behind the headless
Service. */}}
{{- define "strata.memcachedAddress" -}}
{{- printf "dns+%s.%s.svc.%s:11211" (include "strata.componentName" (dict "root" . "component" "memcached")) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* A cache config in Thanos' format from the chart's values (.cache: type, inMemory,
memcached; .what names it in errors): only the chosen type's settings, MEMCACHED addresses
defaulting to the chart's memcached. */}}
{{- define "strata.cacheConfig" -}}
{{- $c := .cache -}}
{{- if eq $c.type "MEMCACHED" -}}
{{- $m := deepCopy $c.memcached -}}
{{- if not $m.addresses -}}
{{- if .root.Values.memcached.enabled -}}
{{- $_ := set $m "addresses" (list (include "strata.memcachedAddress" .root)) -}}
{{- else -}}
{{- fail (printf "%s: type MEMCACHED needs memcached.addresses or memcached.enabled=true" .what) -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "type" "MEMCACHED" "config" $m) -}}
{{- else -}}
{{- toJson (dict "type" "IN-MEMORY" "config" (default dict $c.inMemory)) -}}
{{- end -}}
{{- end -}}
