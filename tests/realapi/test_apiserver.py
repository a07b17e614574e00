"""lab/programs/apiserver.py runs a real etcd + kube-apiserver with k3s-like certificates; the real kubectl reaches it
as system:admin; it reports its memory and stops without leaving a process or a port behind (issue 17 item 2)."""
import os
import socket
import ssl
import stat
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.programs.apiserver import ApiServer, ApiServerError, free_port


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def _name(cert_name: x509.Name, oid) -> list[str]:
    return [a.value for a in cert_name.get_attributes_for_oid(oid)]


def test_the_real_kubectl_reaches_the_pinned_server_as_system_admin(kubectl):
    version = kubectl.json("version")
    assert version["serverVersion"]["gitVersion"] == "v1.37.2"
    assert version["clientVersion"]["gitVersion"] == "v1.37.2"
    assert {n["metadata"]["name"] for n in kubectl.json("get", "namespaces")["items"]} >= {
        "default", "kube-system", "kube-public", "kube-node-lease"}
    who = kubectl.json("auth", "whoami")["status"]["userInfo"]
    assert who["username"] == "system:admin" and "system:masters" in who["groups"]


def test_anonymous_requests_are_refused(real_api):
    context = ssl.create_default_context(cafile=str(real_api.pki.server_ca))
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{real_api.url}/readyz", context=context, timeout=10)
    assert err.value.code == 401


def test_certificates_are_made_as_k3s_makes_them(real_api):
    serving = _cert(real_api.pki.serving_cert)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(sans.get_values_for_type(x509.DNSName)) | {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert names >= {"kubernetes", "kubernetes.default.svc.cluster.local", "localhost", "127.0.0.1", "10.43.0.1",
                     "10.213.0.11", "edge-1"}
    assert _name(serving.subject, NameOID.COMMON_NAME) == ["kube-apiserver"]
    assert _name(serving.issuer, NameOID.COMMON_NAME)[0].startswith("k3s-server-ca@")
    usage = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    admin = _cert(real_api.pki.admin_cert)
    assert _name(admin.subject, NameOID.COMMON_NAME) == ["system:admin"]
    assert _name(admin.subject, NameOID.ORGANIZATION_NAME) == ["system:masters"]
    assert _name(admin.issuer, NameOID.COMMON_NAME)[0].startswith("k3s-client-ca@")
    assert _cert(real_api.pki.client_ca).subject != _cert(real_api.pki.server_ca).subject


def test_keys_and_the_kubeconfig_are_private(real_api):
    private = [real_api.kubeconfig, *sorted((real_api.work / "tls").glob("*.key"))]
    assert len(private) == 1 + 5  # two CAs, serving, admin, service-account
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in private), [oct(p.stat().st_mode) for p in private]
    assert "client-key-data" in real_api.kubeconfig.read_text()


def test_it_reports_each_program_s_resident_memory(real_api):
    rss = real_api.rss_kib()
    assert set(rss) == {"etcd", "kube-apiserver"}
    assert rss["kube-apiserver"] > 50 * 1024 and rss["etcd"] > 5 * 1024


def _groups_alive(pgids: set[int]) -> list[int]:
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) in pgids:
                alive.append(int(entry.name))
    return alive


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_stop_ends_both_programs_and_frees_their_ports(tmp_path):
    api = ApiServer.start(tmp_path / "api")
    pids = {proc.pid for proc in api.procs.values()}
    ports = [api.port, urlparse(api.etcd_url).port]
    assert all(_listening(p) for p in ports)
    api.stop()
    assert _groups_alive(pids) == [] and api.procs == {}
    assert not any(_listening(p) for p in ports)


def test_a_server_that_never_gets_ready_is_a_clear_timeout_and_leaves_nothing_running(tmp_path):
    dead_etcd = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ApiServerError) as err:
        ApiServer.start(tmp_path / "api", etcd_url=dead_etcd, ready_timeout=5)
    text = str(err.value)
    assert "was not ready within 5 s" in text and f"(etcd {dead_etcd})" in text and "last /readyz:" in text
    assert str(tmp_path / "api" / "kube-apiserver.log") in text and "connection refused" in text
    left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, str(tmp_path))]
    assert left == []


def _cmdline_has(proc: Path, text: str) -> bool:
    try:
        return text in (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def test_the_logs_are_private_too(real_api):
    for name in ("etcd", "kube-apiserver"):
        assert stat.S_IMODE(os.stat(real_api.work / f"{name}.log").st_mode) == 0o600
