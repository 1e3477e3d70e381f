{{/*
Expand the name of the chart.
*/}}
{{- define "amfeishu.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name, cut to 63 characters (the DNS
label limit some Kubernetes name fields have). A release name that already
contains the chart name is used as the full name.
*/}}
{{- define "amfeishu.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version as used by the chart label.
*/}}
{{- define "amfeishu.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "amfeishu.labels" -}}
helm.sh/chart: {{ include "amfeishu.chart" . }}
{{ include "amfeishu.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: amfeishu
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: never change them, a Deployment's selector is immutable.
*/}}
{{- define "amfeishu.selectorLabels" -}}
app.kubernetes.io/name: {{ include "amfeishu.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The image reference: repository, then the digest when set, else the tag
(defaulting to the chart's appVersion).
*/}}
{{- define "amfeishu.image" -}}
{{- $registry := .Values.image.registry }}
{{- $repository := .Values.image.repository }}
{{- $ref := ternary $repository (printf "%s/%s" $registry $repository) (empty $registry) }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $ref .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $ref (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/*
The name of the service account to use.
*/}}
{{- define "amfeishu.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "amfeishu.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding config.yml: the user's existingSecret or ours.
*/}}
{{- define "amfeishu.secretName" -}}
{{- .Values.existingSecret | default (include "amfeishu.fullname" .) }}
{{- end }}

{{/*
Name of the ConfigMap holding card templates, empty when there are none.
*/}}
{{- define "amfeishu.templatesConfigMap" -}}
{{- if .Values.templates.existingConfigMap }}
{{- .Values.templates.existingConfigMap }}
{{- else if .Values.templates.files }}
{{- printf "%s-templates" (include "amfeishu.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Where the card templates are mounted, and where config templates.dir points
when the chart provides templates.
*/}}
{{- define "amfeishu.templatesDir" -}}
/etc/amfeishu/templates
{{- end }}

{{/*
The config as amfeishu reads it: .Values.config (copied, never passed through
tpl, so `${VAR}` and any `{{` reach amfeishu verbatim) with what the chart
owns filled in:
  * templates.dir, when the chart mounts card templates;
  * storage.path, when unset, on the writable /var/lib/amfeishu volume;
  * with no targets, a preview target `default` and a catch-all route, as
    `amfeishu serve` runs without a config: it delivers nowhere and logs
    every card.
Rendered as YAML.
*/}}
{{- define "amfeishu.config" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- if include "amfeishu.templatesConfigMap" . }}
{{- $templates := deepCopy (get $config "templates" | default dict) }}
{{- $_ := set $templates "dir" (include "amfeishu.templatesDir" .) }}
{{- $_ := set $config "templates" $templates }}
{{- end }}
{{- $storage := deepCopy (get $config "storage" | default dict) }}
{{- if not (get $storage "path") }}
{{- $_ := set $storage "path" "/var/lib/amfeishu/outbox.db" }}
{{- end }}
{{- $_ := set $config "storage" $storage }}
{{- if not (get $config "targets") }}
{{- $_ := set $config "targets" (dict "default" dict) }}
{{- if not (get $config "routes") }}
{{- $_ := set $config "routes" (list (dict "targets" (list "default"))) }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
True (non-empty) when the replicas share state through Redis.
*/}}
{{- define "amfeishu.usesRedis" -}}
{{- if .Values.existingSecret }}
{{- if .Values.existingSecretUsesRedis }}true{{ end }}
{{- else }}
{{- $storage := (.Values.config | default dict).storage | default dict }}
{{- if or $storage.redis_url $storage.redis_url_file }}true{{ end }}
{{- end }}
{{- end }}

{{/*
Refuse settings that would silently misbehave.
*/}}
{{- define "amfeishu.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "amfeishu.usesRedis" .)) }}
{{- if .Values.existingSecret }}
{{- fail (printf "replicaCount is %d but existingSecretUsesRedis is false: replicas must share dedup and rate-limit state through Redis, or an HA Alertmanager pair's duplicates become duplicate cards and each replica spends Feishu's per-bot rate limit on its own. Put storage.redis_url in the config of Secret %s and set existingSecretUsesRedis=true, or use replicaCount=1." (int .Values.replicaCount) .Values.existingSecret) }}
{{- else }}
{{- fail (printf "replicaCount is %d but config.storage.redis_url is not set: replicas must share dedup and rate-limit state through Redis, or an HA Alertmanager pair's duplicates become duplicate cards and each replica spends Feishu's per-bot rate limit on its own. Set config.storage.redis_url (e.g. redis://redis:6379/0), or use replicaCount=1." (int .Values.replicaCount)) }}
{{- end }}
{{- end }}
{{- if and .Values.templates.files .Values.templates.existingConfigMap }}
{{- fail "set templates.files or templates.existingConfigMap, not both" }}
{{- end }}
{{- $keys := dict }}
{{- range $path, $_ := .Values.templates.files }}
{{- $key := include "amfeishu.templateKey" (include "amfeishu.templatePath" (dict "path" $path "set" $.Values.templates.set)) }}
{{- if not (regexMatch "^([A-Za-z0-9][A-Za-z0-9_.-]*/)?[A-Za-z0-9][A-Za-z0-9_.-]*\\.j2$" $path) }}
{{- fail (printf "templates.files: %q must be FILE.j2 or SET/FILE.j2 (letters, digits, '_', '.', '-')" $path) }}
{{- end }}
{{- if hasKey $keys $key }}
{{- fail (printf "templates.files: %q and %q map to the same ConfigMap key %q" (get $keys $key) $path $key) }}
{{- end }}
{{- $_ := set $keys $key $path }}
{{- end }}
{{- end }}

{{/*
A templates.files name → its path under the templates dir: SET/FILE stays,
a bare FILE goes into the set templates.set.
*/}}
{{- define "amfeishu.templatePath" -}}
{{- if contains "/" .path }}{{ .path }}{{ else }}{{ printf "%s/%s" .set .path }}{{ end }}
{{- end }}

{{/*
A template path → its ConfigMap key (keys cannot hold '/').
*/}}
{{- define "amfeishu.templateKey" -}}
{{- . | replace "/" "__" }}
{{- end }}
