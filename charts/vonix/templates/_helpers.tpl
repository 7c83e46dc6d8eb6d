{{/* Names and labels ----------------------------------------------------------------------- */}}

{{- define "vonix.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vonix.fullname" -}}
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

{{- define "vonix.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "vonix.selectorLabels" . }}
app.kubernetes.io/version: {{ include "vonix.imageTag" . | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Every pod of the release (app and migration Job); add a component label to tell them apart. */}}
{{- define "vonix.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vonix.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vonix.appSelectorLabels" -}}
{{ include "vonix.selectorLabels" . }}
app.kubernetes.io/component: app
{{- end -}}

{{- define "vonix.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vonix.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "vonix.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- define "vonix.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "vonix.imageTag" .) -}}
{{- end -}}

{{- define "vonix.secretName" -}}
{{- .Values.existingSecret | default (include "vonix.fullname" .) -}}
{{- end -}}

{{/* Settings --------------------------------------------------------------------------------- */}}

{{/* VONIX_REPLICAS: what the app is told about the deployment's size (its several-replica guards). */}}
{{- define "vonix.replicasSetting" -}}
{{- if .Values.settings.VONIX_REPLICAS -}}
{{- .Values.settings.VONIX_REPLICAS -}}
{{- else if .Values.autoscaling.enabled -}}
{{- .Values.autoscaling.maxReplicas -}}
{{- else -}}
{{- .Values.replicaCount -}}
{{- end -}}
{{- end -}}

{{/*
The non-secret settings as a name -> string map: `settings` without the empty ones (the app's
default applies), VONIX_REPLICAS filled in. VONIX_INSTANCE_ID, when empty, comes from the pod
name instead (see vonix.instanceEnv).
*/}}
{{- define "vonix.settingsMap" -}}
{{- $out := dict -}}
{{- range $key, $value := .Values.settings -}}
{{- if ne (toString $value) "" -}}
{{- $_ := set $out $key (toString $value) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $out "VONIX_REPLICAS" (include "vonix.replicasSetting" . | toString) -}}
{{- toYaml $out -}}
{{- end -}}

{{- define "vonix.instanceEnv" -}}
{{- if not .Values.settings.VONIX_INSTANCE_ID -}}
- name: VONIX_INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end -}}
{{- end -}}

{{- define "vonix.port" -}}
{{- .Values.settings.VONIX_PORT | default "8000" | int -}}
{{- end -}}

{{/* Shutdown timing --------------------------------------------------------------------------- */}}

{{/*
The pod must outlive preStop + the drain + uvicorn's 5 s margin (server/cli.py); anything shorter
means SIGKILL cuts live websockets mid-drain.
*/}}
{{- define "vonix.minimumGracePeriod" -}}
{{- $drain := .Values.settings.DRAIN_SECONDS | default "10" | float64 | ceil | int -}}
{{- add (int .Values.preStopSleepSeconds) $drain 5 -}}
{{- end -}}

{{- define "vonix.terminationGracePeriod" -}}
{{- $minimum := include "vonix.minimumGracePeriod" . | int -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add $minimum 10 -}}
{{- else -}}
{{- $chosen := .Values.terminationGracePeriodSeconds | int -}}
{{- if le $chosen $minimum -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be longer than preStopSleepSeconds + DRAIN_SECONDS + 5 (%d)" $chosen $minimum) -}}
{{- end -}}
{{- $chosen -}}
{{- end -}}
{{- end -}}

{{/* Pod pieces shared by the Deployment and the migration Job --------------------------------- */}}

{{- define "vonix.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{- define "vonix.containerSecurityContext" -}}
{{- toYaml .Values.securityContext -}}
{{- end -}}
