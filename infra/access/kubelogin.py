"""The stack's kubeconfig converted to an unattended kubelogin mode, each mode with its own arguments.

Mirrors `kubelogin convert-kubeconfig --login <mode>` (Azure/kubelogin v0.2.14, the agent image's pin,
pkg/internal/converter/convert.go, Convert): every mode keeps `--server-id`; `spn` carries the service principal's
`--client-id` and the cluster's `--tenant-id` (and `--environment`), its secret coming from
AAD_SERVICE_PRINCIPAL_CLIENT_SECRET at run time, never the file; `azurepipelines` carries the cluster's
`--tenant-id` (required there too) and takes the client and service connection from AZURESUBSCRIPTION_CLIENT_ID /
AZURESUBSCRIPTION_SERVICE_CONNECTION_ID and the job's SYSTEM_ACCESSTOKEN at run time (pkg/internal/token/
options.go, azurepipelinescredential.go); `msi` and `workloadidentity` carry `--client-id` only when one is given
(else the identity's defaults or the AZURE_CLIENT_ID / AZURE_TENANT_ID / AZURE_FEDERATED_TOKEN_FILE environment);
`azurecli` takes everything else from the CLI login (the kubeconfig's tenant is dropped, as kubelogin drops it).
The AKS kubeconfig's own `--client-id` is the AKS Entra ID client application, which only devicecode/interactive use.
"""
from typing import Any

import yaml

EXEC_API_VERSION = "client.authentication.k8s.io/v1beta1"
CLIENT_ID_MODES = ("spn", "msi", "workloadidentity")
TENANT_MODES = ("spn", "azurepipelines")  # modes whose converter requires and writes the kubeconfig's --tenant-id


def arg_value(args: list[str], name: str) -> str | None:
    """The value after `name` in exec args, or None."""
    return args[args.index(name) + 1] if name in args and args.index(name) + 1 < len(args) else None


def converted_args(args: list[str], method: str, client_id: str | None) -> list[str]:
    """The get-token arguments kubelogin's converter writes for `method`."""
    server_id = arg_value(args, "--server-id")
    if not server_id:
        raise ValueError("the kubeconfig's kubelogin user has no --server-id")
    converted = ["get-token", "--login", method, "--server-id", server_id]
    tenant_id = arg_value(args, "--tenant-id")
    if method in TENANT_MODES and not tenant_id:
        raise ValueError(f"{method} login needs the cluster's tenant id (--tenant-id in the kubeconfig)")
    if method == "spn":
        if not client_id:
            raise ValueError("spn login needs the service principal's client id")
        converted += ["--client-id", client_id, "--tenant-id", tenant_id]
        if environment := arg_value(args, "--environment"):
            converted += ["--environment", environment]
    elif method == "azurepipelines":
        converted += ["--tenant-id", tenant_id]
    elif method in CLIENT_ID_MODES and client_id:
        converted += ["--client-id", client_id]
    return converted


def convert_kubeconfig(kubeconfig: str, method: str, client_id: str | None = None) -> str:
    """The kubeconfig with every kubelogin user converted to `method` (AKS returns devicecode)."""
    document: dict[str, Any] = yaml.safe_load(kubeconfig)
    for user in document.get("users", []):
        exec_ = (user.get("user") or {}).get("exec") or {}
        if "kubelogin" in str(exec_.get("command", "")).lower():
            user["user"]["exec"] = {**{k: v for k, v in exec_.items() if k == "installHint"},
                                    "apiVersion": EXEC_API_VERSION, "command": "kubelogin",
                                    "args": converted_args(list(exec_.get("args", [])), method, client_id)}
    return yaml.safe_dump(document, sort_keys=False)
