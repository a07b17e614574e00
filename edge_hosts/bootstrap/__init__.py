"""A whole-site bootstrap (first server, joiners, MetalLB, kubeconfig; an upgrade when the pin changed) and its
plan (what a bootstrap would change). Imports operations and the packages below it."""
