"""Hosts as they come: preflight names SELinux enforcing without the k3s policy and a 64-bit kernel on a 32-bit
userland (a Raspberry Pi OS install) given as arm64; a tainted node gets a MetalLB speaker only when the site asks."""
import json

import yaml

from helpers import json_result, kit


def test_preflight_names_enforcing_selinux_and_a_32_bit_userland(lab_factory, tmp_path):
    lab = lab_factory(hosts=2, servers=1)
    lab.set_selinux_enforcing("edge-1")
    lab.set_arch("edge-2", "aarch64", long_bit=32)
    document = yaml.safe_load(lab.site_file.read_text())
    document["hosts"][1]["arch"] = "aarch64"  # as `uname -m` says: arm64
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(document))
    done = kit("edge.plan", "--site", str(site), "--json")
    hosts = json_result(done)
    assert done.returncode == 1 and {h["status"] for h in hosts.values()} == {"failed"}
    assert "SELinux is enforcing: install the container-selinux and k3s-selinux packages" in hosts["edge-1"]["error"]
    assert ("64-bit kernel (uname -m aarch64) on a 32-bit userland (getconf LONG_BIT 32, dpkg armhf): the inventory "
            "says arm64; set arch: armv7") in hosts["edge-2"]["error"]
    bootstrap = json_result(kit("edge.bootstrap", "--site", str(site), "--json", "--kubeconfig", str(tmp_path / "kc")))
    assert bootstrap["edge-1"]["error"].startswith("preflight: SELinux is enforcing")
    assert lab.exec("edge-1", "test -e /usr/local/bin/k3s", check=False).returncode == 1  # nothing installed


def speaker_nodes(lab) -> set[str]:
    pods = json.loads(lab.exec("edge-1", "k3s kubectl get pods -n metallb-system -o json").stdout)["items"]
    return {p["spec"].get("nodeName") for p in pods if p["metadata"]["name"].startswith("speaker")}


def test_the_speaker_runs_on_tainted_nodes_only_when_the_site_asks(lab_factory, tmp_path):
    lab = lab_factory(hosts=2, servers=1)
    document = yaml.safe_load(lab.site_file.read_text())
    document["hosts"][1]["taints"] = ["dedicated=ml:NoSchedule"]
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(document))
    done = kit("edge.bootstrap", "--site", str(site), "--json", "--kubeconfig", str(tmp_path / "kc"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "metallb: no speaker on edge-2 (taint dedicated=ml:NoSchedule" in done.stderr
    assert speaker_nodes(lab) == {"edge-1"}
    document["metallb"]["speakerOnTaintedNodes"] = True
    site.write_text(yaml.safe_dump(document))
    done = kit("edge.bootstrap", "--site", str(site), "--json", "--kubeconfig", str(tmp_path / "kc"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert json_result(done)["edge-1"]["changed"] == ["metallb"] and "no speaker" not in done.stderr
    assert speaker_nodes(lab) == {"edge-1", "edge-2"}
    again = json_result(kit("edge.bootstrap", "--site", str(site), "--json", "--kubeconfig", str(tmp_path / "kc")))
    assert {h["status"] for h in again.values()} == {"ok"}, again  # the pool's annotations record the tolerations
