"""The kubectl subset, executed by the first server against its cluster state."""
import json
import re
import time

from k3sstub import metallb, objects
from k3sstub.objects import ApplyError

KINDS = {  # resource names kubectl accepts -> (Kind, plural label used in NotFound errors)
    **dict.fromkeys(["node", "nodes", "no"], ("Node", "nodes")),
    **dict.fromkeys(["svc", "service", "services"], ("Service", "services")),
    **dict.fromkeys(["endpoints", "ep"], ("Endpoints", "endpoints")),
    **dict.fromkeys(["ipaddresspools.metallb.io", "ipaddresspool", "ipaddresspools"],
                    ("IPAddressPool", "ipaddresspools.metallb.io")),
    **dict.fromkeys(["l2advertisements.metallb.io", "l2advertisement", "l2advertisements"],
                    ("L2Advertisement", "l2advertisements.metallb.io")),
    **dict.fromkeys(["deployment", "deployments", "deploy", "deployment.apps"],
                    ("Deployment", "deployments.apps")),
    **dict.fromkeys(["daemonset", "daemonsets", "ds", "daemonset.apps"],
                    ("DaemonSet", "daemonsets.apps")),
    **dict.fromkeys(["namespace", "namespaces", "ns"], ("Namespace", "namespaces")),
    **dict.fromkeys(["secret", "secrets"], ("Secret", "secrets")),
    **dict.fromkeys(["configmap", "configmaps", "cm"], ("ConfigMap", "configmaps")),
    **dict.fromkeys(["pod", "pods", "po"], ("Pod", "pods")),
    **dict.fromkeys(["pdb", "poddisruptionbudget", "poddisruptionbudgets", "poddisruptionbudget.policy"],
                    ("PodDisruptionBudget", "poddisruptionbudgets.policy")),
}
EVICT_RETRY_S = 5  # kubectl drain's EvictErrorRetryDelay (pkg/cmd/drain: 5 * time.Second)
VALUE_FLAGS = {"-n", "--namespace", "-o", "--output", "-f", "--filename", "--timeout", "--raw"}


class Result(Exception):
    """Ends a command with an exit code and output."""

    def __init__(self, code: int, out: str = "", err: str = ""):
        super().__init__(err)
        self.code, self.out, self.err = code, out, err


def parse(args: list[str]) -> tuple[list[str], dict]:
    words, flags, i = [], {}, 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and "=" in arg:
            name, value = arg.split("=", 1)
            flags[name] = value
        elif arg in VALUE_FLAGS and i + 1 < len(args):
            flags[arg] = args[i + 1]
            i += 1
        elif arg.startswith("-"):
            flags[arg] = True
        else:
            words.append(arg)
        i += 1
    return words, flags


def _flag(flags: dict, *names, default=None):
    return next((flags[n] for n in names if n in flags), default)


def _duration(text) -> float:
    """'90s', '2m', '1m30s', '0' -> seconds (0 means no limit)."""
    if not text:
        return 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s|ms)?", str(text))
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "": 1}
    return sum(float(n) * scale[u] for n, u in parts)


def execute(cluster, args: list[str], stdin: str) -> tuple[int, str, str]:
    words, flags = parse(args)
    commands = {"get": get, "apply": apply, "delete": delete, "drain": drain, "cordon": cordon,
                "uncordon": uncordon, "rollout": rollout}
    if not words or words[0] not in commands:
        return 1, "", f"error: unknown command {' '.join(words[:1])!r} (lab stand-in subset)\n"
    try:
        with cluster.lock:
            objects.refresh_load_balancers(cluster)
            objects.reconcile_deployments(cluster)
        out = commands[words[0]](cluster, words[1:], flags, stdin)
        return 0, out, ""
    except Result as done:
        return done.code, done.out, done.err
    except ApplyError as err:
        return 1, "", f"{err}\n"


def _kind(cluster, resource: str) -> tuple[str, str]:
    """A resource name's kind; MetalLB's kinds exist once their CRDs are applied (the server's discovery)."""
    kind = KINDS.get(resource, ("", ""))
    if not kind[0] or (kind[1].endswith(".metallb.io") and kind[0] not in objects.known_kinds(cluster)):
        raise Result(1, err=f'error: the server doesn\'t have a resource type "{resource}"\n')
    return kind


def _render(obj, flags) -> str:
    output = _flag(flags, "-o", "--output")
    if output == "json":
        return json.dumps(obj, indent=4) + "\n"
    if output == "name":
        items = obj.get("items", [obj])
        return "".join(objects.display(o) + "\n" for o in items)
    if obj.get("kind") == "NodeList":
        rows = ["NAME STATUS ROLES VERSION"]
        for node in obj["items"]:
            ready = node["status"]["conditions"][0]["status"] == "True"
            roles = ",".join(sorted(k.split("/", 1)[1] for k in node["metadata"]["labels"]
                                    if k.startswith("node-role.kubernetes.io/"))) or "<none>"
            rows.append(f"{node['metadata']['name']} {'Ready' if ready else 'NotReady'} {roles} "
                        f"{node['status']['nodeInfo']['kubeletVersion']}")
        return "\n".join(rows) + "\n"
    items = obj.get("items", [obj])
    return "".join(f"{o['metadata']['name']}\n" for o in items)


def get(cluster, words, flags, stdin) -> str:
    raw = _flag(flags, "--raw")
    if raw:
        if raw in ("/readyz", "/livez", "/healthz"):
            return "ok"
        if raw == "/api/v1/nodes":
            return json.dumps(cluster.node_list())
        raise Result(1, err='Error from server (NotFound): the server could not find the requested resource\n')
    if not words:
        raise Result(1, err="error: You must specify the type of resource to get.\n")
    types = words[0].split(",")
    kinds = [_kind(cluster, t) for t in types]  # every type is resolved before anything is read
    ns = objects.ALL_NAMESPACES if _flag(flags, "-A", "--all-namespaces") else _flag(flags, "-n", "--namespace")
    name = words[1] if len(words) > 1 else None
    if len(kinds) > 1:  # kubectl prints the items of every type as one List
        if name is not None:
            raise Result(1, err="error: a name with several types is not modelled (lab stand-in subset)\n")
        items = [item for kind, _ in kinds for item in _items(cluster, kind, ns, name)]
        return _render({"apiVersion": "v1", "kind": "List", "items": items}, flags)
    (kind, label), = kinds
    items = _items(cluster, kind, ns, name)
    if name is not None:
        found = [o for o in items if o["metadata"]["name"] == name]
        if not found:
            raise Result(1, err=f'Error from server (NotFound): {label} "{name}" not found\n')
        return _render(found[0], flags)
    return _render({"apiVersion": "v1", "kind": "List", "items": items}
                   if kind != "Node" else cluster.node_list(), flags)


def _items(cluster, kind: str, ns, name) -> list[dict]:
    """The stored objects of one kind, with the status fields the stand-in computes."""
    with cluster.lock:
        if kind == "Node":
            return cluster.node_list()["items"]
        if kind == "Endpoints" and ns == metallb.NAMESPACE and \
                objects.find(cluster, "Deployment", ns) and name == "metallb-webhook-service":
            return [metallb.endpoints_object(cluster.metallb_applied_at)]
        if kind == "Pod":
            return _pods(cluster, ns)
        items = objects.find(cluster, kind, ns)
        if kind == "DaemonSet":
            nodes = cluster.node_list()["items"]
            items = [metallb.daemonset_with_status(d, nodes, cluster.metallb_applied_at) for d in items]
        if kind == "PodDisruptionBudget":
            items = [{**b, "status": objects.pdb_status(cluster, b)} for b in items]
        return items


def _pods(cluster, ns) -> list[dict]:
    """The pods of the applied DaemonSets and MetalLB's Deployments (the lab runs no containers; their placement is
    computed), then the stored pods of every other Deployment."""
    nodes = cluster.node_list()["items"]
    computed = [d for d in objects.find(cluster, "Deployment", ns) if not objects.has_stored_pods(d)]
    return metallb.pods(objects.find(cluster, "DaemonSet", ns), computed, nodes,
                        cluster.metallb_applied_at) + objects.find(cluster, "Pod", ns)


def _documents(flags, stdin) -> tuple[list[dict], str]:
    source = _flag(flags, "-f", "--filename")
    if not source:
        raise Result(1, err="error: must specify one of -f and -k\n")
    return objects.parse_documents(stdin), "STDIN" if source == "-" else source


def apply(cluster, words, flags, stdin) -> str:
    docs, source = _documents(flags, stdin)
    lines, errors = [], []
    with cluster.lock:
        for doc in docs:
            try:
                lines.append(objects.apply_one(cluster, doc, source))
            except ApplyError as err:
                errors.append(str(err))
        cluster.save()
    out = "".join(line + "\n" for line in lines)
    if errors:
        raise Result(1, out, "".join(e + "\n" for e in errors))
    return out


def delete(cluster, words, flags, stdin) -> str:
    ignore = bool(flags.get("--ignore-not-found"))
    with cluster.lock:
        if words[:1] and words[0] in KINDS and KINDS[words[0]][0] == "Node":
            return "".join(_delete_node(cluster, name, ignore) for name in words[1:])
        if len(words) >= 2:
            kind, label = _kind(cluster, words[0])
            ns = _flag(flags, "-n", "--namespace")
            lines = [objects.delete_one(cluster, kind, ns, n, ignore, label) for n in words[1:]]
        else:
            docs, _ = _documents(flags, stdin)
            lines = [objects.delete_one(cluster, d["kind"], d["metadata"].get("namespace"),
                                        d["metadata"]["name"], ignore,
                                        objects.display(d).split("/")[0]) for d in docs]
        cluster.save()
    return "".join(line + "\n" for line in lines if line)


def _delete_node(cluster, name: str, ignore: bool) -> str:
    if cluster.delete_node(name):
        return f'node "{name}" deleted\n'
    if ignore:
        return ""
    raise Result(1, err=f'Error from server (NotFound): nodes "{name}" not found\n')


def _set_unschedulable(cluster, words, value: bool) -> str:
    """kubectl cordon/uncordon NODE: "node/X cordoned", or "already cordoned" when nothing changed."""
    name = words[0] if words else ""
    with cluster.lock:
        node = cluster.nodes.get(name)
        if node is None:
            raise Result(1, err=f'Error from server (NotFound): nodes "{name}" not found\n')
        changed = node.get("unschedulable", False) != value
        node["unschedulable"] = value  # spec.unschedulable; the kubelet keeps it when it registers again
        cluster.save()
    verb = "cordoned" if value else "uncordoned"
    return f"node/{name} {verb if changed else 'already ' + verb}\n"


def cordon(cluster, words, flags, stdin) -> str:
    return _set_unschedulable(cluster, words, True)


def uncordon(cluster, words, flags, stdin) -> str:
    return _set_unschedulable(cluster, words, False)


def _drain_filters(pods: list[dict], flags: dict) -> tuple[list[dict], list[str], list[str]]:
    """kubectl's drain filters (pkg/drain/filters.go): (pods to evict, errors, warnings). DaemonSet pods are
    skipped with --ignore-daemonsets, else an error; pods with emptyDir volumes need --delete-emptydir-data."""
    daemons = [p for p in pods if any(r["kind"] == "DaemonSet" for r in p["metadata"].get("ownerReferences", []))]
    local = [p for p in pods if p not in daemons and any("emptyDir" in v for v in p["spec"].get("volumes") or [])]
    names = lambda found: ", ".join(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in found)
    errors, warnings = [], []
    if daemons and not flags.get("--ignore-daemonsets"):
        errors.append(f"cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): {names(daemons)}")
    elif daemons:
        warnings.append(f"ignoring DaemonSet-managed Pods: {names(daemons)}")
    if local and not flags.get("--delete-emptydir-data"):
        errors.append(f"cannot delete Pods with local storage (use --delete-emptydir-data to override): "
                      f"{names(local)}")
    return [p for p in pods if p not in daemons], errors, warnings


def _aggregate(errors: list[str]) -> str:
    """utilerrors.NewAggregate's text: the one message, or [a, b]."""
    return errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"


def _go_duration(seconds: float) -> str:
    """Go's time.Duration.String() for whole seconds: 5s, 1m30s, 5m0s."""
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def drain(cluster, words, flags, stdin) -> str:
    """kubectl drain NODE: cordon, then evict the node's pods through the Eviction API (PodDisruptionBudgets
    honoured; a 429 is retried every 5 s) until they are gone or --timeout (0: no limit) passes; the node stays
    cordoned either way (pkg/cmd/drain RunDrain, pkg/drain evictPods)."""
    out = _set_unschedulable(cluster, words, True)
    node = words[0]
    with cluster.lock:
        pending, errors, warnings = _drain_filters([p for p in _pods(cluster, objects.ALL_NAMESPACES)
                                                    if p["spec"].get("nodeName") == node], flags)
    err = "".join(f"Warning: {w}\n" for w in warnings)
    if errors:
        raise Result(1, out, err + _unable(node, errors))
    timeout = _duration(_flag(flags, "--timeout"))
    deadline = time.time() + timeout if timeout else float("inf")
    while True:
        still = []
        for pod in pending:
            ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
            out += f"evicting pod {ns}/{name}\n"
            with cluster.lock:
                refused = objects.evict(cluster, pod)
            if refused:
                err += f'error when evicting pods/"{name}" -n "{ns}" (will retry after {EVICT_RETRY_S}s): {refused}\n'
                still.append(pod)
            else:
                out += f"pod/{name} evicted\n"
        pending = still
        if not pending:
            raise Result(0, out + f"node/{node} drained\n", err)
        if time.time() + EVICT_RETRY_S > deadline:
            time.sleep(max(0.0, deadline - time.time()))
            reached = [f'error when evicting pods/"{p["metadata"]["name"]}" -n "{p["metadata"]["namespace"]}"'
                       f": global timeout reached: {_go_duration(timeout)}" for p in pending]
            listed = "".join(f"pod/{p['metadata']['name']}\n" for p in pending)
            raise Result(1, out, err + f'There are pending pods in node "{node}" when an error occurred: '
                                       f"{_aggregate(reached)}\n{listed}" + _unable(node, reached))
        time.sleep(EVICT_RETRY_S)


def _unable(node: str, errors: list[str]) -> str:
    """kubectl's last words on a failed drain: the aggregate, the node, then each error on its own line, unprefixed
    (as kubectl v1.37.2 prints them: tests/realapi/test_drain_real.py)."""
    return (f'error: unable to drain node "{node}" due to error: {_aggregate(errors)}, continuing command...\n'
            f"There are pending nodes to be drained:\n {node}\n" + "".join(f"{e}\n" for e in errors))


def rollout(cluster, words, flags, stdin) -> str:
    if len(words) < 2 or words[0] != "status" or "/" not in words[1]:
        raise Result(1, err="error: lab stand-in supports only: rollout status <kind>/<name>\n")
    resource, name = words[1].split("/", 1)
    kind, label = _kind(cluster, resource)
    ns = _flag(flags, "-n", "--namespace")
    if not any(o["metadata"]["name"] == name for o in objects.find(cluster, kind, ns)):
        raise Result(1, err=f'Error from server (NotFound): {label} "{name}" not found\n')
    timeout = _duration(_flag(flags, "--timeout"))
    deadline = time.time() + timeout if timeout else float("inf")
    in_metallb = ns == metallb.NAMESPACE
    while in_metallb and not metallb.rollout_ready(cluster.metallb_applied_at):
        if time.time() >= deadline:
            raise Result(1, err="error: timed out waiting for the condition\n")
        time.sleep(0.2)
    if kind == "DaemonSet":
        return f'daemon set "{name}" successfully rolled out\n'
    return f'deployment "{name}" successfully rolled out\n'
