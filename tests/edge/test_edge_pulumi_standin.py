"""The stand-in pulumi answers `stack output` as the real CLI does (pkg/cmd/pulumi/stack/stack_output.go)."""
import json
import subprocess
from pathlib import Path

import pytest

PULUMI = Path(__file__).parent / "standins" / "pulumi"
STACK = "organization/mlops-edge-kit/qa"


@pytest.fixture
def state(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({STACK: {"outputs": {"creds": {"t1": {"password": "a<b&c"}}, "name": "acr"},
                                        "secret": ["creds"]}}))
    return path


def pulumi(*args, state=None):
    env = {"PATH": "/usr/bin:/bin", **({"STANDIN_PULUMI_STATE": str(state)} if state else {})}
    return subprocess.run([str(PULUMI), *args], capture_output=True, text=True, env=env, check=False)


def test_json_output_is_gos_encoder_with_two_space_indent(state):
    done = pulumi("stack", "output", "creds", "--show-secrets", "--json", "--stack", STACK, state=state)
    assert done.returncode == 0
    assert done.stdout == '{\n  "t1": {\n    "password": "a\\u003cb\\u0026c"\n  }\n}\n'
    assert json.loads(done.stdout) == {"t1": {"password": "a<b&c"}}


def test_secrets_are_masked_without_show_secrets(state):
    assert pulumi("stack", "output", "creds", "--json", "-s", STACK, state=state).stdout == '"[secret]"\n'
    assert json.loads(pulumi("stack", "output", "--json", "--stack", STACK, state=state).stdout) == {
        "creds": "[secret]", "name": "acr"}


@pytest.mark.parametrize("args, message", [
    (("stack", "output", "nope", "--json", "--stack", STACK),
     "error: current stack does not have output property 'nope'"),
    (("stack", "output", "creds", "--stack", "organization/mlops-edge-kit/x"),
     "error: no stack named 'organization/mlops-edge-kit/x' found"),
    (("stack", "output", "creds", "--bogus", "--stack", STACK), "error: unknown flag: --bogus"),
])
def test_errors_exit_255_on_stderr(state, args, message):
    done = pulumi(*args, state=state)
    assert (done.returncode, done.stdout, done.stderr.strip()) == (255, "", message)


def test_not_logged_in():
    done = pulumi("stack", "output", "creds", "--json", "--non-interactive", "--stack", STACK)
    assert done.returncode == 255 and "PULUMI_ACCESS_TOKEN must be set for login" in done.stderr
