#!/bin/sh
# Render the manifests for one deployment: APP, IMAGE and MODEL_VERSION from the environment, files as arguments.
# Usage: APP=ai-app IMAGE=registry/ai-app@sha256:... MODEL_VERSION=1.4.2 render-manifests.sh OUT_DIR FILE...
set -eu
out="$1"; shift
for value in "$APP" "$IMAGE" "$MODEL_VERSION"; do
  case "$value" in *[!A-Za-z0-9._:/@+-]*|"") echo "refusing to render a value with characters outside A-Za-z0-9._:/@+-" >&2; exit 1 ;; esac
done
mkdir -p "$out"
for file in "$@"; do
  sed -e "s|__APP__|$APP|g" -e "s|__IMAGE__|$IMAGE|g" -e "s|__MODEL_VERSION__|$MODEL_VERSION|g" \
    "$file" > "$out/$(basename "$file")"
done
