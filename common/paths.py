"""Paths typed on the command line resolve against the directory the kit was called from: ./kit runs its tasks
from the checkout's root, and says where the caller was in KIT_CALLER_CWD. Defaults stay the project's own."""
import os

# the options whose values are paths, on every task (tests/kit/test_kit_paths.py checks none is missing)
PATH_OPTIONS = frozenset({"out", "diff", "project-dir", "kubeconfig", "snapshot", "token-file", "root", "models",
                          "statuses", "html", "cert", "key"})
WORDS = {"statuses": {"registry"}}  # values of a path option that are words, not paths (fleet.receive's registry)
SITE_OPTION = "site"  # a site name (edge_hosts/sites/<name>.yaml) or, when is_site_path, an inventory file


def is_site_path(site: str) -> bool:
    """Whether a --site value is a path to an inventory file rather than a site name."""
    return "/" in site or site.endswith((".yaml", ".yml"))


def caller_path(option: str, value: str, caller_cwd: str) -> str:
    """`value` of the option named `option`, absolute against `caller_cwd` when it is a relative path (~ expanded
    first); anything else unchanged."""
    if not value or value in WORDS.get(option, ()):
        return value
    if option not in PATH_OPTIONS and not (option == SITE_OPTION and is_site_path(value)):
        return value
    return os.path.join(caller_cwd, os.path.expanduser(value))


def take_caller_cwd() -> str:
    """The caller's directory ./kit exported (this process's own without it), taken out of the environment so
    that no process the kit starts (pytest, another ./kit) mistakes it for its own caller's."""
    return os.environ.pop("KIT_CALLER_CWD", "") or os.getcwd()
