"""An edge agent pool must have a node to run on: the plan refuses one its site's inventory cannot schedule."""
import shutil

import pytest
import yaml
from pydantic import ValidationError

from agents.edge_placement import unschedulable_pools
from agents.settings import AgentsSettings
from infra.offline.plan import PlanError, record_env
from infra.stack.stack_config import ROOT, available_envs

AGENTS = {"organizationUrl": "https://dev.azure.com/contoso", "image": {"tag": "4.269.0"}}


def agents_with(pools: list[dict], site: str = "plant") -> AgentsSettings:
    return AgentsSettings.model_validate({**AGENTS, "edgeSites": [
        {"name": site, "kubeconfigSecretKey": "k", "pools": pools}]})


@pytest.fixture
def sites(tmp_path):
    """A sites directory with one inventory, written from the hosts given."""
    folder = tmp_path / "edge_hosts" / "sites"
    folder.mkdir(parents=True)

    def write(hosts: list[dict], k3s: dict | None = None, site: str = "plant"):
        (folder / f"{site}.yaml").write_text(yaml.safe_dump({"site": site, "k3s": k3s or {}, "hosts": hosts}))
        return folder
    return write


@pytest.mark.parametrize("env", available_envs())
def test_every_shipped_edge_pool_has_a_node(env):
    stack = yaml.safe_load((ROOT / f"Pulumi.{env}.yaml").read_text())["config"]
    assert unschedulable_pools(AgentsSettings.model_validate(stack["mlops-edge-kit:agents"])) == []


def test_armv7_builds_have_their_pool_where_the_armv7_host_is():
    uat = yaml.safe_load((ROOT / "Pulumi.uat.yaml").read_text())["config"]["mlops-edge-kit:agents"]
    [arm] = [p for site in uat["edgeSites"] for p in site["pools"] if p["arch"] == "arm"]
    assert arm["poolName"] == "mlops-edge-uat-arm" and arm["tolerate"] == ["dedicated=camera:NoSchedule"]
    prod = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]["mlops-edge-kit:agents"]
    assert all(p["arch"] != "arm" for site in prod["edgeSites"] for p in site["pools"])


def test_the_plan_refuses_production_armv7_pool_naming_file_and_key(tmp_path):
    stack = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    stack["config"]["mlops-edge-kit:agents"]["edgeSites"][0]["pools"].append(
        {"arch": "arm", "poolName": "mlops-edge-production-arm", "maxReplicas": 2})
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(stack))
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    with pytest.raises(PlanError) as caught:
        record_env("prod", root=tmp_path)
    [problem] = [p for p in caught.value.problems if "can never schedule" in p]
    assert problem.startswith("Pulumi.prod.yaml: config.mlops-edge-kit:agents.edgeSites[0].pools[1]: ")
    assert "no host of edge_hosts/sites/production.yaml is arm" in problem and "hosts[].arch" in problem


def test_a_tainted_host_takes_only_pools_that_tolerate_it(sites):
    folder = sites([{"name": "cam", "role": "agent", "arch": "armv7", "taints": ["dedicated=camera:NoSchedule"]}])
    [(key, problem)] = unschedulable_pools(agents_with([{"arch": "arm", "poolName": "p"}]), folder)
    assert key == "agents.edgeSites[0].pools[0]" and "cam" in problem and "tolerate" in problem
    for tolerate in (["dedicated=camera:NoSchedule"], ["dedicated:NoSchedule"]):
        assert unschedulable_pools(agents_with([{"arch": "arm", "poolName": "p", "tolerate": tolerate}]), folder) == []
    wrong_value = agents_with([{"arch": "arm", "poolName": "p", "tolerate": ["dedicated=ml:NoSchedule"]}])
    assert unschedulable_pools(wrong_value, folder)


def test_prefer_no_schedule_does_not_block_and_aliases_name_the_same_architecture(sites):
    folder = sites([{"name": "a", "arch": "aarch64", "taints": ["busy=yes:PreferNoSchedule"]},
                    {"name": "b", "arch": "armv7l"}])
    assert unschedulable_pools(agents_with([{"arch": "arm64", "poolName": "p"},
                                            {"arch": "arm", "poolName": "q"}]), folder) == []


def test_a_server_tainted_through_k3s_config_takes_no_untolerating_pool(sites):
    folder = sites([{"name": "srv", "role": "server", "arch": "arm64"}],
                   k3s={"serverConfig": {"node-taint": ["CriticalAddonsOnly=true:NoExecute"]}})
    assert unschedulable_pools(agents_with([{"arch": "arm64", "poolName": "p"}]), folder)


def test_a_site_without_an_inventory_is_named(sites):
    folder = sites([{"name": "x", "arch": "arm64"}], site="other")
    [(key, problem)] = unschedulable_pools(agents_with([{"arch": "arm64", "poolName": "p"}]), folder)
    assert key == "agents.edgeSites[0].name" and "edge_hosts/sites/plant.yaml" in problem and "does not exist" in problem


def test_tolerate_is_checked_and_only_for_edge_pools():
    with pytest.raises(ValidationError, match="a taint is key=value:Effect"):
        agents_with([{"arch": "arm", "poolName": "p", "tolerate": ["dedicated=camera"]}])
    with pytest.raises(ValidationError, match="tolerate is for edge site pools"):
        AgentsSettings.model_validate({**AGENTS, "pools": [
            {"arch": "amd64", "poolName": "p", "tolerate": ["a=b:NoSchedule"]}]})
