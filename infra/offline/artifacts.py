"""Files the offline plan writes: plan.json, graph.dot and the Kubernetes manifests, all or nothing."""
import json
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from infra.offline.recorder import PlannedResource
from infra.offline.runtime import Recording

NON_OBJECT_TYPES = ("kubernetes:helm.sh/", "pulumi:providers:")


def kubernetes_objects(recording: Recording) -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object the stack would apply: (the cluster's provider name, the manifest)."""
    return [(r.provider.rsplit("::", 1)[-1] or "default", r.inputs) for r in recording.resources
            if r.type.startswith("kubernetes:") and not r.type.startswith(NON_OBJECT_TYPES)]


def ordered_manifest(obj: dict[str, Any]) -> dict[str, Any]:
    """apiVersion, kind and metadata first, as people write manifests; nested keys sorted."""
    head = ("apiVersion", "kind", "metadata")
    return {**{k: _sorted(obj[k]) for k in head if k in obj},
            **{k: _sorted(v) for k, v in sorted(obj.items()) if k not in head}}


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def manifest_filename(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    parts = [obj.get("kind", "object"), meta.get("namespace", ""), meta.get("name", "unnamed")]
    return "-".join(p.lower() for p in parts if p) + ".yaml"


def plan_document(recording: Recording) -> dict[str, Any]:
    return {"stack": recording.stack, "resources": [r.as_json() for r in recording.resources],
            "outputs": recording.outputs}


HUB_EDGES = 12  # a resource more depend on than this draws its edges faintly, so the others stay readable
GRAPHVIZ_HINT = "no graph.svg: Graphviz's dot is not installed (apt-get install graphviz)"


def plan_json(recording: Recording) -> str:
    """plan.json's text: the same bytes for the same plan (resources in tree order, keys sorted at every depth)."""
    return json.dumps(plan_document(recording), indent=2, ensure_ascii=False) + "\n"


def graph_dot(resources: list[PlannedResource]) -> str:
    """The dependency graph: components as (nested) clusters, resources as boxes, dependencies as edges.

    Edges to or from a component end at its cluster's border (Graphviz `compound` with lhead/ltail naming the
    cluster, dot only: graphviz.org/docs/attrs/compound, /lhead) through an invisible anchor node named by the
    component's URN.
    """
    by_urn = {r.urn: r for r in resources}
    children: dict[str, list[PlannedResource]] = {}
    for r in resources:
        children.setdefault(r.parent if r.parent in by_urn else "", []).append(r)
    clusters = {r.urn: f"cluster_{i}" for i, r in enumerate(r for r in resources if r.urn in children)}
    lines = ["digraph plan {", "  rankdir=LR; compound=true; newrank=true; ranksep=0.6;",
             '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica", fontsize=10];',
             '  graph [fontname="Helvetica", fontsize=11, style="rounded", color="#8da2c0"];',
             '  edge [color="#5b6b82", arrowsize=0.6];']
    lines += _cluster_body("", children, clusters, "  ")
    edges = [(dep, r.urn) for r in resources for dep in r.dependencies if dep in by_urn and dep != r.parent]
    fan_out = Counter(dep for dep, _ in edges)
    for dep, urn in edges:
        attributes = [f"ltail={clusters[dep]}"] if dep in clusters else []
        attributes += [f"lhead={clusters[urn]}"] if urn in clusters else []
        attributes += ['color="#c9d1dc"'] if fan_out[dep] > HUB_EDGES else []  # e.g. the resource group: faint
        lines.append(f"  {_id(dep)} -> {_id(urn)}" + (f" [{', '.join(attributes)}];" if attributes else ";"))
    return "\n".join([*lines, "}", ""])


def _cluster_body(parent: str, children: dict[str, list[PlannedResource]], clusters: dict[str, str],
                  indent: str) -> list[str]:
    lines = []
    for r in children.get(parent, []):
        if r.urn in clusters:
            lines += [f"{indent}subgraph {clusters[r.urn]} {{", f"{indent}  label={_id(f'{_short_type(r)} {r.name}')};",
                      f'{indent}  {_id(r.urn)} [shape=point, style=invis, width=0];',
                      *_cluster_body(r.urn, children, clusters, indent + "  "), f"{indent}}}"]
        else:
            label = _id(_short_type(r) + "\n" + r.name)
            lines.append(f"{indent}{_id(r.urn)} [label={label}, tooltip={_id(r.type)}];")
    return lines


def _short_type(resource: PlannedResource) -> str:
    """'Subnet' for azure-native:network:Subnet, 'Deployment' for kubernetes:apps/v1:Deployment."""
    return resource.type.rsplit(":", 1)[-1].rsplit("/", 1)[-1]


def _id(text: str) -> str:
    """A quoted DOT id (newlines as DOT's \\n)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def draw_svg(dot_file: Path) -> bool:
    """graph.svg beside graph.dot with Graphviz's dot; False when dot is not installed."""
    dot = shutil.which("dot")
    if dot is None:
        return False
    subprocess.run([dot, "-Tsvg", "-o", str(dot_file.with_suffix(".svg")), str(dot_file)], check=True,
                   capture_output=True, timeout=120)
    return True


def write_plan(recording: Recording, out_dir: Path) -> bool:
    """Replace `out_dir` with this plan's files; a failure leaves the previous plan untouched.

    Returns whether graph.svg was drawn (it needs Graphviz)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        (staging / "plan.json").write_text(plan_json(recording))
        (staging / "graph.dot").write_text(graph_dot(recording.resources))
        drawn = draw_svg(staging / "graph.dot")
        manifests = staging / "manifests"
        manifests.mkdir()
        for cluster, obj in kubernetes_objects(recording):
            (manifests / cluster).mkdir(exist_ok=True)
            (manifests / cluster / manifest_filename(obj)).write_text(
                yaml.safe_dump(ordered_manifest(obj), sort_keys=False))
        _swap(staging, out_dir)
        return drawn
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap(staging: Path, out_dir: Path) -> None:
    old = out_dir.with_name(f".{out_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        os.rename(out_dir, old)
    os.rename(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)
