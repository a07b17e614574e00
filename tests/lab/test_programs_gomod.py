"""The lab's Go tools module pins the real upstream programs (issue 17 item 1)."""
import json
import subprocess
from pathlib import Path

GOMOD = Path(__file__).resolve().parents[2] / "lab" / "programs" / "go.mod"


def _mod():
    out = subprocess.run(["go", "mod", "edit", "-json", str(GOMOD)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_tools_are_the_pinned_programs():
    tools = {t["Path"] for t in _mod()["Tool"]}
    assert tools == {"k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kubectl",
                     "k8s.io/kubernetes/cmd/kube-controller-manager", "k8s.io/kubernetes/cmd/kube-scheduler",
                     "go.etcd.io/etcd/server/v3"}


def test_kubernetes_and_etcd_versions():
    req = {r["Path"]: r["Version"] for r in _mod()["Require"]}
    assert req["k8s.io/kubernetes"] == "v1.37.2"
    assert req["go.etcd.io/etcd/server/v3"] == "v3.7.0"  # what k8s.io/kubernetes v1.37.2 requires


def test_every_staging_module_is_replaced_by_its_published_tag():
    mod = _mod()
    staging = {r["Path"] for r in mod["Require"] if r["Path"].startswith("k8s.io/") and r["Version"] == "v0.37.2"}
    replaced = {r["Old"]["Path"]: r["New"].get("Version") for r in mod["Replace"]}
    assert staging and all(replaced.get(p) == "v0.37.2" for p in staging)
    assert all(v == "v0.37.2" for p, v in replaced.items() if p.startswith("k8s.io/"))


def test_kwok_is_pinned_in_its_own_tools_module():
    out = subprocess.run(["go", "mod", "edit", "-json", str(GOMOD.with_name("kwok") / "go.mod")], check=True,
                         capture_output=True, text=True)
    mod = json.loads(out.stdout)
    assert [t["Path"] for t in mod["Tool"]] == ["sigs.k8s.io/kwok/cmd/kwok"]
    assert {r["Path"]: r["Version"] for r in mod["Require"]}["sigs.k8s.io/kwok"] == "v0.8.0"
