#!/bin/sh
# Refuse a model version that is not pinned: empty, a moving alias such as "latest", or a range/wildcard.
# Usage: MODEL_VERSION=1.4.2 check-model-version.sh   (the value comes from the environment, never from argv,
# so a crafted parameter cannot inject shell).
set -eu
version="${MODEL_VERSION-}"
# What the messages show: no brackets, '#' or newlines, so the value cannot forge a ##vso logging command.
shown=$(printf '%s' "$version" | tr -cd 'A-Za-z0-9._:+*^~ -' | cut -c1-80)
lower=$(printf '%s' "$version" | tr '[:upper:]' '[:lower:]')
case "$version" in
  *"
"*) echo "##vso[task.logissue type=error]modelVersion spans several lines; pass one pinned version" >&2; exit 1 ;;
esac
case "$lower" in
  "") echo "##vso[task.logissue type=error]modelVersion is empty; pass a pinned version such as 1.4.2" >&2; exit 1 ;;
  latest|stable|current|newest|prod|production|main|master|head|nightly|default|champion)
    echo "##vso[task.logissue type=error]modelVersion '$shown' is a moving alias; pin a version such as 1.4.2" >&2
    exit 1 ;;
esac
# A release (3, 1.4, 1.4.2, 1.4.2-rc.1, 1.4.2+build.7) or a content digest (sha256:<64 hex>).
if printf '%s' "$version" | grep -Eq '^([0-9]+(\.[0-9]+){0,2}([-+][0-9A-Za-z.-]+)?|sha256:[0-9a-f]{64})$'; then
  echo "model version $shown is pinned"
  exit 0
fi
echo "##vso[task.logissue type=error]modelVersion '$shown' is not a pinned version (1.4.2, 1.4.2-rc.1 or sha256:<digest>)" >&2
exit 1
