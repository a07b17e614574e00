"""The Pulumi program's entry point: read the stack's settings from Pulumi config, then declare the platform."""
import json
import os

import pulumi
from pulumi_azure_native import authorization

from infra.access.principal import principal_type
from infra.platform import build_platform
from infra.stack.settings import StackSettings
from infra.stack.stack_config import SettingsError, load_stack


def config_values(config: pulumi.Config) -> dict:
    """This project's settings as set in Pulumi.<stack>.yaml (structured values arrive as JSON)."""
    values = {}
    for field in StackSettings.model_fields.values():
        raw = config.get(field.alias)
        if raw is not None:
            values[field.alias] = json.loads(raw) if raw[:1] in "{[" else raw
    return values


def main() -> None:
    env = pulumi.get_stack()
    try:
        stack = load_stack(config_values(pulumi.Config()), source=f"Pulumi.{env}.yaml", env=env,
                           organization=pulumi.get_organization())
    except SettingsError as err:
        raise pulumi.RunError(f"invalid stack settings:\n{err}") from None
    client = authorization.get_client_config_output()
    deployer_type = authorization.get_client_token_output().token.apply(lambda t: principal_type(t, os.environ))
    outputs = build_platform(stack, tenant_id=client.tenant_id, subscription_id=client.subscription_id,
                             deployer_object_id=client.object_id, deployer_type=deployer_type)
    for name, value in outputs.items():
        pulumi.export(name, value)
