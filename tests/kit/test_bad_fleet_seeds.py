"""Fleet seeds and rollout checked as strictly as the stack files, as a user meets them with ./kit: an unknown
key, environment, ring or site is named with the closest known one, every problem at once, exit 2."""
from tests.kit.helpers import kit
from tests.kit.test_duplicate_keys import refused, seeds


def replace(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_unknown_keys_env_and_ring_names_get_the_closest_known_one(tmp_path):
    root = seeds(tmp_path)
    replace(root / "fleet.yaml", "    stack: qa", "    stak: qa")
    replace(root / "sites" / "plant-berlin" / "site.yaml", "env: production", "env: prodution")
    replace(root / "sites" / "store-lyon" / "site.yaml", "metallb:", "modelVersoin: '7'\nmetallb:")
    replace(root / "sites" / "qa-line" / "site.yaml", "ring: canary", "ring: canray")
    stderr = refused("fleet.render", "--env", "production", "--root", str(root), "--out", str(tmp_path / "out"))
    for expected in (
            "fleet/fleet.yaml: environments.qa.stak: Extra inputs are not permitted (did you mean 'stack'?); "
            "this mapping takes: insecure, notifyAddress, notifyType, receiver, registry, source, stack",
            "fleet/sites/store-lyon/site.yaml: modelVersoin: Extra inputs are not permitted (did you mean "
            "'modelVersion'?)"):
        assert expected in stderr, stderr
    replace(root / "fleet.yaml", "stak:", "stack:")
    replace(root / "sites" / "store-lyon" / "site.yaml", "modelVersoin: '7'\n", "")
    stderr = refused("fleet.render", "--env", "production", "--root", str(root), "--out", str(tmp_path / "out"))
    assert (f"{root}/sites/plant-berlin/site.yaml: env: 'prodution' is not in fleet.yaml environments "
            "(did you mean 'production'?) (qa, production)") in stderr, stderr
    assert (f"{root}/sites/qa-line/site.yaml: ring: no rings/canray.yaml (did you mean 'canary'?) "
            "(canary, standard)") in stderr, stderr
    assert not (tmp_path / "out").exists()


def test_an_unknown_env_on_the_command_line(tmp_path):
    stderr = refused("fleet.render", "--env", "prodution", "--out", str(tmp_path / "out"))
    assert "fleet.yaml: environments: no 'prodution' (did you mean 'production'?)" in stderr
    stderr = refused("fleet.abort", "--env", "prodution", "--release", "r1")
    assert "no 'prodution' (did you mean 'production'?)" in stderr


def test_rollout_keys_envs_and_canaries_get_the_closest_known_one(tmp_path):
    root = seeds(tmp_path)
    rollout = root / "rollout.yaml"
    replace(rollout, "{name: all, failureBudget: 0}", "{name: all, failureBujet: 0}")
    stderr = refused("fleet.status", "--env", "qa", "--root", str(root), "--statuses", str(tmp_path / "st"))
    assert (f"{rollout}: environments.qa.waves[0].failureBujet: Extra inputs are not permitted "
            "(did you mean 'failureBudget'?); this mapping takes: approval, failureBudget, labels, minHealthy, "
            "name, share") in stderr, stderr
    replace(rollout, "failureBujet", "failureBudget")
    replace(rollout, "canaries: [plant-berlin]", "canaries: [plant-berlni]")
    stderr = refused("fleet.status", "--env", "production", "--root", str(root), "--statuses", str(tmp_path / "st"))
    assert "environments.production.canaries: not sites of production: plant-berlni (did you mean " \
           "'plant-berlin'?)" in stderr, stderr
    replace(rollout, "  production:\n", "  prodution:\n")
    stderr = refused("fleet.status", "--env", "production", "--root", str(root), "--statuses", str(tmp_path / "st"))
    assert "environments: no plan for 'production' (did you mean 'prodution'?)" in stderr, stderr


def test_a_failure_budget_over_its_wave_is_refused(tmp_path):
    root = seeds(tmp_path)
    replace(root / "rollout.yaml", "{name: all, failureBudget: 0}", "{name: all, failureBudget: 5}")
    stderr = refused("fleet.status", "--env", "qa", "--root", str(root), "--statuses", str(tmp_path / "st"))
    assert "environments.qa.waves[0].failureBudget: 5 is over the wave's 1 sites" in stderr, stderr


def test_the_shipped_seeds_are_accepted(tmp_path):
    done = kit("fleet.status", "--env", "production", "--json", "--statuses", str(tmp_path / "st"))
    assert done.returncode == 0, done.stderr
    assert '"site": "plant-berlin"' in done.stdout and '"wave": "canary"' in done.stdout
