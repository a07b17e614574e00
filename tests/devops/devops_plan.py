"""Record deploy_devops under Pulumi mocks, with platform outputs as the platform stack would give them."""
import json
from pathlib import Path

import pulumi
import yaml

from agents.settings import AgentsSettings
from infra.devops.deploy import deploy_devops
from infra.devops.settings import DevOpsSettings
from infra.offline.mocks import SUBSCRIPTION_ID, AzureMocks
from infra.offline.runtime import Recording, record

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "mlops-edge-kit"
KIT_ENVS = ("qa", "uat", "prod")
PAT = "pat-7f3c1e9b2d4a6c8e0f1a3b5d7c9e1f3a"
AKS_KUBECONFIG = "apiVersion: v1\nkind: Config\nusers:\n- name: aks\n  user: {token: aks-token-c4e8a0f2b6d1}\n"
KUBECONFIG = "apiVersion: v1\nkind: Config\nusers:\n- name: edge\n  user: {token: edge-token-5b1d9f3e7a2c}\n"


class DevOpsMocks(AzureMocks):
    """AzureMocks, with the promotion source's stack outputs as that env's platform would export them."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        if args.typ == "pulumi:pulumi:StackReference":
            source_env = args.inputs["name"].rsplit("/", 1)[-1]
            outputs = {"registryId": platform_ids(source_env)["registryId"]}
            return args.name, {"name": args.inputs["name"], "outputs": outputs}
        return super().new_resource(args)


def kit_blocks(env: str) -> tuple[dict, dict]:
    """The kit's (devops, agents) settings blocks for env, from Pulumi.<env>.yaml."""
    stack = yaml.safe_load((ROOT / f"Pulumi.{env}.yaml").read_text())["config"]
    return stack[f"{PROJECT}:devops"], stack[f"{PROJECT}:agents"]


def kit_settings(env: str) -> tuple[DevOpsSettings, AgentsSettings]:
    devops, agents = kit_blocks(env)
    return DevOpsSettings.model_validate(devops), AgentsSettings.model_validate(agents)


def stack_tags(env: str) -> dict[str, str]:
    return {"env": env, "owner": "platform-team", "cost-center": "cc-4711", "managed-by": "pulumi/mlops-edge-kit"}


def platform_ids(env: str) -> dict[str, str]:
    """The platform stack outputs deploy_devops reads, as the platform of env would export them."""
    group = f"rg-mlk-{env}"
    base = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{group}/providers"
    return {"resourceGroupName": group, "location": "westeurope", "registryLoginServer": f"mlk{env}registry.azurecr.io",
            "registryId": f"{base}/Microsoft.ContainerRegistry/registries/mlk{env}registry",
            "clusterId": f"{base}/Microsoft.ContainerService/managedClusters/aks-mlk-{env}",
            "keyVaultName": f"kv-mlk-{env}"}


def platform_outputs(env: str) -> dict[str, pulumi.Output]:
    outputs = {key: pulumi.Output.from_input(value) for key, value in platform_ids(env).items()}
    return outputs | {"kubeconfig": pulumi.Output.secret(AKS_KUBECONFIG)}


def record_devops(env: str, devops: dict, agents: dict, secrets: dict[str, str] | None = None) -> Recording:
    """Run deploy_devops for env with these settings blocks; secrets are secret config values."""
    settings, agent_settings = DevOpsSettings.model_validate(devops), AgentsSettings.model_validate(agents)

    def program():
        outputs = deploy_devops(settings, agent_settings, env=env, platform=platform_outputs(env), tags=stack_tags(env))
        for name, value in outputs.items():
            pulumi.export(name, value)

    secrets = secrets if secrets is not None else {k: KUBECONFIG if "kube" in k.lower() else PAT
                                                   for k in settings.secret_config_keys(agent_settings)}
    config = {f"{PROJECT}:{k}": v for k, v in secrets.items()}
    return record(program, project=PROJECT, stack=env, config=config, secret_keys=list(config), mocks=DevOpsMocks())



def inputs_text(recording: Recording) -> str:
    return json.dumps([r.as_json() for r in recording.resources]) + json.dumps(recording.outputs)
