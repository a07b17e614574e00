"""Access to what the platform builds: Azure role assignments granted with least privilege (`roles`: the built-in
role ids, `role_assignment`, PlatformAccess, ClusterAdmins), the wait until the cluster's API server lets the
deployer in (`kube_ready`), the kubeconfig converted to its Entra ID login mode (`kubelogin`), who runs `up`
(`principal`) and the kit's own Azure tokens (`azure_token`). The lowest infra package: it imports nothing else
from infra (only Pulumi, the Azure provider, azure-identity, requests and yaml), so
`devops`, `components` and `offline` may all import it."""
