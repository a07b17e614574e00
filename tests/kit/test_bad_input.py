"""Bad input to ./kit plan, as a user meets it: exit 2, the file and key named, every problem at once, no
traceback, nothing written."""
import json
from pathlib import Path

import yaml

from infra.stack.stack_config import ROOT
from tests.kit.helpers import kit


def plan_of(tmp_path: Path, text: str | None) -> tuple[list[str], Path]:
    """Run `./kit plan --env dev` against a project dir whose Pulumi.dev.yaml holds `text` (None: a directory)."""
    project, out = tmp_path / "project", tmp_path / "out"
    project.mkdir()
    if text is None:
        (project / "Pulumi.dev.yaml").mkdir()
    else:
        (project / "Pulumi.dev.yaml").write_text(text)
    done = kit("plan", "--env", "dev", "-p", str(project), "--out", str(out))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not out.exists()
    return done.stderr.splitlines(), out


def dev_config(edit) -> str:
    document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    edit(document["config"])
    return yaml.safe_dump(document, sort_keys=False)


def test_a_stack_file_that_is_a_directory(tmp_path):
    lines, _ = plan_of(tmp_path, None)
    assert lines == ["plan failed:", "  Pulumi.dev.yaml: is a directory, not a stack file"]


def test_yaml_syntax_errors_keep_line_and_caret(tmp_path):
    lines, _ = plan_of(tmp_path, "config:\n  mlops-edge-kit:location: [westeurope\n  mlops-edge-kit:namePrefix: mlk\n")
    text = "\n".join(lines)
    assert "Pulumi.dev.yaml: invalid YAML: while parsing a flow sequence" in text
    assert 'in "Pulumi.dev.yaml", line 2, column 28' in text
    caret_line = next(i for i, line in enumerate(lines) if line.strip() == "^")
    assert lines[caret_line - 1].strip() == "mlops-edge-kit:location: [westeurope"
    assert lines[caret_line].index("^") == lines[caret_line - 1].index("[")


def test_unknown_keys_at_every_level_are_named_with_the_closest_known_one(tmp_path):
    def misspell(config):
        config["mlops-edgekit:registry"] = config.pop("mlops-edge-kit:registry", {"sku": "Premium"})
        config["mlops-edge-kit:lifecyle"] = config.pop("mlops-edge-kit:lifecycle")
        config["mlops-edge-kit:cluster"]["teir"] = config["mlops-edge-kit:cluster"].pop("tier")
        config["mlops-edge-kit:cluster"]["systemPool"]["vmSzie"] = "Standard_D4ds_v5"
    lines, _ = plan_of(tmp_path, dev_config(misspell))
    text = "\n".join(lines)
    for expected in (
            "Pulumi.dev.yaml: config.mlops-edgekit:registry: unknown namespace 'mlops-edgekit' "
            "(did you mean 'mlops-edge-kit'?)",
            "Pulumi.dev.yaml: config.mlops-edge-kit:lifecyle: unknown key (did you mean 'lifecycle'?)",
            "Pulumi.dev.yaml: config.mlops-edge-kit:cluster.teir: unknown key (did you mean 'tier'?)",
            "Pulumi.dev.yaml: config.mlops-edge-kit:cluster.systemPool.vmSzie: unknown key (did you mean 'vmSize'?)"):
        assert expected in text, expected


def test_a_key_without_namespace_is_named(tmp_path):
    lines, _ = plan_of(tmp_path, dev_config(lambda config: config.update({"namePrefix": "mlk"})))
    assert "  Pulumi.dev.yaml: config.namePrefix: not namespaced; write it as 'mlops-edge-kit:namePrefix'" in lines


def test_agents_report_every_missing_option_and_the_token_at_once():
    done = kit("agents.cleanup", "--org", "http://dev.azure.com/x", "--older-than", "3x",
               AZP_TOKEN="", AZURE_DEVOPS_EXT_PAT="", AZP_URL="")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "agents.cleanup: invalid arguments:"
    for start in ("  --org: bad organization URL", "  --pool: not given", "  --older-than: '3x' is not a duration",
                  "  no Azure DevOps token: set AZP_TOKEN"):
        assert any(line.startswith(start) for line in lines[1:]), start


def test_stack_reap_json_answers_json_on_error():
    done = kit("stack.reap", "--json", "--parallel", "0")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert json.loads(done.stdout) == {"error": "stack.reap:\n  --parallel: 0 is outside 1 .. 32", "exitCode": 2}
    assert "--parallel: 0 is outside 1 .. 32" in done.stderr


def test_the_readmes_every_error_at_once_example_is_the_real_output(tmp_path):
    readme = (ROOT / "README.md").read_text()
    block = readme.split("Invalid settings give every error at once", 1)[1].split("```\n", 2)[1]

    def as_in_the_readme(config):
        config["mlops-edge-kit:network"]["subnets"]["aksNodes"] = "10.10.0.0/33"
        config["mlops-edge-kit:cluster"]["arm64Pool"]["vmSize"] = "Standard_D8ds_v5"
        config["mlops-edge-kit:cluster"]["teir"] = config["mlops-edge-kit:cluster"].pop("tier")
    lines, _ = plan_of(tmp_path, dev_config(as_in_the_readme))
    assert lines == block.splitlines()


def test_a_failed_bundle_names_the_task_and_leaves_no_directory(tmp_path):
    out = tmp_path / "bundle"
    unreachable = "http://127.0.0.1:9"  # the discard port: connection refused at once
    done = kit("edge.bundle", "--version", "v1.31.4+k3s1", "--arch", "x86_64", "--out", str(out),
               "--install-sha256", "a" * 64, "--metallb-sha256", "b" * 64, "--mirror", unreachable, "--raw", unreachable,
               "--registry-mirror", unreachable)
    assert done.returncode == 1 and done.stderr.startswith("edge.bundle: download of http://127.0.0.1:9/")
    assert "Traceback" not in done.stderr and not out.exists()


def test_rules_that_can_still_be_decided_are_reported_beside_an_invalid_field(tmp_path):
    """An invalid subnet must not hide the serviceCidr overlap, nor the DNS service IP outside its CIDR."""
    def edit(config):
        network = config["mlops-edge-kit:network"]
        network["subnets"]["aksNodes"] = "10.10.0.0/33"
        network["serviceCidr"] = "10.10.128.0/20"
        network["dnsServiceIp"] = "10.11.0.10"
    lines, _ = plan_of(tmp_path, dev_config(edit))
    text = "\n".join(lines)
    assert "config.mlops-edge-kit:network.subnets.aksNodes: " in text
    assert "config.mlops-edge-kit:network.serviceCidr: 10.10.128.0/20 overlaps network.addressSpace (10.10.0.0/16)" \
        in text
    assert "config.mlops-edge-kit:network.dnsServiceIp: 10.11.0.10 must be a host address inside serviceCidr" in text
