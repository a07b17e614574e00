"""Edge tests: the lab's fixtures, and the kit's local state kept in a temporary XDG_CONFIG_HOME."""
import pytest

from tests.lab.fixtures import lab_factory, module_lab_factory  # noqa: F401


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    """Token store and kubeconfig of each test live under its own tmp_path."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "xdg"
