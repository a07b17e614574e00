"""The local lab: simulated edge hosts (real OpenSSH servers in namespaces) and stand-ins."""
