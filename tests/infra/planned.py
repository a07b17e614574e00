"""Small hand-made plans for the policy tests: a few resources as the recorder would hold them (no Pulumi run), so
each test shows the one relation a policy reads, and the next test breaks exactly that."""
from infra.offline.recorder import PlannedResource
from infra.offline.runtime import Recording

SUB = "/subscriptions/00000000-0000-4000-8000-000000000000"
RG = f"{SUB}/resourceGroups/rg-t"
TAGS = {"env": "t", "owner": "team", "cost-center": "cc", "managed-by": "pulumi"}


def resource(typ: str, name: str, *deps: PlannedResource | str, protect: bool = False, **inputs) -> PlannedResource:
    """One planned resource; `deps` are resources (or bare URNs) it depends on directly."""
    return PlannedResource(urn=f"urn:pulumi:t::kit::{typ}::{name}", type=typ, name=name, parent="", provider="",
                           dependencies=[d if isinstance(d, str) else d.urn for d in deps], inputs=inputs,
                           custom=True, protect=protect)


def plan(*resources: PlannedResource) -> Recording:
    return Recording(stack="t", resources=list(resources), outputs={})


def role(name: str, role_id: str, scope: str, *deps: PlannedResource | str) -> PlannedResource:
    """A role assignment of role `role_id` at `scope`, to the principal of what it depends on."""
    return resource("azure-native:authorization:RoleAssignment", name, *deps, scope=scope,
                    roleDefinitionId=f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role_id}")


def without(recording: Recording, *names: str) -> Recording:
    """The plan less the resources of these names."""
    return plan(*(r for r in recording.resources if r.name not in names))
