{{/* Names and labels shared by every object of the chart. */}}
{{- define "fedgate-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fedgate-agent.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "fedgate-agent.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "fedgate-agent.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fedgate-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fedgate-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fedgate-agent.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "fedgate-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: site-agent
app.kubernetes.io/part-of: fedgate
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "fedgate-agent.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "fedgate-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fedgate-agent.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The agent's config file (kind: Agent), built from values; TLS files and the journal live on the state volume. */}}
{{- define "fedgate-agent.config" -}}
apiVersion: fedgate.io/v1
kind: Agent
site: {{ .Values.site | quote }}
gateway:
  {{- toYaml .Values.gateway | nindent 2 }}
tls: {ca: /var/lib/fedgate/tls/ca.pem, cert: /var/lib/fedgate/tls/cert.pem, key: /var/lib/fedgate/tls/key.pem}
state_dir: /var/lib/fedgate/state
backend:
  {{- toYaml .Values.backend | nindent 2 }}
pools:
  {{- toYaml .Values.pools | nindent 2 }}
{{- with .Values.policy }}
policy:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.rendezvous }}
rendezvous:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.config }}
{{ toYaml . }}
{{- end }}
{{- end -}}
