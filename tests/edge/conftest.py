"""Edge tests: the lab's fixtures, and the kit's local state kept in a temporary XDG_CONFIG_HOME."""
import pytest

from helpers import kit_state_under
from tests.lab.fixtures import lab_factory, module_lab_factory  # noqa: F401


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    """Token store and kubeconfig of each test live under its own tmp_path."""
    return kit_state_under(tmp_path, monkeypatch)
