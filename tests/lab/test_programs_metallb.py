"""MetalLB's controller is built from its own tools module under lab/programs/metallb at the edge pin, and the lab
installs the release manifest with its webhooks pointed at the local controller (issue 17 item 1)."""
import base64
import json
import subprocess

import yaml

from edge_hosts.tasks.inputs import DEFAULT_METALLB
from lab.programs import build
from lab.programs.metallb import NAMESPACE, POD, lab_manifests
from lab.releases.upstream import metallb_manifest

CA = b"-----BEGIN CERTIFICATE-----\nlab\n-----END CERTIFICATE-----\n"


def test_the_module_pins_the_controller_at_the_edge_pin():
    mod = json.loads(subprocess.run(["go", "mod", "edit", "-json"], cwd=build.MODULE_DIR / "metallb", check=True,
                                    capture_output=True, text=True).stdout)
    assert [t["Path"] for t in mod["Tool"]] == ["go.universe.tf/metallb/controller"] == [build.METALLB[0].package]
    assert {r["Path"]: r["Version"] for r in mod["Require"]}["go.universe.tf/metallb"] == DEFAULT_METALLB
    assert not mod.get("Replace")


def test_the_built_controller_carries_its_pinned_version():
    binary = build.ensure_programs(programs=build.METALLB)["metallb-controller"]
    info = subprocess.run(["go", "version", "-m", str(binary)], check=True, capture_output=True, text=True).stdout
    lines = [line.strip().split("\t") for line in info.splitlines()[1:]]
    assert ["path", "go.universe.tf/metallb/controller"] in lines
    assert ["mod", "go.universe.tf/metallb", DEFAULT_METALLB] == lines[1][:3]
    assert binary.parent.name == f"metallb-controller-{DEFAULT_METALLB}"


def test_the_lab_manifests_point_every_webhook_at_the_local_controller():
    upstream = [d for d in yaml.safe_load_all(metallb_manifest(DEFAULT_METALLB)) if d]
    docs = lab_manifests(metallb_manifest(DEFAULT_METALLB), CA)
    kinds = [d["kind"] for d in docs]
    assert "Deployment" not in kinds and "DaemonSet" not in kinds
    assert len(docs) == len(upstream) - 2 + 1 and kinds.count("CustomResourceDefinition") == 9
    configuration = next(d for d in docs if d["kind"] == "ValidatingWebhookConfiguration")
    paths = [h["clientConfig"]["service"]["path"] for d in upstream if d["kind"] == "ValidatingWebhookConfiguration"
             for h in d["webhooks"]]
    assert [h["clientConfig"] for h in configuration["webhooks"]] == [
        {"url": f"https://127.0.0.1:9443{path}", "caBundle": base64.b64encode(CA).decode()} for path in paths]
    conversion = next(d for d in docs if d["metadata"]["name"] == "bgppeers.metallb.io")["spec"]["conversion"]
    assert conversion["webhook"]["clientConfig"] == {"url": "https://127.0.0.1:9443/convert",
                                                     "caBundle": base64.b64encode(CA).decode()}


def test_the_controller_s_pod_is_its_deployment_s_template():
    upstream = [d for d in yaml.safe_load_all(metallb_manifest(DEFAULT_METALLB)) if d]
    deployment = next(d for d in upstream if d["kind"] == "Deployment")
    pod = lab_manifests(metallb_manifest(DEFAULT_METALLB), CA)[-1]
    assert pod["kind"] == "Pod" and pod["metadata"]["name"] == POD and pod["metadata"]["namespace"] == NAMESPACE
    assert pod["spec"] == deployment["spec"]["template"]["spec"]
    assert pod["metadata"]["labels"] == deployment["spec"]["template"]["metadata"]["labels"]
