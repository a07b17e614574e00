"""An SELinux-enforcing host with the k3s-selinux policy: the kit's k3s binary carries the policy's label after each
install (install.sh skips its chcon when the kit skips the download), and edge.reset keeps the policy package that
k3s's uninstall script would remove, unless --forget (lab/standins/selinux.py models labels and the package)."""
import subprocess

import yaml

from edge_hosts.operations.reset import KEEP_POLICY
from helpers import kit

POLICY = "/usr/share/selinux/packages/k3s.pp"


def run(*args):
    done = kit(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_binary_is_labelled_and_reset_keeps_the_policy_unless_forget(lab_factory, tmp_path):
    lab = lab_factory(hosts=1, servers=1)
    lab.set_selinux_enforcing("edge-1", policy=True)
    document = yaml.safe_load(lab.site_file.read_text())
    document["k3s"]["serverConfig"] = {**document["k3s"].get("serverConfig", {}), "selinux": True}
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(document))
    bootstrap = ("edge.bootstrap", "--site", str(site), "--json", "--kubeconfig", str(tmp_path / "kc"))
    label = lambda: lab.selinux_label("edge-1", "/usr/local/bin/k3s").split(":")[2]
    policy = lambda: lab.exec("edge-1", f"test -f {POLICY}", check=False).returncode == 0

    run(*bootstrap)
    assert label() == "container_runtime_exec_t"
    run("edge.reset", "--site", str(site), "--yes", "--json")
    assert policy() and lab.exec("edge-1", "test -e /usr/local/bin/k3s", check=False).returncode == 1
    run(*bootstrap)                                   # preflight still finds the policy
    assert label() == "container_runtime_exec_t"
    run("edge.reset", "--site", str(site), "--yes", "--json", "--forget")
    assert not policy()


def keep_policy(tmp_path, tail: str):
    """What the kit's KEEP_POLICY shell makes of an uninstall script ending in `tail`."""
    script = tmp_path / "k3s-uninstall.sh"
    script.write_text(f"#!/bin/sh\nrm -rf /var/lib/rancher/k3s\n\n{tail}")
    return subprocess.run(["sh", "-c", f"s={script}\n{KEEP_POLICY}cat \"$t\"; rm -f \"$t\""],
                          capture_output=True, text=True)


def test_reset_strips_the_policy_removal_and_refuses_a_script_it_cannot_strip(tmp_path):
    upstream_tail = ("if type yum >/dev/null 2>&1; then\n    yum remove -y k3s-selinux\n"
                     "    rm -f /etc/yum.repos.d/rancher-k3s-common*.repo\nelif type rpm-ostree >/dev/null 2>&1; then\n"
                     "    rpm-ostree uninstall k3s-selinux\nfi\n")
    stripped = keep_policy(tmp_path, upstream_tail)
    assert stripped.returncode == 0 and stripped.stdout == "#!/bin/sh\nrm -rf /var/lib/rancher/k3s\n\n"
    other = keep_policy(tmp_path, "dnf remove -y k3s-selinux\n")
    assert other.returncode == 1 and "run edge.reset --forget" in other.stderr
