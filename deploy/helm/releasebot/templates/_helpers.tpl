{{- define "releasebot.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "releasebot.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "releasebot.labels" -}}
{{ include "releasebot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "releasebot.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "releasebot.configMap" -}}
{{- .Values.existingConfigMap | default (printf "%s-config" (include "releasebot.fullname" .)) -}}
{{- end -}}

{{/* The database URL (required) and every token, each from the Secret. */}}
{{- define "releasebot.secretEnv" -}}
- name: RELEASEBOT_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secret.name }}
      key: RELEASEBOT_DATABASE_URL
{{- range .Values.secret.keys }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.secret.name }}
      key: {{ . }}
      optional: true
{{- end }}
{{- end -}}

{{- define "releasebot.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The pods of one component (dict "root" $ "component" "bot"|"web"|"worker"). */}}
{{- define "releasebot.componentSelector" -}}
{{ include "releasebot.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The pods that answer the Service (not the migration Job's, nor split workers'): the one
Deployment's (component bot), or with split the web Deployment's. The Service and budget
select these. */}}
{{- define "releasebot.botSelector" -}}
{{ include "releasebot.componentSelector" (dict "root" . "component" (ternary "web" "bot" (and .Values.split true))) }}
{{- end -}}

{{/* Split roles need one PostgreSQL database shared by every pod, and at least one pod of
each role: rendering fails otherwise. The Secret's RELEASEBOT_DATABASE_URL is checked too
where the chart can read it (an install or upgrade against a cluster holding the Secret;
never in `helm template`). */}}
{{- define "releasebot.checkSplit" -}}
{{- if ne (.Values.database.backend | toString) "postgresql" -}}
{{- fail (printf "split: true runs web and worker pods on one shared database, which must be PostgreSQL: set database.backend: postgresql (and a postgresql:// RELEASEBOT_DATABASE_URL in the Secret %s); database.backend is %q" .Values.secret.name (.Values.database.backend | toString)) -}}
{{- end -}}
{{- if or (lt (int .Values.web.replicas) 1) (lt (int .Values.worker.replicas) 1) -}}
{{- fail (printf "split: true needs web.replicas and worker.replicas of at least 1 (web serves HTTP, worker applies deliveries and sends to Slack); they are %v and %v" .Values.web.replicas .Values.worker.replicas) -}}
{{- end -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace .Values.secret.name -}}
{{- if $secret -}}
{{- $url := get ($secret.data | default dict) "RELEASEBOT_DATABASE_URL" | b64dec -}}
{{- if not $url -}}
{{- fail (printf "split: true needs RELEASEBOT_DATABASE_URL in the Secret %s (a postgresql:// URL); it has none" .Values.secret.name) -}}
{{- else if not (hasPrefix "postgres" $url) -}}
{{- fail (printf "split: true needs PostgreSQL, but RELEASEBOT_DATABASE_URL in the Secret %s is not a postgresql:// URL" .Values.secret.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The spool's persistent volume (spool.persistence): an existing claim is one volume, so
only one pod may mount it (replicaCount, or web.replicas with split, of 1); a claim per pod
(the volumeClaimTemplate) needs a size; the mount is a directory of its own, outside /tmp
(an emptyDir) and the config. Rendering fails otherwise. */}}
{{- define "releasebot.checkSpool" -}}
{{- $persistence := .Values.spool.persistence -}}
{{- if $persistence.enabled -}}
{{- $replicas := int (ternary .Values.web.replicas .Values.replicaCount (and .Values.split true)) -}}
{{- $which := ternary "web.replicas" "replicaCount" (and .Values.split true) -}}
{{- if and $persistence.existingClaim (ne $replicas 1) -}}
{{- fail (printf "spool.persistence.existingClaim %q is one volume that one pod at a time may mount, so %s must be 1 (it is %d); leave existingClaim empty to give each pod a claim of its own" $persistence.existingClaim $which $replicas) -}}
{{- end -}}
{{- if and (not $persistence.existingClaim) (not $persistence.size) -}}
{{- fail "spool.persistence.size is needed for the claim each pod gets (e.g. 1Gi)" -}}
{{- end -}}
{{- $path := $persistence.mountPath | toString -}}
{{- if or (not (hasPrefix "/" $path)) (eq $path "/") (eq $path "/tmp") (hasPrefix "/tmp/" $path) (hasPrefix "/etc/releasebot" $path) -}}
{{- fail (printf "spool.persistence.mountPath must be an absolute directory of its own, outside /tmp (an emptyDir) and /etc/releasebot (the config); it is %q" $path) -}}
{{- end -}}
{{- end -}}
{{- end -}}
