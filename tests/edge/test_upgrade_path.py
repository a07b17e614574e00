"""The upgrade path check alone: one minor at a time (docs.k3s.io/upgrades/manual), exactly at the boundary."""
from types import SimpleNamespace

import pytest

from edge_hosts.operations.upgrade import UpgradeRefused, check_path


def pinned(version: str) -> SimpleNamespace:
    return SimpleNamespace(source="site.yaml", k3s=SimpleNamespace(version=version))


def test_a_pin_one_minor_ahead_is_allowed():
    check_path(pinned("v1.33.1+k3s1"), {"a": "v1.32.5+k3s1", "b": "v1.33.0+k3s1"})


def test_a_pin_that_skips_exactly_one_minor_is_refused_naming_the_minor_between():
    with pytest.raises(UpgradeRefused) as err:
        check_path(pinned("v1.33.1+k3s1"), {"a": "v1.31.9+k3s1", "b": "v1.32.5+k3s1"})
    assert "skips minor versions for a (v1.31.9+k3s1):" in str(err.value)
    assert "pin the newest patch of v1.32 first" in str(err.value)
