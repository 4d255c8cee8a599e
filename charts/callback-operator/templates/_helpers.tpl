{{/* The prefix of every object's name: "callback-operator" for a release of that name; at
most 28 characters, so that the longest name (<prefix>-controller-manager-metrics-service)
is a valid Service name. */}}
{{- define "callback-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 28 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 28 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 28 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "callback-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object: config/'s labels, with Helm's managed-by and the release's. */}}
{{- define "callback-operator.labels" -}}
app.kubernetes.io/name: {{ include "callback-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The manager's labels, as config/manager has them. */}}
{{- define "callback-operator.managerLabels" -}}
{{ include "callback-operator.labels" . }}
app.kubernetes.io/component: manager
control-plane: controller-manager
{{- end -}}

{{/* The manager pods' selector: config/manager's (a Deployment's selector cannot change). */}}
{{- define "callback-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "callback-operator.name" . }}
control-plane: controller-manager
{{- end -}}

{{- define "callback-operator.serviceAccountName" -}}
{{ include "callback-operator.fullname" . }}-controller-manager
{{- end -}}

{{/* The manager's image: registry/repository, then @digest or :tag (default appVersion). */}}
{{- define "callback-operator.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}{{- $repo = printf "%s/%s" .Values.image.registry $repo -}}{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/* The namespaces the manager's Role is bound in (watchNamespaces), de-duplicated. */}}
{{- define "callback-operator.watchNamespaces" -}}
{{- uniq .Values.watchNamespaces | join "," -}}
{{- end -}}
