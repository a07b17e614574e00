"""Pod Security "restricted", as the API server admits pods into a namespace that enforces it.

The checks follow the Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards/,
"Restricted" and the "Baseline" controls it includes) for the fields these pods use.
"""
import pytest

from tests.agents_k8s.test_agent_manifests import BUILDKIT_NS, CLUSTER_ARCHES, find, pod

ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
                   "secret"}


def restricted_violations(spec: dict) -> list[str]:
    """What keeps a pod spec out of a namespace that enforces "restricted"."""
    found = []
    pod_security = spec.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            found.append(key)
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            found.append(f"volume {volume['name']}: {sorted(kinds)}")
    for container in spec.get("initContainers", []) + spec["containers"]:
        name, security = container["name"], container.get("securityContext", {})
        if security.get("privileged"):
            found.append(f"{name}: privileged")
        if security.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation must be false")
        capabilities = security.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []) or set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: capabilities must drop ALL")
        if not security.get("runAsNonRoot", pod_security.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot")
        if security.get("runAsUser", pod_security.get("runAsUser")) == 0:
            found.append(f"{name}: runAsUser 0")
        seccomp = security.get("seccompProfile", pod_security.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile {seccomp}")
        if security.get("appArmorProfile", {}).get("type") == "Unconfined":
            found.append(f"{name}: appArmorProfile Unconfined")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            found.append(f"{name}: hostPort")
    return found


@pytest.mark.parametrize("cluster,arch", CLUSTER_ARCHES)
def test_agent_pods_meet_restricted_so_their_namespace_can_enforce_it(plan, cluster, arch):
    assert restricted_violations(pod(plan, cluster, arch)["spec"]) == []


@pytest.mark.parametrize("cluster,arch", CLUSTER_ARCHES)
def test_the_builders_could_not_and_so_live_apart(plan, cluster, arch):
    builder = find(plan, cluster, "Deployment", f"buildkitd-{arch}", BUILDKIT_NS)["spec"]["template"]["spec"]
    assert {"buildkitd: seccompProfile Unconfined", "buildkitd: appArmorProfile Unconfined"} <= set(
        restricted_violations(builder))
