"""Kubeconfig: k3s.yaml renamed to the site field by field and merged without losing other contexts."""
import stat

import pytest
import yaml

from edge_hosts.access.kubeconfig import KubeconfigError, merge_into, site_kubeconfig

K3S_YAML = """apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EtZGVmYXVsdA==
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Y2VydC1kZWZhdWx0
    client-key-data: a2V5LWRlZmF1bHQ=
"""

OTHER = {"apiVersion": "v1", "kind": "Config", "current-context": "aks-prod",
         "clusters": [{"name": "aks-prod", "cluster": {"server": "https://aks.example:443"}},
                      {"name": "default", "cluster": {"server": "https://other-default:6443"}}],
         "users": [{"name": "aks-prod", "user": {"token": "t"}}],
         "contexts": [{"name": "aks-prod", "context": {"cluster": "aks-prod", "user": "aks-prod"}}]}


def test_site_config_renames_every_field_and_points_at_the_server():
    config = site_kubeconfig(K3S_YAML, "plant1", "https://172.20.4.11:6443")
    assert config["clusters"] == [{"name": "plant1", "cluster": {
        "certificate-authority-data": "Q0EtZGVmYXVsdA==", "server": "https://172.20.4.11:6443"}}]
    assert config["users"][0] == {"name": "plant1", "user": {"client-certificate-data": "Y2VydC1kZWZhdWx0",
                                                              "client-key-data": "a2V5LWRlZmF1bHQ="}}
    assert config["contexts"][0] == {"name": "plant1", "context": {"cluster": "plant1", "user": "plant1"}}


def test_a_cluster_named_default_elsewhere_is_not_touched(tmp_path):
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(OTHER))
    assert merge_into(path, site_kubeconfig(K3S_YAML, "plant1", "https://172.20.4.11:6443"))
    merged = yaml.safe_load(path.read_text())
    assert [c["name"] for c in merged["contexts"]] == ["aks-prod", "plant1"]
    assert {c["name"]: c["cluster"]["server"] for c in merged["clusters"]} == {
        "aks-prod": "https://aks.example:443", "default": "https://other-default:6443",
        "plant1": "https://172.20.4.11:6443"}
    assert merged["current-context"] == "aks-prod"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_merge_replaces_the_site_entry_and_is_idempotent(tmp_path):
    path = tmp_path / "kube" / "config"
    assert merge_into(path, site_kubeconfig(K3S_YAML, "qa", "https://10.0.0.1:6443"))
    assert yaml.safe_load(path.read_text())["current-context"] == "qa"
    assert not merge_into(path, site_kubeconfig(K3S_YAML, "qa", "https://10.0.0.1:6443"))
    assert merge_into(path, site_kubeconfig(K3S_YAML, "qa", "https://10.0.0.2:6443"))
    merged = yaml.safe_load(path.read_text())
    assert [c["cluster"]["server"] for c in merged["clusters"]] == ["https://10.0.0.2:6443"]


def test_a_broken_kubeconfig_is_left_alone(tmp_path):
    path = tmp_path / "config"
    path.write_text("clusters: [unclosed\n")
    with pytest.raises(KubeconfigError, match="not valid YAML"):
        merge_into(path, site_kubeconfig(K3S_YAML, "qa", "https://10.0.0.1:6443"))
    assert path.read_text() == "clusters: [unclosed\n"
