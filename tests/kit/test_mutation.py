"""`./kit mutate`: real mutmut over a module in a copy of the checkout, scored by the tests it is given."""
import re

from tests.kit.helpers import kit

MODULE = "edge_hosts/operations/upgrade.py"  # its listed mutants (the upgrade path) are few and tested in-process


def scored(cache, *tests: str) -> tuple[int, int, set[str]]:
    """(killed, mutants, survivors) of one `./kit mutate --module` run (its copy of the checkout under `cache`)."""
    done = kit("mutate", "--module", MODULE, *(["--tests", " ".join(tests)] if tests else []), "--children", "2",
               XDG_CACHE_HOME=str(cache))
    assert done.returncode == 0, done.stdout + done.stderr
    killed, total = map(int, re.search(rf"^{re.escape(MODULE)}\s+(\d+) of\s+(\d+) killed", done.stdout, re.M).groups())
    return killed, total, set(re.findall(r"^  (\S+: \w[\w ]*)$", done.stdout, re.M))


def test_mutate_scores_a_module_by_its_tests_and_names_the_survivors(tmp_path):
    killed, total, survivors = scored(tmp_path)
    weak_killed, weak_total, weak_survivors = scored(tmp_path, "tests/edge/test_upgrade_path.py", "-k",
                                                     "one_minor_ahead")
    assert total == weak_total > 0 and len(survivors) == total - killed
    assert (tmp_path / "mlops-edge-kit/mutate/edge_hosts.operations.upgrade/main/mutants").is_dir()
    assert all(s.startswith(("edge_hosts.operations.upgrade.x_minor__", "edge_hosts.operations.upgrade.x_check_path__"))
               for s in survivors | weak_survivors)  # only the module's listed functions are scored
    assert weak_killed < killed and survivors < weak_survivors  # fewer tests, fewer kills: the tests decide


def test_a_module_not_listed_without_tests_is_bad_input():
    done = kit("mutate", "--module", "fleet/nonexistent.py")
    assert done.returncode == 2 and "fleet/nonexistent.py is not in mutation_targets.yaml" in done.stderr
    assert "fleet/promote.py" in done.stderr
