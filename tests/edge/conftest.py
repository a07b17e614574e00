"""Edge tests: the lab's fixtures, and the kit's local state kept in a temporary XDG_CONFIG_HOME."""
import pytest

from helpers import kit_state_under
from tests.lab.fixtures import lab_factory, module_lab_factory  # noqa: F401


@pytest.fixture(scope="module")
def state(request, tmp_path_factory):
    """A directory that lives as long as the test module (its site files, kubeconfig, shared kit state)."""
    return tmp_path_factory.mktemp(request.module.__name__.removeprefix("test_edge_") + "-state")


@pytest.fixture(autouse=True)
def private_state(request, tmp_path, monkeypatch):
    """The kit's token store and kubeconfig: under each test's own tmp_path, or, in a module that sets
    SHARED_STATE = True, one for the whole module (re-runs keep the site's tokens, as on an operator's machine)."""
    shared = getattr(request.module, "SHARED_STATE", False)
    return kit_state_under(request.getfixturevalue("state") if shared else tmp_path, monkeypatch)
