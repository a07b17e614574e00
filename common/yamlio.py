"""Reading the kit's YAML (inventories, k3s flag lists, kubeconfigs): PyYAML's safe loader, through libyaml when
PyYAML has it (the same documents, several times faster: a no-op run reads four of them before it can start)."""
import yaml

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(text: str):
    """Like yaml.safe_load; errors are yaml.YAMLError."""
    return yaml.load(text, Loader=LOADER)  # noqa: S506 - a safe loader
