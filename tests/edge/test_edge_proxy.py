"""Proxies: the unit's env file as install.sh writes it (0600), NO_PROXY always covering the site's own ranges, the
hosts' downloads through the proxy (an online lab site behind an authenticating forward proxy), the proxy password
never in argv, output or the journal, and k3s restarted only when the proxy settings change."""
import base64
import subprocess
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from common import k3s
from edge_hosts.inventory.load import InventoryError, load_inventory
from edge_hosts.artifacts.proxy import env_file, no_proxy, passwords, variables
from helpers import json_result, kit, lab_site, valid_document, write_inventory
from lab.lifecycle.inventory import K3S_VERSION, METALLB_VERSION
from lab.releases.artifacts import build_release_tree, serve_directory
from lab_checks import ArgvSampler, all_starts, host_file, mode, ready_nodes

PROXY_PASSWORD = "Pr0xy-pw_3x"
HOSTS = ["edge-1", "edge-2"]
RELEASES = "releases.lab.test"  # a name only the proxy resolves: the hosts can download only through it


def inventory_with(tmp_path, **changes):
    doc = valid_document()
    doc.update(changes)
    return load_inventory(str(write_inventory(tmp_path, doc)))


# -- rendering --------------------------------------------------------------------------------------------------
def test_no_proxy_covers_the_site_before_the_inventorys_own_entries(tmp_path):
    settings = {"http": "http://proxy:3128", "noProxy": [".plant.example", "10.9.0.0/24"]}
    inventory = inventory_with(tmp_path, proxy=settings, apiEndpoint="edge.plant.example")
    assert no_proxy(inventory) == ["localhost", "127.0.0.1", "10.42.0.0/16", "10.43.0.0/16", "10.9.0.0/24",
                                   "edge.plant.example", ".plant.example"]


def test_no_proxy_follows_the_server_configs_cidrs(tmp_path):
    doc = valid_document()
    doc["k3s"]["serverConfig"] = {"cluster-cidr": "10.60.0.0/16,fd00:42::/56", "service-cidr": ["10.61.0.0/16"]}
    doc["proxy"] = {"https": "http://proxy:3128"}
    inventory = load_inventory(str(write_inventory(tmp_path, doc)))
    assert no_proxy(inventory) == ["localhost", "127.0.0.1", "10.60.0.0/16", "fd00:42::/56", "10.61.0.0/16",
                                   "10.9.0.0/24", "10.9.0.11"]  # no apiEndpoint: the first server
    assert variables(inventory) == {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": ",".join(no_proxy(inventory))}


def test_the_env_file_is_what_install_sh_writes_from_the_same_variables(tmp_path):
    """install.sh create_env_file (k3s-io/k3s): `sh -c export` lines matching ^(NO|HTTP|HTTPS)_PROXY, any case."""
    inventory = inventory_with(tmp_path, proxy={"http": "http://kit:p'w@proxy:3128", "https": "http://proxy:3129"})
    exported = subprocess.run(
        ["/bin/sh", "-c", "sh -c export | while read x v; do echo $v; done | grep -Ei '^(NO|HTTP|HTTPS)_PROXY'"],
        env={"PATH": "/usr/bin:/bin", **variables(inventory)}, capture_output=True, text=True, check=True).stdout
    assert env_file(inventory) == exported
    assert env_file(inventory).splitlines()[0] == "HTTPS_PROXY='http://proxy:3129'"
    assert env_file(inventory_with(tmp_path)) == ""  # no proxy: the empty file install.sh writes


def test_passwords_in_proxy_urls_are_secrets(tmp_path):
    inventory = inventory_with(tmp_path, proxy={"http": "http://kit:s3cret@proxy:3128", "https": "http://proxy:3129"})
    assert passwords(inventory) == {"s3cret"}


def test_bad_proxy_settings_are_reported_with_every_other_problem(tmp_path):
    doc = valid_document()
    doc["proxy"] = {"noProxy": ["a,b"]}
    doc["hosts"][1]["address"] = "10.8.0.12"
    doc["registries"] = {"credentials": {}}
    with pytest.raises(InventoryError) as caught:
        load_inventory(str(write_inventory(tmp_path, doc)))
    text = str(caught.value)
    for problem in ("proxy.noProxy[0]: String should match pattern", "hosts[1].address: 10.8.0.12 is outside",
                    "registries.credentials: Value error, give exactly one of"):
        assert problem in text


@pytest.mark.parametrize("settings, problem", [({"http": "proxy:3128"}, "proxy.http: String should match pattern"),
                                               ({"noProxy": ["x"]}, "proxy: Value error, give http, https or both")])
def test_a_proxy_needs_an_http_url(tmp_path, settings, problem):
    with pytest.raises(InventoryError, match=problem):
        inventory_with(tmp_path, proxy=settings)


# -- on an online lab site behind a forward proxy ---------------------------------------------------------------
class ForwardProxy(BaseHTTPRequestHandler):
    """A plain-HTTP forward proxy asking for basic auth; absolute-form requests for known names go upstream."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        server = self.server
        if self.headers.get("Proxy-Authorization") != server.expected_auth:
            self.send_response(407)
            self.send_header("Proxy-Authenticate", 'Basic realm="lab"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            server.refused.append(self.path)
            return
        target = urlsplit(self.path)
        upstream = server.routes.get(target.netloc)
        if upstream is None:
            self.send_error(502, f"no route to {target.netloc}")
            return
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(upstream + target.path, timeout=30) as reply:
                body, status = reply.read(), reply.status
        except urllib.error.HTTPError as err:
            body, status = b"", err.code
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        server.forwarded.append(self.path)

    def log_message(self, *args):
        pass


@contextmanager
def forward_proxy(host: str, routes: dict[str, str], user: str, password: str):
    server = ThreadingHTTPServer((host, 0), ForwardProxy)
    server.routes, server.forwarded, server.refused = routes, [], []
    server.expected_auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    return module_lab_factory(hosts=2, servers=1)


@pytest.fixture(scope="module")
def online(lab, tmp_path_factory):
    """The release tree on this machine's loopback, reachable from the hosts only through the proxy."""
    root = tmp_path_factory.mktemp("releases")
    pins = build_release_tree(root, K3S_VERSION, METALLB_VERSION)
    with serve_directory(root, host="127.0.0.1") as url, \
            forward_proxy(lab.gateway, {RELEASES: url}, "kit", PROXY_PASSWORD) as proxy:
        yield root, pins, proxy


def proxied_site(lab, online, directory: Path, no_proxy_extra: list[str], name: str = "site.yaml") -> Path:
    _, pins, proxy = online
    url = f"http://kit:{PROXY_PASSWORD}@{lab.gateway}:{proxy.server_address[1]}"
    return lab_site(lab, directory, name, bundle=None, downloads={"mirror": f"http://{RELEASES}",
                                                                  "raw": f"http://{RELEASES}"},
                    proxy={"http": url, "https": url, "noProxy": no_proxy_extra},
                    **{"k3s.installScriptSha256": pins["install.sh"],
                       "metallb.manifestSha256": pins["metallb-native.yaml"]})


def bootstrap(site: Path, state: Path):
    env = {"XDG_CONFIG_HOME": str(state / "xdg"), "HOME": str(state / "home")}
    done = kit("edge.bootstrap", "--site", str(site), "--json", "--kubeconfig", str(state / "kubeconfig"), env=env)
    return done, json_result(done) if done.returncode in (0, 1) else {}


def unit_env_path(lab, name: str) -> str:
    return f"/etc/systemd/system/{k3s.unit(lab.host(name).role)}.service.env"


def unit_env(lab, name: str) -> Path:
    return host_file(lab, name, unit_env_path(lab, name))


@pytest.fixture(scope="module")
def first_run(lab, online, state):
    site = proxied_site(lab, online, state, [".plant.example"])
    with ArgvSampler(lab) as argvs:
        done, hosts = bootstrap(site, state)
    return site, done, hosts, argvs


def test_hosts_download_through_the_proxy_with_its_credentials(lab, online, first_run):
    root, _, proxy = online
    _, done, hosts, _ = first_run
    assert done.returncode == 0, done.stdout + done.stderr
    assert ready_nodes(lab) == set(HOSTS)
    assert f"http://{RELEASES}/k3s-io/k3s/{K3S_VERSION}/install.sh" in proxy.forwarded
    assert any(path.endswith("/metallb-native.yaml") for path in proxy.forwarded)
    assert proxy.refused == []
    release = root / f"k3s-io/k3s/releases/download/{K3S_VERSION}"
    assert host_file(lab, "edge-2", k3s.BIN).read_bytes() == (release / "k3s").read_bytes()


def test_the_unit_env_file_holds_the_proxy_with_the_sites_ranges_in_no_proxy(lab, online, first_run):
    port = online[2].server_address[1]
    subnet = str(load_inventory(str(first_run[0])).node_subnet)
    url = f"http://kit:{PROXY_PASSWORD}@{lab.gateway}:{port}"
    expected = (f"HTTPS_PROXY='{url}'\nHTTP_PROXY='{url}'\nNO_PROXY='localhost,127.0.0.1,10.42.0.0/16,10.43.0.0/16,"
                f"{subnet},{lab.host('edge-1').address},.plant.example'\n")
    for name in HOSTS:
        assert unit_env(lab, name).read_text() == expected
        assert mode(lab, name, unit_env_path(lab, name)) == 0o600


def test_the_proxy_password_never_shows(lab, first_run):
    _, done, _, argvs = first_run
    assert argvs.samples > 0 and not [a for a in argvs.seen if PROXY_PASSWORD in a]
    assert PROXY_PASSWORD not in done.stdout + done.stderr
    search = "grep -rlF -f /dev/stdin /etc /root /tmp /var/log /var/lib/rancher /usr/local"
    for name in HOSTS:
        found = lab.exec(name, search, input=PROXY_PASSWORD + "\n", check=False).stdout.split()
        assert found == [unit_env_path(lab, name)]  # not the journal, not a download script


def test_a_rerun_downloads_only_the_checksum_lists_and_restarts_nothing(lab, online, state, first_run):
    proxy = online[2]
    before, forwarded = all_starts(lab), len(proxy.forwarded)
    done, hosts = bootstrap(first_run[0], state)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {n: h["changed"] for n, h in hosts.items()} == dict.fromkeys(HOSTS, [])
    assert all_starts(lab) == before
    assert {Path(path).name for path in proxy.forwarded[forwarded:]} == {k3s.checksum_asset("x86_64")}


def test_a_changed_no_proxy_rewrites_the_env_file_and_restarts_each_host_once(lab, online, state, first_run, tmp_path):
    site = proxied_site(lab, online, tmp_path, [".plant.example", "historian.plant.example"])
    env = {"XDG_CONFIG_HOME": str(state / "xdg"), "HOME": str(state / "home")}
    proxy, forwarded = online[2], len(online[2].forwarded)
    planned = json_result(kit("edge.plan", "--site", str(site), "--json", env=env))
    assert {n: h["changed"] for n, h in planned.items()} == {
        n: [f"install: write {unit_env_path(lab, n)} (the proxy settings)",
            f"install: restart {k3s.unit(lab.host(n).role)}"] for n in HOSTS}
    # the release's sha256 list, read by each host through the proxy
    assert {Path(path).name for path in proxy.forwarded[forwarded:]} == {k3s.checksum_asset("x86_64")}
    before = all_starts(lab)
    done, hosts = bootstrap(site, state)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {n: h["changed"] for n, h in hosts.items()} == dict.fromkeys(HOSTS, ["install"])
    assert all_starts(lab) == {n: before[n] + 1 for n in HOSTS}
    for name in HOSTS:
        assert unit_env(lab, name).read_text().endswith(",.plant.example,historian.plant.example'\n")
