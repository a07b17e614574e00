"""Online hosts (no bundle): each host downloads the release itself and verifies it; a re-run downloads nothing;
edge.plan compares the hosts' files with the release's sha256 lists (read by the hosts)."""
import hashlib

from helpers import json_result, kit, lab_site
from lab.lifecycle.inventory import K3S_VERSION, METALLB_VERSION
from lab.releases.artifacts import build_release_tree, serve_directory
from lab_checks import host_file, ready_nodes


def test_online_hosts_download_verified_artifacts(lab_factory, tmp_path):
    lab = lab_factory(hosts=2, servers=1)
    root = tmp_path / "mirror"
    pins = build_release_tree(root, K3S_VERSION, METALLB_VERSION)
    with serve_directory(root, host=lab.gateway) as url:
        site = lab_site(lab, tmp_path, bundle=None, downloads={"mirror": url, "raw": url},
                        **{"k3s.installScriptSha256": pins["install.sh"],
                           "metallb.manifestSha256": pins["metallb-native.yaml"]})
        done = kit("edge.bootstrap", "--site", str(site), "--json", "--kubeconfig", str(tmp_path / "kc"))
        assert done.returncode == 0, done.stdout + done.stderr
        assert ready_nodes(lab) == {"edge-1", "edge-2"}
        release = root / f"k3s-io/k3s/releases/download/{K3S_VERSION}"
        assert host_file(lab, "edge-2", "/usr/local/bin/k3s").read_bytes() == (release / "k3s").read_bytes()
        again = json_result(kit("edge.bootstrap", "--site", str(site), "--json", "--kubeconfig", str(tmp_path / "kc")))
        assert {h["status"] for h in again.values()} == {"ok"}
        planned = json_result(kit("edge.plan", "--site", str(site), "--json"))
        assert {n: h["changed"] for n, h in planned.items()} == {"edge-1": [], "edge-2": []}
        tampered = lab_site(lab, tmp_path, "tampered.yaml", bundle=None, downloads={"mirror": url, "raw": url},
                            **{"k3s.installScriptSha256": "0" * 64, "metallb.manifestSha256": pins["metallb-native.yaml"]})
        lab.exec("edge-2", "rm -f /usr/local/bin/k3s-install.sh")
        hosts = json_result(kit("edge.bootstrap", "--site", str(tampered), "--json", "--kubeconfig", str(tmp_path / "kc")))
        assert hosts["edge-2"]["status"] == "failed" and "sha256 mismatch for" in hosts["edge-2"]["error"]
        assert not host_file(lab, "edge-2", "/usr/local/bin/k3s-install.sh").exists()
        binary = (release / "k3s").read_bytes() + b"# a rebuilt release\n"  # the mirror now lists another binary
        (release / "k3s").write_bytes(binary)
        sums = release / "sha256sum-amd64.txt"
        sums.write_text("".join(f"{hashlib.sha256(binary).hexdigest()}  k3s\n" if line.endswith("  k3s") else
                                f"{line}\n" for line in sums.read_text().splitlines()))
        planned = json_result(kit("edge.plan", "--site", str(site), "--json"))
        assert {n: h["changed"][0] for n, h in planned.items()} == dict.fromkeys(("edge-1", "edge-2"),
                                                                                  "artifacts: /usr/local/bin/k3s")
        assert not [c for h in planned.values() for c in h["changed"] if "airgap" in c]
