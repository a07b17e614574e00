"""Inventory loading and validation: every error class, all reported at once, exit 2 from the CLI."""
import pytest

from edge_hosts.inventory.load import SITES_DIR, InventoryError, load_inventory, resolve_site
from helpers import kit, valid_document, write_inventory


def problems_of(tmp_path, document) -> str:
    path = write_inventory(tmp_path, document)
    with pytest.raises(InventoryError) as caught:
        load_inventory(str(path))
    return str(caught.value)


@pytest.mark.parametrize("site", ["qa", "uat", "production"])
def test_example_sites_load(site):
    inventory = load_inventory(site)
    assert inventory.site == site
    assert len(inventory.servers) % 2 == 1
    assert inventory.ssh.known_hosts.is_absolute()


def test_relative_paths_resolve_against_the_inventory_directory(tmp_path):
    inventory = load_inventory(str(write_inventory(tmp_path, valid_document())))
    assert inventory.ssh.key_file == tmp_path / "id_ed25519"
    assert inventory.bundle == tmp_path / "bundle"
    assert inventory.first_server.name == "s1"


def test_host_ssh_overrides_apply_to_that_host_only():
    inventory = load_inventory("production")
    assert inventory.ssh_for(inventory.host("plant1-vision")).port == 2222
    assert inventory.ssh_for(inventory.host("plant1-srv-1")).port == 22


def test_site_name_or_path():
    assert resolve_site("qa") == SITES_DIR / "qa.yaml"
    assert str(resolve_site("./x/site.yaml")) == "x/site.yaml"


def test_missing_site_lists_known_sites():
    with pytest.raises(InventoryError, match="no such inventory file.*production"):
        load_inventory("nope")


def test_duplicate_names_and_addresses(tmp_path):
    doc = valid_document()
    doc["hosts"][1].update(name="s1", address="10.9.0.11")
    text = problems_of(tmp_path, doc)
    assert "hosts[1].name: duplicate name 's1'" in text
    assert "hosts[0].address: duplicate address '10.9.0.11'" in text


def test_even_number_of_servers(tmp_path):
    doc = valid_document()
    doc["hosts"][1]["role"] = "server"
    assert "2 servers: a site needs an odd number of servers" in problems_of(tmp_path, doc)


def test_metallb_range_outside_subnet_and_overlapping_hosts(tmp_path):
    doc = valid_document()
    doc["metallb"]["addresses"] = ["10.9.1.200-10.9.1.210", "10.9.0.10-10.9.0.20"]
    text = problems_of(tmp_path, doc)
    assert "metallb.addresses[0]: range 10.9.1.200-10.9.1.210 is outside nodeSubnet 10.9.0.0/24" in text
    assert "metallb.addresses[1]: range 10.9.0.10-10.9.0.20 overlaps host s1 (10.9.0.11)" in text
    assert "overlaps host a1 (10.9.0.12)" in text


def test_metallb_ranges_overlapping_each_other(tmp_path):
    """MetalLB's webhook refuses them (tests/realapi/test_metallb.py): adjacent ranges are fine."""
    doc = valid_document()
    doc["metallb"]["addresses"] = ["10.9.0.200-10.9.0.210", "10.9.0.211-10.9.0.215", "10.9.0.208/29",
                                   "10.9.0.215-10.9.0.220"]
    text = problems_of(tmp_path, doc)
    assert "metallb.addresses[2]: range 10.9.0.208-10.9.0.215 overlaps metallb.addresses[0] " \
           "(10.9.0.200-10.9.0.210)" in text
    assert "metallb.addresses[2]: range 10.9.0.208-10.9.0.215 overlaps metallb.addresses[1] " \
           "(10.9.0.211-10.9.0.215)" in text
    assert "metallb.addresses[3]: range 10.9.0.215-10.9.0.220 overlaps metallb.addresses[1]" in text
    assert "overlaps metallb.addresses[2]" in text and "addresses[1]: range 10.9.0.211" not in text
    doc["metallb"]["addresses"] = ["10.9.0.200-10.9.0.210", "10.9.0.211-10.9.0.215"]
    assert load_inventory(str(write_inventory(tmp_path, doc))).metallb.addresses == doc["metallb"]["addresses"]


def test_a_bare_metallb_address_is_refused(tmp_path):
    """MetalLB's webhook refuses it as an invalid CIDR (tests/realapi/test_metallb.py): the kit says how to write it."""
    doc = valid_document()
    doc["metallb"]["addresses"] = ["10.9.0.200"]
    assert "metallb.addresses: Value error, '10.9.0.200' is not an address range 'a-b' or a CIDR: a single address " \
           "is '10.9.0.200/32'" in problems_of(tmp_path, doc)
    doc["metallb"]["addresses"] = ["10.9.0.200/32"]
    assert load_inventory(str(write_inventory(tmp_path, doc))).metallb.addresses == ["10.9.0.200/32"]


def test_bad_range_syntax(tmp_path):
    doc = valid_document()
    doc["metallb"]["addresses"] = ["10.9.0.220-10.9.0.200"]
    assert "metallb.addresses: Value error, range '10.9.0.220-10.9.0.200' ends before it starts" in \
        problems_of(tmp_path, doc)


def test_unknown_arch(tmp_path):
    doc = valid_document()
    doc["hosts"][1]["arch"] = "mips"
    assert "hosts[1].arch: Input should be 'x86_64', 'arm64' or 'armv7'" in problems_of(tmp_path, doc)


@pytest.mark.parametrize("section,version,expected", [
    ("k3s", "latest", "k3s.version: Value error, 'latest' is not a pinned k3s version"),
    ("k3s", "v1.31", "k3s.version: Value error, 'v1.31' is not a pinned k3s version"),
    ("metallb", "main", "metallb.version: Value error, 'main' is not a pinned MetalLB version"),
])
def test_unpinned_versions(tmp_path, section, version, expected):
    doc = valid_document()
    doc[section]["version"] = version
    assert expected in problems_of(tmp_path, doc)


def test_online_site_needs_pinned_sha256_for_unchecksummed_files(tmp_path):
    doc = valid_document()
    del doc["bundle"]
    text = problems_of(tmp_path, doc)
    assert "k3s.installScriptSha256: required when no bundle is given" in text
    assert "metallb.manifestSha256: required when no bundle is given" in text


def test_unknown_keys_are_refused(tmp_path):
    doc = valid_document()
    doc["ssh"]["password"] = "x"
    assert "ssh.password: Extra inputs are not permitted" in problems_of(tmp_path, doc)


def test_every_problem_is_reported_at_once_with_file_and_key_path(tmp_path):
    doc = valid_document()
    doc["site"] = "Bad Site"
    doc["hosts"][0]["arch"] = "sparc"
    doc["hosts"].append({"name": "a1", "address": "10.9.0.12", "role": "agent", "arch": "x86_64"})
    doc["metallb"]["addresses"] = ["10.9.0.12/32"]
    lines = problems_of(tmp_path, doc).splitlines()
    path = str(tmp_path / "site.yaml")
    assert all(line.startswith(f"{path}: ") for line in lines)
    text = "\n".join(lines)
    for expected in ("site: String should match pattern", "hosts[0].arch:", "hosts[2].name: duplicate name 'a1'",
                     "hosts[1].address: duplicate address", "metallb.addresses[0]: range 10.9.0.12-10.9.0.12 overlaps"):
        assert expected in text


def test_cli_reports_bad_inventory_with_exit_2_and_no_traceback(tmp_path):
    doc = valid_document()
    doc["hosts"][0]["arch"] = "mips"
    doc["k3s"]["version"] = "stable"
    path = write_inventory(tmp_path, doc)
    done = kit("edge.plan", "--site", str(path))
    assert done.returncode == 2
    assert "hosts[0].arch" in done.stderr and "k3s.version" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_cli_refuses_unknown_hosts_and_bad_parallel(tmp_path):
    path = write_inventory(tmp_path, valid_document())
    (tmp_path / "bundle").mkdir()
    (tmp_path / "id_ed25519").write_text("a key")  # refused before any connection, like a missing key would be
    done = kit("edge.bootstrap", "--site", str(path), "--hosts", "s1,zz")
    assert done.returncode == 2 and "--hosts: unknown host(s) zz" in done.stderr
    done = kit("edge.bootstrap", "--site", str(path), "--parallel", "0")
    assert done.returncode == 2 and "--parallel: must be at least 1" in done.stderr
