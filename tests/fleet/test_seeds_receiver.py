"""Issue 18 item 6: with the shipped seeds, every site's report reaches the promotion: each site's Provider posts
(generic-hmac, trusting the receiver's CA) to the receiver its env's stack deploys, whose address and CA the seeds
read from that stack (never a second literal); that receiver writes the registry store the promote pipeline reads.
A receiver the seeds would name besides the stack's, or a stack deploying none, is bad seeds (exit 2)."""
import shutil

import pytest
import yaml

from infra.offline.plan import record_env
from infra.stack.stack_config import ROOT
from tests.fleet.test_render import _render
from tests.kit.helpers import kit

SEED_ENVS = {env: spec["stack"] for env, spec in
             yaml.safe_load((ROOT / "fleet" / "fleet.yaml").read_text())["environments"].items()}
FQDN = {env: f"https://mlk-fleet-{env}.westeurope.cloudapp.azure.com:8443" for env in ("qa", "production")}


def stack_receiver(stack: str) -> dict:
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]["mlops-edge-kit:fleetReceiver"]


@pytest.mark.parametrize("env", sorted(SEED_ENVS))
def test_every_seed_site_reports_to_the_receiver_its_stack_deploys(seeds, env):
    stack = SEED_ENVS[env]
    rec = record_env(stack)
    address = rec.outputs["fleetReceiverAddress"]
    assert address == FQDN[env]  # public: the shipped stacks have no VPN or ExpressRoute to the VNET
    _, rendered = _render(seeds, env)
    assert rendered
    for item in rendered:
        objects = {o["kind"]: o for o in item.flux_objects}
        provider = objects["Provider"]["spec"]
        assert provider["type"] == "generic-hmac"
        assert provider["address"] == f"{address}/sites/{env}/{item.site.name}"
        assert provider["certSecretRef"] == {"name": "fleet-notify-ca"}
        assert objects["Secret"]["stringData"] == {"ca.crt": stack_receiver(stack)["ca"]}
    (deployment,) = [r.inputs for r in rec.resources if r.name == "fleet-receiver-deployment"]
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--env") + 1] == env  # it receives for this env's sites ...
    assert command[command.index("--statuses") + 1] == "registry"  # ... into the store the pipeline reads:
    template = yaml.safe_load((ROOT / "pipelines" / "templates" / "fleet-promote.yml").read_text())
    assert {p["name"]: p.get("default") for p in template["parameters"]}["statusesPath"] == "registry"


def project_with(tmp_path, edit_receiver):
    """A project dir with the repo's stack files, Pulumi.prod.yaml's fleetReceiver edited."""
    project = tmp_path / "project"
    project.mkdir()
    for path in ROOT.glob("Pulumi.*.yaml"):
        shutil.copy(path, project)
    document = yaml.safe_load((project / "Pulumi.prod.yaml").read_text())
    edit_receiver(document["config"])
    (project / "Pulumi.prod.yaml").write_text(yaml.safe_dump(document))
    return project


def seeds_with(seeds, **receiver) -> None:
    data = yaml.safe_load((seeds / "fleet.yaml").read_text())
    data["environments"]["production"]["receiver"] |= receiver
    (seeds / "fleet.yaml").write_text(yaml.safe_dump(data))


def test_a_second_receiver_address_or_ca_beside_the_stacks_is_bad_seeds(seeds):
    seeds_with(seeds, address="https://elsewhere.example:8443", ca=stack_receiver("prod")["ca"])
    done = kit("fleet.render", "--env", "production", "--root", str(seeds), "--models", str(seeds.parent / "models"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert ("fleet.yaml: environments.production.receiver.address: Pulumi.prod.yaml deploys this environment's "
            f"receiver at {FQDN['production']}: remove address and ca (they come from the stack)") in done.stderr


def test_a_ca_beside_the_stacks_is_bad_seeds(seeds):
    from fleet.config import FleetError, load_fleet
    seeds_with(seeds, ca=stack_receiver("prod")["ca"])
    with pytest.raises(FleetError, match=r"environments\.production\.receiver\.ca: the CA comes from "
                                         r"Pulumi\.prod\.yaml fleetReceiver\.ca: remove it here"):
        load_fleet(seeds)


@pytest.mark.parametrize("edit", [
    lambda config: config.pop("mlops-edge-kit:fleetReceiver"),
    lambda config: config["mlops-edge-kit:fleetReceiver"].update(environment="prod"),
])
def test_a_stack_deploying_no_receiver_for_the_env_is_bad_seeds(seeds, tmp_path, edit):
    from fleet.config import FleetError, load_fleet
    with pytest.raises(FleetError) as caught:
        load_fleet(seeds, project_dir=project_with(tmp_path, edit))
    assert ("fleet.yaml: environments.production.receiver: no address, and Pulumi.prod.yaml deploys no receiver for "
            "'production' (give address and ca, or set fleetReceiver.environment: production in the stack file)"
            ) in str(caught.value)


def test_the_seeds_read_an_internal_receivers_fixed_ip_from_its_stack(seeds, tmp_path):
    from fleet.config import load_fleet

    def internal(config):
        config["mlops-edge-kit:fleetReceiver"] |= {"exposure": "internal", "loadBalancerIp": "10.40.15.250"}
    fleet = load_fleet(seeds, project_dir=project_with(tmp_path, internal))
    assert fleet.environments["production"].receiver.address == "https://10.40.15.250:8443"
    assert load_fleet(seeds).environments["production"].receiver.address == FQDN["production"]
