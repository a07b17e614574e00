"""The local lab: simulated edge hosts (real OpenSSH servers in namespaces) and stand-ins."""
from importlib import import_module

__all__ = ["Lab", "LabError", "cleanup_stale"]
_HOMES = {"Lab": "lab.lifecycle.lab", "LabError": "lab.lifecycle.lab", "cleanup_stale": "lab.lifecycle.claims"}


def __getattr__(name: str):
    """Load the lab on first use (PEP 562), so `./kit --list` and lab.tasks do not import it."""
    if name not in _HOMES:
        raise AttributeError(f"module 'lab' has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
