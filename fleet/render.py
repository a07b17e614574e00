"""Render each site's desired state: the shared bases with its ring's and its own patches, the application
image and model pinned by digest, its MetalLB pool; plus the Flux objects that pull and apply it."""
from __future__ import annotations

import copy
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import kubernetes_validate
import yaml

from common import k3s
from fleet import flux
from fleet.config import Fleet, FleetError, Patch, Site

K8S_VERSION = "1.37"  # the k3s line the edge sites run (edge_hosts/sites/*.yaml: v1.37.2+k3s1)
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
MODEL_MOUNT = "/models"
Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when PyYAML has it: same YAML, faster
CONTENT_FILE = "site.yaml"


HELD_NODE_LABEL = "fleet.mlops-edge-kit/held"  # no node has it: a held DaemonSet runs nowhere


@dataclass(frozen=True)
class RenderedSite:
    site: Site
    content: dict[str, bytes]  # artifact files (path -> bytes): what Flux's Kustomization applies
    flux_objects: list[dict]   # applied on the site once, by its bootstrap
    held: dict[str, bytes] = field(default_factory=dict)  # the same files with every workload stopped


def merge(base, patch):
    """Maps merge key by key; lists of named maps merge by name (as kustomize's containers, volumes); other
    values, and other lists, are replaced by the patch's."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        items = {item["name"]: item for item in base}
        for item in patch:
            items[item["name"]] = merge(items[item["name"]], item) if item["name"] in items else copy.deepcopy(item)
        return list(items.values())
    return copy.deepcopy(patch)


def _named(items: list) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def model_reference(site: Site, digest: str) -> str:
    return f"{site.env.registry}/models/{site.model.name}@{digest}"


def _kit_patches(fleet: Fleet, site: Site, model_digest: str) -> list[Patch]:
    """The application image and the model, by digest. The model is an image volume (KEP 4639, feature gate
    ImageVolume: alpha in 1.31, on by default from 1.35): the kubelet pulls it like an image, so the
    application never downloads it at start."""
    pod = {"containers": [{"name": "app", "image": fleet.application.image,
                           "volumeMounts": [{"name": "model", "mountPath": MODEL_MOUNT, "readOnly": True}]}],
           "volumes": [{"name": "model", "image": {"reference": model_reference(site, model_digest),
                                                   "pullPolicy": "IfNotPresent"}}]}
    return [Patch(kind="Deployment", name=fleet.application.name, merge={"spec": {"template": {"spec": pod}}})]


def _metallb(site: Site) -> list[dict]:
    meta = {"name": k3s.METALLB_POOL, "namespace": "metallb-system"}  # the pool the edge bootstrap made
    return [{"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": meta,
             "spec": {"addresses": list(site.metallb.addresses)}},
            {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement", "metadata": meta,
             "spec": {"ipAddressPools": [k3s.METALLB_POOL]}}]


def core_objects(fleet: Fleet, site: Site, model_digest: str, problems: list[str]) -> list[dict]:
    """The bases with ring, site and kit patches applied in that order; a patch matching nothing is a problem."""
    objects = [copy.deepcopy(o) for o in fleet.bases]
    layers = (("ring", f"rings/{site.ring}.yaml", site.ring_patches), ("site", f"sites/{site.name}/site.yaml",
              site.patches), ("kit", "kit", _kit_patches(fleet, site, model_digest)))
    for _, where, patches in layers:
        for i, patch in enumerate(patches):
            hits = [n for n, o in enumerate(objects) if o["kind"] == patch.kind and o["metadata"]["name"] == patch.name]
            if not hits:
                problems.append(f"{where}: patches[{i}]: no {patch.kind} named '{patch.name}' in bases/")
            for n in hits:
                objects[n] = merge(objects[n], patch.merge)
    return objects


def _problem(obj: dict) -> str:
    """'' when obj is valid for Kubernetes K8S_VERSION (strict: unknown fields fail), else what is wrong."""
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(p) for p in err.path)
        return f"{obj['kind']}/{obj['metadata']['name']}: {path or '(top)'}: {err.message}"
    except kubernetes_validate.SchemaNotFoundError:
        return f"{obj['kind']} {obj['apiVersion']}: not a Kubernetes {K8S_VERSION} kind"
    return ""


def _validate(site: Site, objects: list[dict], problems: list[str], seen: dict[str, str]) -> None:
    """Each distinct object is validated once per render (sites share most of theirs)."""
    for obj in objects:
        if obj["apiVersion"].startswith("metallb.io/"):
            continue  # a CRD: checked against MetalLB's own schema by the tests
        key = json.dumps(obj, sort_keys=True)
        if key not in seen:
            seen[key] = _problem(obj)
        if seen[key]:
            problems.append(f"site {site.name}: {seen[key]}")


def _health_checks(objects: list[dict]) -> list[dict]:
    return [{"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"],
             "namespace": o["metadata"].get("namespace", "default")} for o in objects if o["kind"] in WORKLOADS]


def held(objects: list[dict]) -> list[dict]:
    """What a site with no previous release runs when its first release is moved back: the namespaces and the
    workloads only (the Kustomization prunes the rest), stopped (Deployments and StatefulSets at 0 replicas,
    DaemonSets on no node), so the health checks pass and nothing of the release runs."""
    kept = [copy.deepcopy(o) for o in objects if o["kind"] in ("Namespace", *WORKLOADS)]
    for obj in kept:
        if obj["kind"] == "DaemonSet":
            obj["spec"]["template"]["spec"]["nodeSelector"] = {HELD_NODE_LABEL: "true"}
        elif obj["kind"] in WORKLOADS:
            obj["spec"]["replicas"] = 0
    return kept


def render_site(fleet: Fleet, site: Site, model_digest: str, problems: list[str],
                seen: dict[str, str] | None = None, model_bytes: int = 0) -> RenderedSite:
    objects = core_objects(fleet, site, model_digest, problems) + _metallb(site)
    _validate(site, objects, problems, {} if seen is None else seen)
    content = yaml.dump_all(objects, Dumper=Dumper, sort_keys=True).encode()
    stopped = yaml.dump_all(held(objects), Dumper=Dumper, sort_keys=True).encode()
    return RenderedSite(site, {CONTENT_FILE: content}, flux.site_objects(site, site.env, _health_checks(objects),
                                                                        model_bytes), {CONTENT_FILE: stopped})


def render_env(fleet: Fleet, env: str, model_digests: dict[str, str],
               model_bytes: dict[str, int] | None = None) -> list[RenderedSite]:
    """Every site of env (model_bytes: each version's size, for the health checks' timeout); FleetError lists
    all problems (nothing is rendered half-way)."""
    fleet.check_env(env)
    problems: list[str] = []
    rendered, seen = [], {}
    for site in fleet.of(env):
        digest = model_digests.get(site.model.version)
        if digest is None:
            problems.append(f"site {site.name}: model {site.model.name} version {site.model.version}: no files")
            continue
        rendered.append(render_site(fleet, site, digest, problems, seen,
                                    (model_bytes or {}).get(site.model.version, 0)))
    if problems:
        raise FleetError("\n".join(problems))
    return rendered


def write_env(rendered: list[RenderedSite], dest: Path) -> None:
    """dest/<site>/content/... and dest/<site>/flux.yaml, replacing dest as a whole (never half-written)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        for item in rendered:
            folder = stage / item.site.name
            (folder / "content").mkdir(parents=True)
            for name, data in item.content.items():
                (folder / "content" / name).write_bytes(data)
            (folder / "flux.yaml").write_text(yaml.dump_all(item.flux_objects, Dumper=Dumper, sort_keys=True))
        old = dest.with_name(f".{dest.name}.old")
        if dest.exists():
            dest.rename(old)
        stage.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
