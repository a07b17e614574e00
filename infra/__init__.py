"""The Azure platform stack: the Pulumi program of one environment, its settings, its lifecycle and offline plan.

Packages, lowest first; a package imports only those listed before it (and `common`, `agents`): access (role
assignments, Kubernetes access readiness, kubelogin) < devops (Azure DevOps as code; its settings model nests in
the stack's) < stack (settings, their rules, naming, stack config loading) < components (one Pulumi component per
concern) < lifecycle (Automation API operations, ephemeral stacks, reaper) and offline (the mock-runtime plan).
Above them, at the top: platform (composes the components), program (the entry point `__main__` runs, as Pulumi.yaml
`main: infra/` asks) and tasks (the invoke tasks)."""
