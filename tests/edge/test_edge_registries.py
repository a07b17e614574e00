"""registries.yaml: rendered from the inventory and the site's credential, 0600 on every lab host, written and
restarted for only when it changed, the password never in argv, output, logs or any other file."""
import contextlib
import hashlib
import json
import os
from pathlib import Path

import pytest
import yaml

from common import k3s

from edge_hosts.inventory import k3s_config
from edge_hosts.inventory.credentials import RegistryCredential
from edge_hosts.inventory.load import InventoryError, load_inventory
from edge_hosts.inventory.registries import render
from helpers import json_result, kit, lab_site, valid_document, write_inventory
from lab_checks import ArgvSampler, all_starts, host_config, host_file, mode
from tests.lab.exec_audit import HostExecAudit

SHARED_STATE = True  # one kit state for the module: re-runs keep the site's tokens, as on an operator's machine

HOSTS = ["edge-1", "edge-2", "edge-3"]
PASSWORD = "Reg-pw/7q!9z"  # never in argv, output, logs
SERVER = "acrqa.azurecr.io"
STANDINS = Path(__file__).parent / "standins"
REGISTRIES = {"embeddedMirror": True,
              "mirrors": {"docker.io": {"endpoints": ["https://mirror.plant.example:5000"]}, "registry.k8s.io": None},
              "credentials": {"env": "EDGE_LAB_REGISTRY"},
              "tls": {"caFile": "/etc/ssl/certs/plant-ca.pem"}}


def credential_env(password: str = PASSWORD) -> dict:
    return {"EDGE_LAB_REGISTRY": json.dumps({"server": SERVER, "username": "edge-lab", "password": password})}


def expected(password: str = PASSWORD) -> dict:
    return {"mirrors": {"docker.io": {"endpoint": ["https://mirror.plant.example:5000"]}, "registry.k8s.io": {},
                        SERVER: {}},
            "configs": {SERVER: {"auth": {"username": "edge-lab", "password": password},
                                 "tls": {"ca_file": "/etc/ssl/certs/plant-ca.pem", "insecure_skip_verify": False}}}}


def inventory_with(tmp_path, registries: dict):
    doc = valid_document()
    doc["registries"] = registries
    return load_inventory(str(write_inventory(tmp_path, doc)))


# -- rendering --------------------------------------------------------------------------------------------------
def test_render_mirrors_embedded_mirror_auth_and_tls(tmp_path):
    inventory = inventory_with(tmp_path, REGISTRIES)
    text = render(inventory.registries, RegistryCredential(SERVER, "edge-lab", PASSWORD))
    assert yaml.safe_load(text) == expected()
    assert k3s_config.render_config(inventory, inventory.first_server, None).count("embedded-registry: true") == 1
    assert "embedded-registry" not in k3s_config.render_config(inventory, inventory.agents[0], None)  # a server flag


def test_without_the_embedded_mirror_the_env_registry_is_only_configured(tmp_path):
    inventory = inventory_with(tmp_path, {**REGISTRIES, "embeddedMirror": False, "mirrors": {}})
    rendered = yaml.safe_load(render(inventory.registries, RegistryCredential(SERVER, "u", "p")))
    assert rendered["mirrors"] == {} and set(rendered["configs"]) == {SERVER}
    assert "embedded-registry" not in k3s_config.render_config(inventory, inventory.first_server, None)


@pytest.mark.parametrize("registries, problem", [
    ({"tls": {"caFile": "/ca.pem"}}, "registries: Value error, tls applies to the env's registry"),
    ({"embeddedMirror": True}, "registries: Value error, embeddedMirror shares the registries listed in mirrors"),
    ({"mirrors": {"https://docker.io": None}}, "is not a registry host[:port]"),
    ({"mirrors": {"docker.io": {"endpoints": ["mirror:5000"]}}},
     "registries.mirrors.docker.io.endpoints[0]: String should match"),
    ({"credentials": {"env": "V"}, "tls": {"caFile": "relative.pem"}}, "registries.tls.caFile: String should match"),
])
def test_bad_registries_sections_are_named_by_key(tmp_path, registries, problem):
    with pytest.raises(InventoryError) as caught:
        inventory_with(tmp_path, registries)
    assert problem in str(caught.value)


# -- on a lab site ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab(module_lab_factory):
    return module_lab_factory(hosts=3, servers=1)


@pytest.fixture(scope="module")
def site(lab, tmp_path_factory):
    return lab_site(lab, tmp_path_factory.mktemp("registries-site"), registries=REGISTRIES)


def bootstrap(site: Path, state: Path, env: dict):
    """edge.bootstrap with the module's kit state (also from module fixtures, set up before the autouse one)."""
    env = {"XDG_CONFIG_HOME": str(state / "xdg"), "HOME": str(state / "home"), **env}
    done = kit("edge.bootstrap", "--site", str(site), "--json", "--kubeconfig", str(state / "kubeconfig"), env=env)
    return done, json_result(done) if done.returncode in (0, 1) else {}


def leaks(lab, secret: str) -> dict[str, list[str]]:
    """Files on each host holding `secret` (the pattern on stdin, never in argv)."""
    search = "grep -rlF -f /dev/stdin /etc /root /tmp /var/log /var/lib/rancher /usr/local"
    return {h: lab.exec(h, search, input=secret + "\n", check=False).stdout.split() for h in HOSTS}


@pytest.fixture(scope="module")
def first_run(lab, site, state):
    """The first bootstrap, with every process's argv sampled and every exec on the hosts audited."""
    with ArgvSampler(lab) as argvs, contextlib.ExitStack() as stack:
        audits = [stack.enter_context(HostExecAudit(lab.host(name))) for name in HOSTS]
        done, hosts = bootstrap(site, state, credential_env())
    argvs.execs = {audit.host.name: audit.records for audit in audits}
    return done, hosts, argvs


def test_registries_yaml_is_0600_on_every_host_and_servers_run_the_embedded_mirror(lab, first_run):
    done, hosts, _ = first_run
    assert done.returncode == 0, done.stdout + done.stderr
    for name in HOSTS:
        assert "registries" in hosts[name]["changed"]
        assert yaml.safe_load(host_file(lab, name, k3s.REGISTRIES).read_text()) == expected()
        assert mode(lab, name, k3s.REGISTRIES) == 0o600
    assert host_config(lab, "edge-1")["embedded-registry"] is True
    assert "embedded-registry" not in host_config(lab, "edge-2")


def test_the_password_never_shows(lab, first_run):
    done, _, argvs = first_run
    assert argvs.samples > 0 and not [a for a in argvs.seen if PASSWORD in a]
    for name, execs in argvs.execs.items():  # every exec, even one living a millisecond: the password is in none
        assert [argv for argv in execs if any(PASSWORD.encode() in arg for arg in argv)] == [], name
        assert [b"install", b"-m", b"0600"] in [argv[:3] for argv in execs], name  # the audit saw files go in
    assert PASSWORD not in done.stdout + done.stderr
    assert leaks(lab, PASSWORD) == dict.fromkeys(HOSTS, [k3s.REGISTRIES])  # not the journal, not a staged upload


def test_an_unchanged_file_is_not_written_and_nothing_restarts(lab, site, state, first_run):
    before = all_starts(lab)
    stamp = {n: host_file(lab, n, k3s.REGISTRIES).stat().st_mtime_ns for n in HOSTS}
    done, hosts = bootstrap(site, state, credential_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert {n: h["changed"] for n, h in hosts.items()} == dict.fromkeys(HOSTS, [])
    assert all_starts(lab) == before
    assert {n: host_file(lab, n, k3s.REGISTRIES).stat().st_mtime_ns for n in HOSTS} == stamp


def test_a_new_password_from_the_stack_output_rewrites_the_file_and_restarts_each_host_once(lab, state, first_run,
                                                                                            tmp_path):
    new_password = "Rotated-pw#2"
    outputs = tmp_path / "pulumi-state.json"
    outputs.write_text(json.dumps({"organization/mlops-edge-kit/qa": {"outputs": {"edgeRegistryCredentials": {
        "lab": {"server": SERVER, "username": "edge-lab", "password": new_password}}},
        "secret": ["edgeRegistryCredentials"]}}))
    from_stack = lab_site(lab, tmp_path, registries={**REGISTRIES, "credentials": {
        "pulumiStack": "organization/mlops-edge-kit/qa"}})
    env = {"PATH": f"{STANDINS}:{os.environ['PATH']}", "STANDIN_PULUMI_STATE": str(outputs),
           "STANDIN_PULUMI_LOG": str(tmp_path / "pulumi.log")}
    planned = kit("edge.plan", "--site", str(from_stack), "--json",
                  env={"XDG_CONFIG_HOME": str(state / "xdg"), "HOME": str(state / "home"), **env})
    assert {n: h["changed"] for n, h in json_result(planned).items()} == {
        n: [f"registries: write {k3s.REGISTRIES}", f"install: restart {k3s.unit(lab.host(n).role)}"] for n in HOSTS}
    assert new_password not in planned.stdout + planned.stderr
    (tmp_path / "pulumi.log").unlink()
    before = all_starts(lab)
    with ArgvSampler(lab) as argvs:
        done, hosts = bootstrap(from_stack, state, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {n: h["changed"] for n, h in hosts.items()} == {"edge-1": ["registries", "install"],
                                                           "edge-2": ["registries", "install"],
                                                           "edge-3": ["registries", "install"]}
    assert all_starts(lab) == {n: before[n] + 1 for n in HOSTS}
    assert yaml.safe_load(host_file(lab, "edge-3", k3s.REGISTRIES).read_text()) == expected(new_password)
    assert len((tmp_path / "pulumi.log").read_text().splitlines()) == 1  # one look-up for the whole site
    assert new_password not in (tmp_path / "pulumi.log").read_text() + done.stdout + done.stderr
    assert not [a for a in argvs.seen if new_password in a]
    for name in HOSTS:
        journal = host_file(lab, name, f"/var/log/lab-units/{k3s.unit(lab.host(name).role)}.log").read_text()
        assert new_password not in journal and PASSWORD not in journal


def test_a_credential_that_cannot_be_had_is_bad_input_before_any_host_changes(lab, site, state, first_run):
    before = all_starts(lab)
    digests = {n: hashlib.sha256(host_file(lab, n, k3s.REGISTRIES).read_bytes()).hexdigest() for n in HOSTS}
    done, _ = bootstrap(site, state, {"EDGE_LAB_REGISTRY": ""})
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{site}: registries.credentials.env: environment variable EDGE_LAB_REGISTRY is not set" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert all_starts(lab) == before
    assert {n: hashlib.sha256(host_file(lab, n, k3s.REGISTRIES).read_bytes()).hexdigest() for n in HOSTS} == digests
