"""The local lab: simulated edge hosts (real OpenSSH servers in namespaces) and stand-ins."""
from lab.claims import cleanup_stale
from lab.lab import Lab, LabError

__all__ = ["Lab", "LabError", "cleanup_stale"]
