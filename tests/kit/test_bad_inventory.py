"""Bad edge inventories, as a user meets them with ./kit: exit 2 naming the file and the key, before any host is
contacted, no traceback."""
import yaml

from tests.kit.helpers import kit

SITE = {"site": "s1", "ssh": {"user": "root", "keyFile": "id_ed25519", "knownHosts": "known_hosts"},
        "k3s": {"version": "v1.37.2+k3s1"}, "metallb": {"version": "v0.16.1", "addresses": ["127.0.0.200-127.0.0.210"]},
        "nodeSubnet": "127.0.0.0/24", "bundle": "bundle",
        "hosts": [{"name": "h1", "address": "127.0.0.11", "role": "server", "arch": "x86_64"},
                  {"name": "h2", "address": "127.0.0.12", "role": "agent", "arch": "x86_64",
                   "ssh": {"keyFile": "other_key"}}]}


def refused(*args: str) -> list[str]:
    done = kit(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr.splitlines()


def test_an_inventory_path_that_is_a_directory(tmp_path):
    lines = refused("edge.plan", "--site", str(tmp_path) + "/")
    assert any(f"{tmp_path}: is a directory" in line for line in lines), lines


def test_an_empty_inventory_names_every_missing_key(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text("")
    text = "\n".join(refused("edge.plan", "--site", str(path)))
    for key in ("site", "k3s", "metallb", "nodeSubnet", "hosts"):
        assert f"{path}: {key}: Field required" in text, text


def test_missing_private_keys_are_bad_input_before_any_connection(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(SITE))
    (tmp_path / "bundle").mkdir()
    text = "\n".join(refused("edge.status", "--site", str(path), "--json"))
    assert f"{path}: ssh.keyFile: {tmp_path / 'id_ed25519'} is not a readable private key file" in text, text
    assert f"{path}: hosts[1].ssh.keyFile: {tmp_path / 'other_key'} is not a readable private key file" in text
