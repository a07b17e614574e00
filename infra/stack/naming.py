"""Azure resource names for a stack, and Azure's naming rules for them."""
import hashlib
import re
from dataclasses import dataclass, fields

SUFFIX_LENGTH = 6

# name field -> (pattern, what Azure requires)
RULES: dict[str, tuple[str, str]] = {
    "storage_account": (r"^[a-z0-9]{3,24}$", "storage account names are 3-24 lowercase letters and digits"),
    "registry": (r"^[a-zA-Z0-9]{5,50}$", "registry names are 5-50 letters and digits"),
    "key_vault": (r"^(?!.*--)[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$",
                  "key vault names are 3-24 letters, digits and hyphens, start with a letter, "
                  "end with a letter or digit and have no '--'"),
    "cluster": (r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$", "AKS names are 1-63 letters, digits, '_' and '-'"),
    "dns_prefix": (r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,52}[a-zA-Z0-9])?$",
                   "AKS dnsPrefix is 1-54 letters, digits and hyphens, starting and ending alphanumeric"),
}
NODE_POOL_RULE = (r"^[a-z][a-z0-9]{0,11}$", "Linux node pool names are 1-12 lowercase letters and digits, "
                  "starting with a letter")


def stack_suffix(organization: str, project: str, stack: str) -> str:
    """A short suffix, stable for one stack, that keeps globally unique names apart."""
    return hashlib.sha256(f"{organization}/{project}/{stack}".encode()).hexdigest()[:SUFFIX_LENGTH]


@dataclass(frozen=True)
class StackNames:
    """The Azure names of one environment's resources."""

    resource_group: str
    vnet: str
    log_analytics: str
    app_insights: str
    storage_account: str
    key_vault: str
    registry: str
    workspace: str
    cluster: str
    dns_prefix: str

    def violations(self) -> list[tuple[str, str]]:
        """(name field, problem) for every name that breaks Azure's rules."""
        problems = []
        for field in fields(self):
            pattern, rule = RULES.get(field.name, (None, ""))
            value = getattr(self, field.name)
            if pattern and not re.match(pattern, value):
                problems.append((field.name, f"{value!r} is invalid: {rule}"))
        return problems


def stack_names(prefix: str, env: str, suffix: str, overrides: dict[str, str]) -> StackNames:
    """Names for `env`; globally unique ones carry `suffix`; `overrides` win."""
    compact = re.sub(r"[^a-z0-9]", "", f"{prefix}{env}".lower())
    dashed = f"{prefix}-{env}"
    derived = {
        "resource_group": f"rg-{dashed}", "vnet": f"vnet-{dashed}", "log_analytics": f"log-{dashed}",
        "app_insights": f"appi-{dashed}", "workspace": f"mlw-{dashed}", "cluster": f"aks-{dashed}",
        "dns_prefix": dashed[:54].strip("-"),
        "storage_account": f"st{compact}"[:24 - SUFFIX_LENGTH] + suffix,
        "registry": f"cr{compact}"[:50 - SUFFIX_LENGTH] + suffix,
        "key_vault": f"kv-{compact}"[:23 - SUFFIX_LENGTH] + f"-{suffix}",
    }
    return StackNames(**{**derived, **overrides})
