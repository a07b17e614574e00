"""Access to what the platform builds: Azure role assignments granted with least privilege (`roles`: the built-in
role ids, `role_assignment`, PlatformAccess, ClusterAdmins), the wait until the cluster's API server lets the
deployer in (`kube_ready`), and the kubeconfig converted to its Entra ID login mode (`kubelogin`). The lowest
infra package: it imports nothing else from infra (only Pulumi, the Azure provider, requests and yaml), so
`devops`, `components` and `offline` may all import it."""
