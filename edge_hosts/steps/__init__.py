"""Check-then-change steps on one host or through the first server: OS preparation, artifacts, config, install,
the service, images, MetalLB, fleet delivery, nodes (drain, uncordon, stale nodes) and the kubeconfig here.
Imports preflight and the packages below it."""
