"""Files the offline plan writes: plan.json, graph.dot and the Kubernetes manifests, all or nothing."""
import json
import os
import shutil
import tempfile
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


def graph_dot(resources: list[PlannedResource]) -> str:
    """The dependency graph: solid edges for dependencies, dashed for parent/child."""
    lines = ["digraph plan {", "  rankdir=LR;", "  node [shape=box, fontsize=10];"]
    known = {r.urn for r in resources}
    for r in resources:
        lines.append(f'  "{r.urn}" [label="{r.type}\\n{r.name}"];')
    for r in resources:
        if r.parent in known:
            lines.append(f'  "{r.parent}" -> "{r.urn}" [style=dashed];')
        lines += [f'  "{dep}" -> "{r.urn}";' for dep in r.dependencies if dep in known]
    return "\n".join([*lines, "}", ""])


def write_plan(recording: Recording, out_dir: Path) -> None:
    """Replace `out_dir` with this plan's files; a failure leaves the previous plan untouched."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        (staging / "plan.json").write_text(json.dumps(plan_document(recording), indent=2) + "\n")
        (staging / "graph.dot").write_text(graph_dot(recording.resources))
        manifests = staging / "manifests"
        manifests.mkdir()
        for cluster, obj in kubernetes_objects(recording):
            (manifests / cluster).mkdir(exist_ok=True)
            (manifests / cluster / manifest_filename(obj)).write_text(
                yaml.safe_dump(ordered_manifest(obj), sort_keys=False))
        _swap(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap(staging: Path, out_dir: Path) -> None:
    old = out_dir.with_name(f".{out_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        os.rename(out_dir, old)
    os.rename(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)
