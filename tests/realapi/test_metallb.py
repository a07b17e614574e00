"""MetalLB's real controller v0.16.1 (lab/programs/metallb.py) with its admission webhooks live on the real
kube-apiserver (issue 17 item 1): every shipped site's pool and advertisement, as the edge bootstrap applies them, is
accepted; what the CRD schema lets through but MetalLB's own validation refuses is refused in MetalLB's words, and
the same objects pass once the webhook configuration is gone (so the refusal was the webhook's); whatever
address list the kit's inventory and fleet site checks accept, the webhook accepts too; and under its own
ServiceAccount the controller assigns addresses."""
import copy
import time
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from common.address_ranges import address_range, contains
from edge_hosts.inventory.load import SITES_DIR, InventoryError, load_inventory
from edge_hosts.steps.metallb import NAMESPACE, pool_documents
from edge_hosts.tasks.inputs import DEFAULT_METALLB
from fleet.config import Metallb as FleetMetallb
from lab.programs.build import METALLB, pinned_version
from lab.programs.metallb import MetallbController, MetallbError
from lab.releases.upstream import metallb_manifest
from tests.edge.helpers import valid_document, write_inventory

SITES = sorted(p.stem for p in SITES_DIR.glob("*.yaml"))


@pytest.fixture(scope="module")
def metallb(real_api, tmp_path_factory):
    """The controller at the edge pin, its webhooks answering through the module's API server."""
    assert pinned_version(METALLB[0]) == DEFAULT_METALLB  # the lab runs the version the kit installs on sites
    manifest = metallb_manifest(DEFAULT_METALLB)
    with MetallbController.start(real_api, tmp_path_factory.mktemp("metallb"), manifest) as controller:
        yield controller


def apply(metallb, objects: list[dict], dry_run: bool = False):
    """`kubectl apply -f -` as the edge bootstrap runs it (a server-side dry run when asked)."""
    extra = ["--server-side", "--dry-run=server"] if dry_run else []
    return metallb.kubectl_run("apply", *extra, "-f", "-", stdin=yaml.safe_dump_all(objects))


def delete(metallb, objects: list[dict]) -> None:
    done = metallb.kubectl_run("delete", "--ignore-not-found", "--wait", "-f", "-", stdin=yaml.safe_dump_all(objects))
    assert done.returncode == 0, done.stderr


def site_objects(site: str) -> list[dict]:
    return list(yaml.safe_load_all(pool_documents(load_inventory(site), "a" * 64)))


def pool(addresses: list[str], name: str = "other", namespace: str = NAMESPACE) -> dict:
    return {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"addresses": addresses}}


def advertisement(spec: dict) -> dict:
    return {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
            "metadata": {"name": "other", "namespace": NAMESPACE}, "spec": spec}


@pytest.fixture
def kit_pool(metallb):
    """The qa site's pool and advertisement applied for real (what a bootstrapped site holds); removed after."""
    objects = site_objects("qa")
    done = apply(metallb, objects)
    assert done.returncode == 0, done.stderr
    yield objects
    delete(metallb, objects)


def test_the_controller_is_v0_16_1_and_the_api_server_calls_it_here(metallb, kubectl):
    assert "MetalLB controller starting version 0.16.1" in (metallb.work / "metallb-controller.log").read_text()
    hooks = kubectl.json("get", "validatingwebhookconfiguration", "metallb-webhook-configuration")["webhooks"]
    assert sorted(h["name"] for h in hooks) == sorted(h["name"] for h in metallb.webhook_configuration["webhooks"])
    assert len(hooks) == 6 and all(h["clientConfig"]["url"].startswith("https://127.0.0.1:9443/validate-metallb-io-")
                                   and h["clientConfig"]["caBundle"] and h["failurePolicy"] == "Fail" for h in hooks)


def test_its_key_and_log_are_private_and_a_second_controller_is_refused_with_the_reason(metallb, real_api, tmp_path):
    assert (metallb.cert_dir / "tls.key").stat().st_mode & 0o777 == 0o600
    assert (metallb.work / "metallb-controller.log").stat().st_mode & 0o777 == 0o600
    with pytest.raises(MetallbError, match=r"another lab MetalLB controller holds .*port 9443 is fixed upstream"):
        MetallbController.start(real_api, tmp_path, b"", ready_timeout=1)
    assert not (tmp_path / "metallb-controller.log").exists()  # nothing started


@pytest.mark.parametrize("site", SITES)
def test_every_shipped_site_s_pool_and_advertisement_are_accepted(metallb, kubectl, site):
    objects = site_objects(site)
    try:
        done = apply(metallb, objects)
        assert done.returncode == 0, done.stderr
        stored = kubectl.json("get", "ipaddresspool", "mlops-edge-kit", "-n", NAMESPACE)
        assert stored["spec"]["addresses"] == objects[0]["spec"]["addresses"]
        kubectl.run("get", "l2advertisement", "mlops-edge-kit", "-n", NAMESPACE)
    finally:
        delete(metallb, objects)


# (objects, MetalLB's words): each passes the CRD schema (test_the_refusals_are_the_webhook_s below)
REFUSED = {
    "reversed range": ([pool(["10.0.0.9-10.0.0.1"])],
                       'invalid IP range "10.0.0.9-10.0.0.1": start IP "10.0.0.9" is after the end IP "10.0.0.1"'),
    "overlapping the site's pool": ([pool(["192.168.50.205/32"])],  # qa's 192.168.50.200-192.168.50.210
                                    'CIDR "192.168.50.205/32" in pool "other" overlaps with already defined CIDR '
                                    '"192.168.50.200/29"'),
    "bare address": ([pool(["10.0.0.9"])], 'invalid CIDR "10.0.0.9" in pool "other": invalid CIDR "10.0.0.9"'),
    "pool outside metallb-system": ([pool(["10.0.0.0/30"], namespace="default")],
                                    "resource must be created in metallb-system namespace"),
    "bad node selector": ([advertisement({"nodeSelectors": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "Near", "values": ["s1"]}]}]})],
        '"Near" is not a valid label selector operator'),
    "bad pool selector key": ([advertisement({"ipAddressPoolSelectors": [{"matchLabels": {"bad key!": "x"}}]})],
                              'key: Invalid value: "bad key!"'),
    "pool named twice": ([advertisement({"ipAddressPools": ["mlops-edge-kit", "mlops-edge-kit"]})],
                         'duplicate definition of ipAddressPools "mlops-edge-kit"'),
}


@pytest.mark.parametrize("case", REFUSED)
def test_metallb_s_webhook_refuses_in_its_own_words(metallb, kit_pool, case):
    objects, words = REFUSED[case]
    done = apply(metallb, objects)
    assert done.returncode != 0 and "denied the request" in done.stderr and words in done.stderr, done.stderr


def test_the_refusals_are_the_webhook_s(metallb, kubectl, kit_pool):
    """With MetalLB's webhook configuration removed the API server (OpenAPI, CRD schema) accepts every one."""
    kubectl.run("delete", "validatingwebhookconfiguration", "metallb-webhook-configuration")
    try:
        for case, (objects, _) in REFUSED.items():
            done = apply(metallb, objects, dry_run=True)
            assert done.returncode == 0 and "serverside-applied (server dry run)" in done.stdout, (case, done.stderr)
    finally:
        metallb.apply(yaml.safe_dump(metallb.webhook_configuration))
    done = apply(metallb, REFUSED["reversed range"][0], dry_run=True)
    assert done.returncode != 0 and "denied the request" in done.stderr, done.stderr  # back for the tests after


# addresses -> whether MetalLB's webhook takes them as one pool (in the helpers' nodeSubnet 10.9.0.0/24)
ADDRESSES = [
    (["10.9.0.200-10.9.0.210"], True),
    (["10.9.0.200 - 10.9.0.210"], True),
    (["10.9.0.200-10.9.0.200", "10.9.0.240/28"], True),
    (["10.9.0.200-10.9.0.210", "10.9.0.211-10.9.0.220"], True),  # adjacent
    (["10.9.0.241/28"], True),  # host bits set: MetalLB masks them, the kit refuses (stricter)
    (["10.9.0.200"], False),
    (["10.9.0.200-10.9.0.210", "10.9.0.205/32"], False),
    (["10.9.0.200-10.9.0.210", "10.9.0.200-10.9.0.210"], False),
    (["10.9.0.210-10.9.0.200"], False),
    (["010.9.0.200-10.9.0.210"], False),
    (["10.9.0.200-10.9.0.210-10.9.0.220"], False),
    (["10.9.0.200-"], False),
]


def _kit_accepts(tmp_path: Path, addresses: list[str]) -> bool:
    document = valid_document()
    document["metallb"]["addresses"] = addresses
    try:
        load_inventory(str(write_inventory(tmp_path, document)))
    except InventoryError:
        return False
    return True


@pytest.mark.parametrize("addresses, webhook_accepts", ADDRESSES, ids=[" ".join(a) for a, _ in ADDRESSES])
def test_what_the_kit_s_inventory_accepts_the_webhook_accepts(metallb, tmp_path, addresses, webhook_accepts):
    done = apply(metallb, [pool(addresses, name="mlops-edge-kit")], dry_run=True)
    assert (done.returncode == 0) == webhook_accepts, done.stderr
    if not webhook_accepts:
        assert "denied the request" in done.stderr, done.stderr
    assert not _kit_accepts(tmp_path, copy.deepcopy(addresses)) or webhook_accepts
    assert not _fleet_accepts(addresses) or webhook_accepts  # a fleet release carries the site's pool too


def _fleet_accepts(addresses: list[str]) -> bool:
    try:
        FleetMetallb.model_validate({"addresses": list(addresses)})
    except ValidationError:
        return False
    return True


def test_a_release_s_pool_is_the_pool_the_edge_bootstrap_made_so_the_webhook_lets_flux_apply_it(metallb, tmp_path):
    """The edge production site and the fleet's plant-berlin seed are one site (the same range): the release's pool
    and advertisement, applied as kustomize-controller applies (server-side, its field manager, taking ownership:
    fluxcd/pkg ssa ForceOwnership), are the objects the bootstrap made, not a second pool MetalLB refuses."""
    from tests.fleet.conftest import seeds as seeds_fixture
    from tests.fleet.test_render import _render
    edge = site_objects("production")
    assert apply(metallb, edge).returncode == 0
    _, rendered = _render(seeds_fixture.__wrapped__(tmp_path), "production")
    content = next(r for r in rendered if r.site.name == "plant-berlin").content["site.yaml"]
    release = [o for o in yaml.safe_load_all(content) if o["apiVersion"].startswith("metallb.io/")]
    assert {o["kind"] for o in release} == {"IPAddressPool", "L2Advertisement"}
    try:
        done = metallb.kubectl_run("apply", "--server-side", "--force-conflicts", "--field-manager",
                                   "kustomize-controller", "-f", "-", stdin=yaml.safe_dump_all(release))
        assert done.returncode == 0, done.stderr  # before: 'CIDR ... in pool "site" overlaps with already defined'
        pools = metallb.kubectl_run("get", "ipaddresspools", "-n", NAMESPACE, "-o", "name")
        assert pools.stdout.split() == [f"ipaddresspool.metallb.io/{edge[0]['metadata']['name']}"]
    finally:
        delete(metallb, edge)


def test_the_controller_runs_as_its_service_account_and_assigns_a_service_an_address_of_the_kit_s_pool(
        metallb, kit_pool):
    """With only metallb-native.yaml's RBAC (not the lab's admin certificate) the controller still does its job."""
    config = yaml.safe_load(metallb.kubeconfig.read_text())
    user = config["users"][0]["user"]
    assert set(user) == {"tokenFile"} and Path(user["tokenFile"]).stat().st_mode & 0o777 == 0o600
    assert metallb.kubeconfig.stat().st_mode & 0o777 == 0o600
    as_controller = ["--as=system:serviceaccount:metallb-system:controller"]
    assert metallb.kubectl_run("auth", "can-i", "list", "secrets", "-A", *as_controller).stdout.strip() == "no"
    assert metallb.kubectl_run("auth", "can-i", "update", "services", "--subresource=status", "-A",
                               *as_controller).stdout.strip() == "yes"
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lab-lb", "namespace": "default"},
               "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": "none"}}}
    assert apply(metallb, [service]).returncode == 0
    try:
        ingress = _wait_ingress(metallb, "lab-lb")
        pool_ranges = [address_range(a) for a in kit_pool[0]["spec"]["addresses"]]
        assert contains(pool_ranges, ingress), (ingress, kit_pool[0]["spec"])
        assert "forbidden" not in (metallb.work / "metallb-controller.log").read_text()
    finally:
        delete(metallb, [service])


def _wait_ingress(metallb, name: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = metallb.kubectl_run("get", "service", name, "-n", "default", "-o",
                                   "jsonpath={.status.loadBalancer.ingress[0].ip}")
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
        time.sleep(0.5)
    raise AssertionError(f"no address for service {name} in {timeout:.0f} s:\n{metallb.log_tail()}")

