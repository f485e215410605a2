{{/* The one label every object carries (deploy/kubernetes/ carries the same). */}}
{{- define "tapir.labels" -}}
app.kubernetes.io/name: {{ .Values.name }}
{{- end }}

{{- define "tapir.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "tapir.configMapName" -}}
{{ .Values.name }}-config
{{- end }}

{{/* The healthz port, from the KubeProxyConfiguration's healthzBindAddress (HOST:PORT). */}}
{{- define "tapir.healthzPort" -}}
{{- $address := required "config.kubeProxy.healthzBindAddress is required: the probes ask /livez and /healthz there" .Values.config.kubeProxy.healthzBindAddress -}}
{{- if not (regexMatch ":[0-9]+$" $address) -}}
{{- fail (printf "config.kubeProxy.healthzBindAddress %q needs a port (HOST:PORT, e.g. 0.0.0.0:10256)" $address) -}}
{{- end -}}
{{- regexReplaceAll "^.*:" $address "" -}}
{{- end }}
