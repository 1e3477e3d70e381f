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
{{- include "amfeishu.imageRef" (dict "image" .Values.image "defaultTag" .Chart.AppVersion) }}
{{- end }}

{{/*
An image reference from {registry, repository, tag, digest}: the digest when
set, else the tag (or defaultTag).
*/}}
{{- define "amfeishu.imageRef" -}}
{{- $registry := .image.registry }}
{{- $repository := .image.repository }}
{{- $ref := ternary $repository (printf "%s/%s" $registry $repository) (empty $registry) }}
{{- if .image.digest }}
{{- printf "%s@%s" $ref .image.digest }}
{{- else }}
{{- printf "%s:%s" $ref (.image.tag | default .defaultTag | toString) }}
{{- end }}
{{- end }}

{{/*
Labels of the `helm test` Pod: the common labels with its own name, so that
no selector of the release's pods (Service, NetworkPolicy, PodDisruptionBudget)
ever picks it.
*/}}
{{- define "amfeishu.testSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-test" (include "amfeishu.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
{{- end }}

{{- define "amfeishu.testLabels" -}}
helm.sh/chart: {{ include "amfeishu.chart" . }}
{{ include "amfeishu.testSelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: amfeishu
{{- with .Values.commonLabels }}
{{ toYaml . }}
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
Where the app secrets (appSecrets) are mounted, one file per secret.
*/}}
{{- define "amfeishu.appSecretsDir" -}}
/etc/amfeishu/secrets
{{- end }}

{{/*
The app secrets of appSecrets as a JSON list, sorted (Go templates range over
map keys in order), one {section, app, field, key, value} per secret:
  * section: the config section that gets `<field>_file` (apps.<app>,
    alertmanager or alertmanager.basic_auth);
  * key: the Secret key holding it, and its file name in the mount: ours is
    the config path (apps.oncall.app_secret); with appSecrets.existingSecret,
    the key the values name;
  * value: the secret itself (empty with appSecrets.existingSecret).
*/}}
{{- define "amfeishu.appSecrets" -}}
{{- $existing := not (empty .Values.appSecrets.existingSecret) }}
{{- $out := list }}
{{- range $app, $fields := .Values.appSecrets.apps }}
{{- range $field, $value := $fields }}
{{- $section := printf "apps.%s" $app }}
{{- $key := ternary $value (printf "%s.%s" $section $field) $existing }}
{{- $out = append $out (dict "section" $section "app" $app "field" $field "key" $key "value" (ternary "" $value $existing)) }}
{{- end }}
{{- end }}
{{- with .Values.appSecrets.alertmanager.bearer_token }}
{{- $key := ternary . "alertmanager.bearer_token" $existing }}
{{- $out = append $out (dict "section" "alertmanager" "app" "" "field" "bearer_token" "key" $key "value" (ternary "" . $existing)) }}
{{- end }}
{{- with .Values.appSecrets.alertmanager.password }}
{{- $key := ternary . "alertmanager.basic_auth.password" $existing }}
{{- $out = append $out (dict "section" "alertmanager.basic_auth" "app" "" "field" "password" "key" $key "value" (ternary "" . $existing)) }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/*
The path Feishu's card callbacks come to (POST /feishu/callback/<app>): all
the callback Ingress routes.
*/}}
{{- define "amfeishu.callbackPath" -}}
/feishu/callback/
{{- end }}

{{/*
The config as amfeishu reads it: .Values.config (copied, never passed through
tpl, so `${VAR}` and any `{{` reach amfeishu verbatim) with what the chart
owns filled in:
  * templates.dir, when the chart mounts card templates;
  * storage.path, when unset, on the writable /var/lib/amfeishu volume;
  * with no targets, a preview target `default` and a catch-all route, as
    `amfeishu serve` runs without a config: it delivers nowhere and logs
    every card;
  * for each app secret (appSecrets), the `<field>_file` key naming its file,
    so the secret itself never enters config.yml.
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
{{- /* the sections exist: amfeishu.validateApps refuses a secret whose section is missing */}}
{{- range (include "amfeishu.appSecrets" . | fromJsonArray) }}
{{- $file := printf "%s/%s" (include "amfeishu.appSecretsDir" $) .key }}
{{- $section := dict }}
{{- if .app }}
{{- $section = get (get $config "apps" | default dict) .app }}
{{- else if eq .section "alertmanager" }}
{{- $section = get $config "alertmanager" }}
{{- else }}
{{- $section = get (get $config "alertmanager" | default dict) "basic_auth" }}
{{- end }}
{{- if kindIs "map" $section }}
{{- $_ := set $section (printf "%s_file" .field) $file }}
{{- end }}
{{- end }}
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
{{- include "amfeishu.validateApps" . }}
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

{{/*
Refuse app secrets and a callback Ingress that would not work: each message
names the value to change. Secrets never appear in a message, only their
names.
*/}}
{{- define "amfeishu.validateApps" -}}
{{- $secrets := .Values.appSecrets }}
{{- if and .Values.existingSecret (or $secrets.apps $secrets.alertmanager $secrets.existingSecret) }}
{{- fail (printf "appSecrets is set but so is existingSecret (%s), whose config.yml the chart does not render: keep the app secrets as more keys of Secret %s and name them in its config.yml (e.g. app_secret_file: /etc/amfeishu/config/oncall-app-secret; every key of that Secret is mounted next to config.yml), or leave appSecrets empty" .Values.existingSecret .Values.existingSecret) }}
{{- end }}
{{- $config := .Values.config | default dict }}
{{- $apps := get $config "apps" | default dict }}
{{- range $app, $fields := $secrets.apps }}
{{- if not (hasKey $apps $app) }}
{{- fail (printf "appSecrets.apps.%s: config.apps has no app %q (known: %s)" $app $app (keys $apps | sortAlpha | join ", " | default "none")) }}
{{- end }}
{{- $given := get $apps $app | default dict }}
{{- range $field, $_ := $fields }}
{{- if or (hasKey $given $field) (hasKey $given (printf "%s_file" $field)) }}
{{- fail (printf "appSecrets.apps.%s.%s: config.apps.%s sets %s already; set it in one place (appSecrets keeps it out of the config)" $app $field $app $field) }}
{{- end }}
{{- end }}
{{- end }}
{{- with $secrets.alertmanager }}
{{- $alertmanager := get $config "alertmanager" }}
{{- if not $alertmanager }}
{{- fail "appSecrets.alertmanager: config.alertmanager is not set (its url, where card buttons create silences)" }}
{{- end }}
{{- if and .bearer_token (or (hasKey $alertmanager "bearer_token") (hasKey $alertmanager "bearer_token_file")) }}
{{- fail "appSecrets.alertmanager.bearer_token: config.alertmanager sets bearer_token already; set it in one place" }}
{{- end }}
{{- if .password }}
{{- $basic := get $alertmanager "basic_auth" | default dict }}
{{- if not (get $basic "username") }}
{{- fail "appSecrets.alertmanager.password: set config.alertmanager.basic_auth.username too" }}
{{- end }}
{{- if or (hasKey $basic "password") (hasKey $basic "password_file") }}
{{- fail "appSecrets.alertmanager.password: config.alertmanager.basic_auth sets password already; set it in one place" }}
{{- end }}
{{- end }}
{{- end }}
{{- if $secrets.existingSecret }}
{{- range (include "amfeishu.appSecrets" . | fromJsonArray) }}
{{- if not (regexMatch "^[-._a-zA-Z0-9]{1,253}$" .key) }}
{{- fail (printf "appSecrets: with existingSecret the value of %s.%s is the key of Secret %s holding it, and a Secret key is letters, digits, '-', '_', '.'" .section .field $secrets.existingSecret) }}
{{- end }}
{{- end }}
{{- end }}
{{- $callback := .Values.feishuCallback.ingress }}
{{- if and $callback.enabled .Values.networkPolicy.enabled .Values.networkPolicy.ingressFrom (not $callback.controllerFrom) }}
{{- fail "feishuCallback.ingress.enabled with networkPolicy.ingressFrom: set feishuCallback.ingress.controllerFrom to the ingress controller's pods (e.g. [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}}]), or the NetworkPolicy blocks Feishu's callbacks" }}
{{- end }}
{{- end }}
