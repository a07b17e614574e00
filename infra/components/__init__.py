"""The platform's Pulumi components, one per concern: network, private endpoints and DNS, AKS cluster, container
registry with the edge sites' tokens, ML workspace and its AKS attachment, observability and diagnostic settings,
and the placement (resource group, region, tags) they share. They may import `infra.stack` (settings models and
rules) and `infra.access` (kubelogin), never `devops`, `lifecycle`, `offline` or the program (`infra.platform`
composes them)."""
