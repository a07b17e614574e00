"""Recordings of deploy_devops for the kit's qa, uat and prod configurations, made once per session."""
import pytest

from infra.offline.runtime import Recording
from tests.devops.devops_plan import KIT_ENVS, kit_blocks, record_devops


@pytest.fixture(scope="session")
def kit_recordings() -> dict[str, Recording]:
    return {env: record_devops(env, *kit_blocks(env)) for env in KIT_ENVS}
