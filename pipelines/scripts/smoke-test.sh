#!/bin/sh
# Ask the deployed application, through the API server's service proxy (agents only reach HTTPS), for
# /healthz and check that it serves exactly the pinned model version.
# Environment: APP, NAMESPACE, MODEL_VERSION. kubectl must already be signed in.
set -eu
answer=$(kubectl get --raw "/api/v1/namespaces/$NAMESPACE/services/http:$APP:http/proxy/healthz")
served=$(printf '%s' "$answer" | python3 -c 'import json, sys; print(json.load(sys.stdin).get("modelVersion", ""))' \
  | tr -cd 'A-Za-z0-9._:+-' | cut -c1-80)
if [ "$served" != "$MODEL_VERSION" ]; then
  echo "##vso[task.logissue type=error]$APP serves model version '$served', expected $MODEL_VERSION" >&2
  exit 1
fi
echo "$APP serves model version $MODEL_VERSION"
