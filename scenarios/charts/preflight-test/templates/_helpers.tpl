{{/*
Chart name.
*/}}
{{- define "preflight-test.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name. Deliberately just the release name so that object
names are predictable: <release>-web, <release>-db, ... (no truncation;
keep release names short).
*/}}
{{- define "preflight-test.fullname" -}}
{{- .Release.Name }}
{{- end }}

{{/*
Chart label value.
*/}}
{{- define "preflight-test.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels. Usage:
  {{ include "preflight-test.selectorLabels" (dict "ctx" . "component" "web") }}
*/}}
{{- define "preflight-test.selectorLabels" -}}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Common labels. Usage:
  {{ include "preflight-test.labels" (dict "ctx" . "component" "web") }}
*/}}
{{- define "preflight-test.labels" -}}
app.kubernetes.io/name: {{ include "preflight-test.name" .ctx }}
{{ include "preflight-test.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ include "preflight-test.chart" .ctx }}
{{- end }}
