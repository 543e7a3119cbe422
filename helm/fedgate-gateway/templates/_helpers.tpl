{{/* Names and labels shared by every object of the chart. */}}
{{- define "fedgate-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fedgate-gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "fedgate-gateway.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "fedgate-gateway.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fedgate-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fedgate-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fedgate-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "fedgate-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: gateway
app.kubernetes.io/part-of: fedgate
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "fedgate-gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Several gateways need the PostgreSQL store: SQLite is one writer's file. */}}
{{- define "fedgate-gateway.postgres" -}}
{{- if eq .Values.store.type "postgresql" -}}true{{- end -}}
{{- end -}}

{{/* Where standbys send clients: the mTLS Service, which only the leader is ready behind. */}}
{{- define "fedgate-gateway.advertise" -}}
{{- default (printf "%s.%s.svc:%d" (include "fedgate-gateway.fullname" .) .Release.Namespace (int .Values.ports.mtls)) .Values.advertise -}}
{{- end -}}

{{/* The gateway's config file (kind: Gateway), built from values; the store URL of PostgreSQL is added at start
from its Secret, so no password is ever in a ConfigMap. */}}
{{- define "fedgate-gateway.config" -}}
apiVersion: fedgate.io/v1
kind: Gateway
federation: {{ .Values.federation | quote }}
listen: {{ printf "0.0.0.0:%d" (int .Values.ports.mtls) | quote }}
public_listen: {{ printf "0.0.0.0:%d" (int .Values.ports.public) | quote }}
advertise: {{ include "fedgate-gateway.advertise" . | quote }}
tls: {ca: /etc/fedgate/tls/ca.pem, cert: /etc/fedgate/tls/cert.pem, key: /etc/fedgate/tls/key.pem}
authority: /etc/fedgate/authority
audit_checkpoint: /var/lib/fedgate/audit-checkpoint.json
policy: /etc/fedgate/config/federation.yaml
catalogue: /etc/fedgate/config/accelerators.yaml
{{- if not (include "fedgate-gateway.postgres" .) }}
store: sqlite:////var/lib/fedgate/gateway.db
{{- end }}
{{- if .Values.metrics.enabled }}
metrics_listen: {{ printf "0.0.0.0:%d" (int .Values.metrics.port) | quote }}
{{- end }}
{{- if .Values.statusPage.enabled }}
status_listen: {{ printf "0.0.0.0:%d" (int .Values.statusPage.port) | quote }}
{{- end }}
{{- with .Values.config }}
{{ toYaml . }}
{{- end }}
{{- end -}}
