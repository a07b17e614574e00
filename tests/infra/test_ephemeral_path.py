"""Issue 20.1: an ephemeral copy of a private env is reachable from the base env's agents that run `up`."""
import copy
import shutil
from datetime import datetime, timezone
from ipaddress import IPv4Network

import pytest

from infra.lifecycle.ephemeral import plan_ephemeral
from infra.lifecycle.ephemeral_network import POOL, address_block
from infra.lifecycle.stack_files import write_atomically
from infra.offline import policies
from infra.offline.plan import record_env
from infra.stack.stack_config import ROOT, stack_file

PEERING = "azure-native:network:VirtualNetworkPeering"
CLUSTER = "azure-native:containerservice:ManagedCluster"


@pytest.fixture(scope="module")
def ephemeral(tmp_path_factory):
    """An ephemeral stack planned from qa (private networking), written and recorded as `up` would run it."""
    root = tmp_path_factory.mktemp("root")
    shutil.copy(ROOT / "Pulumi.qa.yaml", root / "Pulumi.qa.yaml")
    planned = plan_ephemeral("pr-7", "4h", "qa", root, datetime.now(timezone.utc))
    write_atomically(stack_file(planned.name, root), planned.config)
    return planned, record_env(planned.name, root=root)


def test_the_copy_takes_its_own_block_and_the_base_layout(ephemeral):
    planned, _ = ephemeral
    network = planned.config["mlops-edge-kit:network"]
    space = IPv4Network(network["addressSpace"])
    assert space.subnet_of(POOL) and not space.overlaps(IPv4Network("10.20.0.0/16"))
    assert network["subnets"] == {"aksNodes": str(IPv4Network((int(space.network_address), 20))),
                                  "privateEndpoints": str(IPv4Network((int(space.network_address) + 17 * 256, 24)))}
    assert network["peerings"] == [{"resourceGroup": "rg-mlk-qa", "vnet": "vnet-mlk-qa", "addressSpace": "10.20.0.0/16"}]


def test_the_plan_peers_both_ways_and_asks_for_the_public_fqdn(ephemeral):
    planned, rec = ephemeral
    peerings = {(p.inputs["resourceGroupName"], p.inputs["virtualNetworkName"]): p.inputs
                for p in rec.of_type(PEERING)}
    mine = f"vnet-mlk-{planned.name}"
    there = peerings[("rg-mlk-qa", "vnet-mlk-qa")]
    here = peerings[(f"rg-mlk-{planned.name}", mine)]
    assert there["remoteVirtualNetwork"]["id"].endswith(f"/virtualNetworks/{mine}")
    assert here["remoteVirtualNetwork"]["id"].endswith("/resourceGroups/rg-mlk-qa/providers/Microsoft.Network/"
                                                       "virtualNetworks/vnet-mlk-qa")
    assert there["allowVirtualNetworkAccess"] is True and here["allowForwardedTraffic"] is False
    access = rec.one(CLUSTER).inputs["apiServerAccessProfile"]
    assert access == {"enablePrivateCluster": True, "enablePrivateClusterPublicFQDN": True}


def test_the_plan_fails_without_the_path(ephemeral):
    _, rec = ephemeral
    assert policies.violations(rec, protected=False) == []
    broken = copy.deepcopy(rec)
    broken.resources = [r for r in broken.resources if not (r.type == PEERING and "qa-to" in r.name)]
    assert any("out of reach of the agent running `up`" in p for p in policies.violations(broken, protected=False))
    broken = copy.deepcopy(rec)
    broken.one(CLUSTER).inputs["apiServerAccessProfile"]["enablePrivateClusterPublicFQDN"] = False
    assert any("enablePrivateClusterPublicFQDN must be true" in p for p in policies.violations(broken, protected=False))


def test_non_ephemeral_private_envs_keep_no_public_fqdn(recordings):
    access = recordings["prod"].one(CLUSTER).inputs["apiServerAccessProfile"]
    assert access["enablePrivateClusterPublicFQDN"] is False and not recordings["prod"].of_type(PEERING)


def test_the_block_avoids_the_base_and_is_stable():
    base = IPv4Network("10.128.0.0/16")
    assert address_block("pr-1-abcdef", base) == address_block("pr-1-abcdef", base)
    assert all(not address_block(f"pr-{i}", base).overlaps(base) for i in range(300))
    assert len({address_block(f"pr-{i}", IPv4Network("10.20.0.0/16")) for i in range(300)}) > 100


def test_peering_with_an_overlapping_space_is_refused(stack_root, tmp_path):
    from infra.offline.plan import PlanError

    def edit(config):
        config["mlops-edge-kit:network"]["peerings"] = [
            {"resourceGroup": "rg-mlk-qa", "vnet": "vnet-mlk-qa", "addressSpace": "10.10.128.0/17"}]
    with pytest.raises(PlanError) as err:
        record_env(stack_root(edit), root=tmp_path)
    assert any("Pulumi.dev.yaml" in p and "overlaps addressSpace" in p for p in err.value.problems), err.value.problems


def test_the_kubeconfig_names_the_public_fqdn_only_where_a_peered_vnet_needs_it(tmp_path, monkeypatch):
    """`az aks get-credentials --public-fqdn` asks listClusterUserCredential for serverFqdn 'public'."""
    from pulumi_azure_native import containerservice

    asked = []
    real = containerservice.list_managed_cluster_user_credentials_output

    def spy(**kwargs):
        asked.append(kwargs.get("server_fqdn"))
        return real(**kwargs)
    monkeypatch.setattr(containerservice, "list_managed_cluster_user_credentials_output", spy)
    shutil.copy(ROOT / "Pulumi.qa.yaml", tmp_path / "Pulumi.qa.yaml")
    planned = plan_ephemeral("pr-8", "1h", "qa", tmp_path, datetime.now(timezone.utc))
    write_atomically(stack_file(planned.name, tmp_path), planned.config)
    record_env(planned.name, root=tmp_path)
    record_env("qa", root=tmp_path)
    assert asked == ["public", None]


def test_a_copy_made_in_a_pipeline_step_signs_kubernetes_in_as_the_pipeline(tmp_path, monkeypatch):
    """Issue 20.2: qa's azurecli kubelogin would reuse AzureCLI@2's one-shot login; the copy uses azurepipelines."""
    shutil.copy(ROOT / "Pulumi.qa.yaml", tmp_path / "Pulumi.qa.yaml")
    outside = plan_ephemeral("pr-9", "1h", "qa", tmp_path, datetime.now(timezone.utc))
    assert "kubelogin" not in outside.config["mlops-edge-kit:cluster"]
    for name in ("SYSTEM_OIDCREQUESTURI", "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID", "AZURESUBSCRIPTION_CLIENT_ID",
                 "AZURESUBSCRIPTION_TENANT_ID"):
        monkeypatch.setenv(name, "set-by-AzureCLI@2")
    inside = plan_ephemeral("pr-9", "1h", "qa", tmp_path, datetime.now(timezone.utc))
    cluster = inside.config["mlops-edge-kit:cluster"]
    assert cluster["kubelogin"] == {"method": "azurepipelines"}
    assert {k: v for k, v in cluster.items() if k != "kubelogin"} == outside.config["mlops-edge-kit:cluster"]
