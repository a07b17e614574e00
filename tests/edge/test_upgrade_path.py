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


def test_a_pin_three_minors_ahead_names_each_minor_between_in_order_and_every_node_behind():
    with pytest.raises(UpgradeRefused) as err:
        check_path(pinned("v1.37.2+k3s1"), {"b": "v1.34.1+k3s1", "a": "v1.35.0+k3s1", "c": "v1.36.4+k3s1"})
    assert "skips minor versions for a (v1.35.0+k3s1), b (v1.34.1+k3s1): k3s upgrades one minor" in str(err.value)
    assert "pin the newest patch of v1.35, then v1.36 first (edge.bootstrap each), then v1.37.2+k3s1" in str(err.value)


def test_a_pin_a_minor_behind_any_node_is_refused_as_a_downgrade_naming_every_node_ahead():
    with pytest.raises(UpgradeRefused) as err:
        check_path(pinned("v1.36.9+k3s1"), {"b": "v1.37.2+k3s1", "a": "v1.37.1+k3s1", "c": "v1.36.0+k3s1"})
    assert str(err.value).startswith("site.yaml: k3s.version: v1.36.9+k3s1 is a minor behind a (v1.37.1+k3s1), "
                                     "b (v1.37.2+k3s1): k3s is not downgraded node by node; roll back by restoring")
