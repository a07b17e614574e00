"""Invalid stack settings: every problem at once, each naming the file and the key path; exit 2 from the CLI."""
import subprocess
import sys

import pytest

from infra.offline.plan import PlanError, record_env
from infra.stack.stack_config import ROOT
from tests.infra.conftest import expect_problems, settings_of


def problems_for(stack_root, tmp_path, edit) -> list[str]:
    env = stack_root(edit)
    with pytest.raises(PlanError) as err:
        record_env(env, root=tmp_path)
    return err.value.problems


def set_in(key: str, path: str, value):
    def edit(config):
        node = settings_of(config, key)
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[leaf] = value
    return edit


CASES = {
    "malformed cidr": (set_in("network", "subnets.aksNodes", "10.10.0.0/33"),
                       r"config\.mlops-edge-kit:network\.subnets\.aksNodes: .*(IPv4|network)"),
    "subnet outside vnet": (set_in("network", "subnets.privateEndpoints", "10.99.0.0/24"),
                            r"network\.subnets\.privateEndpoints: 10\.99\.0\.0/24 is outside"),
    "overlapping subnets": (set_in("network", "subnets.privateEndpoints", "10.10.0.0/24"),
                            r"network\.subnets\.aksNodes: .* overlaps network\.subnets\.privateEndpoints"),
    "service cidr overlaps vnet": (set_in("network", "serviceCidr", "10.10.128.0/20"),
                                   r"network\.serviceCidr: .* overlaps network\.addressSpace"),
    "storage name": (set_in("names", "storageAccount", "St-Bad"),
                     r"names\.storageAccount: .*3-24 lowercase letters and digits"),
    "registry name": (set_in("names", "registry", "cr"), r"names\.registry: .*5-50 letters and digits"),
    "key vault name": (set_in("names", "keyVault", "kv--double"), r"names\.keyVault: .*no '--'"),
    "dns prefix length": (set_in("names", "dnsPrefix", "d" * 55), r"names\.dnsPrefix: .*1-54"),
    "node pool name": (set_in("cluster", "x86Pool.name", "X86-Pool"), r"cluster\.x86Pool\.name: .*Linux node pool"),
    "arm64 pool on x86 size": (set_in("cluster", "arm64Pool.vmSize", "Standard_D8ds_v5"),
                               r"cluster\.arm64Pool\.vmSize: .*not an Arm64 VM size"),
    "min above max": (set_in("cluster", "x86Pool.minCount", 9), r"cluster\.x86Pool: .*minCount \(9\) is greater"),
    "unknown key": (set_in("cluster", "kubernetesVersoin", "1.33"),
                    r"cluster\.kubernetesVersoin: unknown key \(did you mean 'kubernetesVersion'\?\)"),
    "public api without ranges": (set_in("cluster", "authorizedIpRanges", []),
                                  r"cluster\.authorizedIpRanges: a public API server needs"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_error_class_names_file_and_key(stack_root, tmp_path, case):
    edit, pattern = CASES[case]
    if case.endswith("name") or case == "dns prefix length":
        config_edit = edit

        def edit(config):
            config.setdefault("mlops-edge-kit:names", {})
            config_edit(config)
    expect_problems(problems_for(stack_root, tmp_path, edit), pattern)


def test_all_field_errors_are_reported_at_once(stack_root, tmp_path):
    def edit(config):
        for key, path, value in (("network", "subnets.aksNodes", "nonsense"), ("cluster", "x86Pool.minCount", -1),
                                 ("cluster", "arm64Pool.vmSize", "Standard_D8ds_v5")):
            set_in(key, path, value)(config)
        config["mlops-edge-kit:namePrefix"] = "Bad_Prefix"
    problems = problems_for(stack_root, tmp_path, edit)
    expect_problems(problems, r"network\.subnets\.aksNodes", r"cluster\.x86Pool\.minCount",
                    r"cluster\.arm64Pool\.vmSize", r"namePrefix")


def test_all_rule_errors_are_reported_at_once(stack_root, tmp_path):
    def edit(config):
        set_in("network", "subnets.privateEndpoints", "10.99.0.0/24")(config)
        set_in("network", "serviceCidr", "10.10.128.0/20")(config)
        config["mlops-edge-kit:names"] = {"registry": "cr", "keyVault": "kv--x"}
    problems = problems_for(stack_root, tmp_path, edit)
    expect_problems(problems, r"subnets\.privateEndpoints", r"serviceCidr", r"names\.registry", r"names\.keyVault")


def test_invalid_yaml_is_reported_with_the_file(tmp_path):
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  mlops-edge-kit:location: [unclosed\n")
    with pytest.raises(PlanError) as err:
        record_env("dev", root=tmp_path)
    assert err.value.problems[0].startswith("Pulumi.dev.yaml: invalid YAML")


def test_unknown_env_lists_the_known_ones():
    with pytest.raises(PlanError) as err:
        record_env("staging")
    assert "Pulumi.staging.yaml: no such stack file" in err.value.problems[0]
    assert "dev" in err.value.problems[0] and "prod" in err.value.problems[0]


def test_cli_without_env_exits_2_naming_the_environments():
    result = subprocess.run([sys.executable, "-m", "invoke", "plan"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert "--env is required (one of: dev, prod, qa, uat)" in result.stderr


def test_cli_exits_2_without_traceback_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "invoke", "plan", "--env", "staging", "--out", str(out)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert "Pulumi.staging.yaml: no such stack file" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not out.exists()
