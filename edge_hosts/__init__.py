"""Edge sites over SSH: k3s with MetalLB from YAML inventories, bootstrap and day-2 operations.

Packages, lowest first; a package imports only those listed before it (and `common`, `fleet`):
inventory (the site's YAML and the files it renders) < access (SSH, host keys, the kit's state here) <
facts (what a host and its cluster report; reads only) and artifacts (downloads, bundles, proxy) < engine (runs
steps on hosts) < preflight (checks before anything changes) < steps (check-then-change on one host) <
operations (upgrade, backup, restore, certificates, reset, status) < bootstrap (the whole-site run and its plan) <
tasks (the invoke tasks and what they print). tests/kit/test_architecture.py enforces it."""
