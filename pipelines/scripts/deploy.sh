#!/bin/sh
# Apply the rendered manifests and wait for the rollout; with LOAD_BALANCER_SERVICE, also wait for the
# address MetalLB assigns and publish it as the pipeline variable serviceAddress.
# Environment: APP, NAMESPACE, IMAGE, MODEL_VERSION; optional LOAD_BALANCER_SERVICE, ROLLOUT_TIMEOUT (600 s),
# ADDRESS_TIMEOUT (300 s).
# Arguments: the manifest files. kubectl must already be signed in (Kubernetes@1 login).
set -eu
here=$(dirname "$0")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
sh "$here/render-manifests.sh" "$out" "$@"
kubectl apply --namespace "$NAMESPACE" -f "$out"
kubectl rollout status --namespace "$NAMESPACE" "deployment/$APP" --timeout "${ROLLOUT_TIMEOUT:-600}s"
if [ -n "${LOAD_BALANCER_SERVICE-}" ]; then
  deadline=$(( $(date +%s) + ${ADDRESS_TIMEOUT:-300} ))
  while :; do
    address=$(kubectl get service --namespace "$NAMESPACE" "$LOAD_BALANCER_SERVICE" \
      -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
    case "$address" in
      "") ;;
      *[!0-9A-Fa-f.:]*) echo "##vso[task.logissue type=error]$LOAD_BALANCER_SERVICE has no IP address" >&2; exit 1 ;;
      *) echo "$LOAD_BALANCER_SERVICE is reachable at $address"
         echo "##vso[task.setvariable variable=serviceAddress]$address"
         exit 0 ;;
    esac
    [ "$(date +%s)" -lt "$deadline" ] || break
    sleep 5
  done
  echo "##vso[task.logissue type=error]MetalLB assigned no address to $LOAD_BALANCER_SERVICE in ${ADDRESS_TIMEOUT:-300} s" >&2
  exit 1
fi
