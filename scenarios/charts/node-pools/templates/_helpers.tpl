{{- define "node-pools.pod" -}}
terminationGracePeriodSeconds: 1
nodeSelector:
  {{ .root.Values.poolLabel }}: {{ .pool }}
containers:
  - name: main
    image: {{ .root.Values.image }}
    imagePullPolicy: Never
    command: ["sleep", "86400"]
{{- end -}}
