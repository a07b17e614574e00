"""Fixtures for the agents runtime tests: the Azure DevOps REST stand-in."""
import pytest

from tests.agents_runtime.azdo_standin import AzdoStandin, StandinState

GOOD_TOKEN = "pat-good-0123456789"


@pytest.fixture
def standin():
    server = AzdoStandin(StandinState()).start()
    yield server
    server.stop()
