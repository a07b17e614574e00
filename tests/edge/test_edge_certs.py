"""Certificate expiry in edge.status (servers' tls/*.crt, every node's agent certificates and the kubeconfig's client
certificate, a warning under 30 days) on a lab whose stand-in issues 20-day certificates, and edge.rotate-certs
renewing them on servers and agents, and the kubeconfig."""
import base64
import datetime
import json

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge_hosts.operations.certs import WARN_DAYS, summary
from edge_hosts.tasks.tables import status_notes, status_table
from tests.kit.helpers import too_wide
from tests.kit.test_edge_tables import rendered

from helpers import kit
from lab_checks import host_file, nodes_via_kubeconfig, ready_nodes

SHORT_LIVED = {"cert_days": 20}


def status(site, kubeconfig):
    done = kit("edge.status", "--site", str(site), "--json", "--kubeconfig", str(kubeconfig))
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def client_serial(kubeconfig) -> int:
    user = yaml.safe_load(kubeconfig.read_text())["users"]
    data = next(u["user"]["client-certificate-data"] for u in user if u["name"] == "lab")
    return x509.load_pem_x509_certificate(base64.b64decode(data)).serial_number


def server_serial(lab, name) -> int:
    pem = host_file(lab, "edge-1", f"/var/lib/rancher/k3s/server/tls/{name}.crt").read_bytes()
    return x509.load_pem_x509_certificate(pem).serial_number


AGENT_FILES = {"agent/client-kubelet.crt", "agent/serving-kubelet.crt", "agent/client-kube-proxy.crt",
               "agent/client-k3s-controller.crt"}


def agent_pair(lab, name) -> tuple[int, bytes]:
    """Serial of edge-2's agent certificate `name` (its first, leaf certificate) and the public key it is for."""
    pem = host_file(lab, "edge-2", f"/var/lib/rancher/k3s/agent/{name}.crt").read_bytes()
    leaf = x509.load_pem_x509_certificates(pem)[0]
    return leaf.serial_number, leaf.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def short_lived(lab_factory, tmp_path):
    lab = lab_factory(hosts=2, servers=1, timings=SHORT_LIVED)
    kubeconfig = tmp_path / "kubeconfig"
    done = kit("edge.bootstrap", "--site", str(lab.site_file), "--json", "--kubeconfig", str(kubeconfig))
    assert done.returncode == 0, done.stdout + done.stderr
    return lab, kubeconfig


def test_the_warning_starts_under_30_days():
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    files = {"a.crt": now + datetime.timedelta(days=WARN_DAYS, hours=1), "b.crt": now + datetime.timedelta(days=400)}
    assert summary(files, now)["file"] == "a.crt" and not summary(files, now)["warning"]
    files["c.crt"] = now + datetime.timedelta(days=WARN_DAYS - 1)
    assert summary(files, now) | {"files": None} == {"file": "c.crt", "expires": files["c.crt"].isoformat(),
                                                     "daysLeft": WARN_DAYS - 1, "warning": True, "files": None}


@pytest.mark.parametrize("days,warning", [(29, True), (31, False), (100, False), (299, False)])
def test_the_warning_fires_thirty_days_ahead_not_earlier(days, warning):
    """In days, not WARN_DAYS: a wider constant (300) must fail here."""
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    assert summary({"a.crt": now + datetime.timedelta(days=days, hours=1)}, now)["warning"] is warning


def test_status_shows_when_certificates_expire_and_warns(short_lived):
    lab, kubeconfig = short_lived
    report = status(lab.site_file, kubeconfig)
    server = next(h for h in report["hosts"] if h["name"] == "edge-1")
    agent = next(h for h in report["hosts"] if h["name"] == "edge-2")
    assert server["certificates"]["daysLeft"] == 19 and server["certificates"]["warning"] is True
    assert {"server-ca.crt", "serving-kube-apiserver.crt", "client-admin.crt"} <= set(server["certificates"]["files"])
    assert server["certificates"]["files"]["server-ca.crt"] > server["certificates"]["expires"]
    assert AGENT_FILES <= set(server["certificates"]["files"])          # a server runs an agent too
    assert set(agent["certificates"]["files"]) == AGENT_FILES
    assert agent["certificates"]["daysLeft"] == 19 and agent["certificates"]["warning"] is True
    assert report["kubeconfig"]["daysLeft"] == 19 and report["kubeconfig"]["warning"] is True
    table = kit("edge.status", "--site", str(lab.site_file), "--kubeconfig", str(kubeconfig))
    assert table.returncode == 0 and "certs 19d" in table.stdout
    text = " ".join(table.stdout.split())
    assert "warning: edge-1: " in text and "expires in 19 days" in text
    assert "edge-2: agent/" in text
    assert "client certificate of context lab expires" in text and "run edge.rotate-certs" in text
    assert not too_wide(rendered(status_table(report)) + "\n".join(status_notes(report)))


def test_rotate_certs_renews_them_and_refreshes_the_kubeconfig(short_lived, tmp_path):
    lab, kubeconfig = short_lived
    before = {name: server_serial(lab, name) for name in ("client-admin", "serving-kube-apiserver", "server-ca")}
    agent_before = {name: agent_pair(lab, name) for name in ("client-kubelet", "serving-kubelet")}
    client_before = client_serial(kubeconfig)
    done = kit("edge.rotate-certs", "--site", str(lab.site_file), "--json", "--kubeconfig", str(kubeconfig))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert [(h["name"], h["changed"]) for h in result["hosts"]] == [("edge-1", ["rotate", "kubeconfig"]),
                                                                      ("edge-2", ["rotate"])]
    for name, (serial, key) in agent_before.items():   # new certificates for new keys (the servers' rotation)
        assert agent_pair(lab, name)[0] != serial and agent_pair(lab, name)[1] != key
    backups = [p.name for p in host_file(lab, "edge-2", "/var/lib/rancher/k3s/agent").iterdir()]
    assert any(b.startswith("tls-") for b in backups)   # k3s certificate rotate ran on the agent
    assert "k3s-lab" in result["azureDevOps"] and "kubectl config view --minify --flatten --context lab" in \
        result["azureDevOps"]
    assert server_serial(lab, "client-admin") != before["client-admin"]
    assert server_serial(lab, "serving-kube-apiserver") != before["serving-kube-apiserver"]
    assert server_serial(lab, "server-ca") == before["server-ca"]   # the CA (and so the join tokens) stays
    assert client_serial(kubeconfig) not in (client_before, before["client-admin"])
    assert client_serial(kubeconfig) == server_serial(lab, "client-admin")
    assert nodes_via_kubeconfig(kubeconfig, "lab", tmp_path / "tls") == {"edge-1", "edge-2"}
    assert ready_nodes(lab) == {"edge-1", "edge-2"}
    table = kit("edge.rotate-certs", "--site", str(lab.site_file), "--kubeconfig", str(kubeconfig))
    assert table.returncode == 0 and "Azure DevOps: the Kubernetes service connection k3s-lab" in table.stdout
