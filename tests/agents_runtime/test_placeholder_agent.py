"""PlaceholderAgent: idempotent REST registration, kept on update, deleted on delete, secret token."""
import pulumi
import pytest

from agents.azdo import AzdoError
from agents.placeholder import PlaceholderAgent, PlaceholderProvider
from tests.agents_runtime.conftest import GOOD_TOKEN

CAPS = {"Agent.OS": "Linux", "Agent.OSArchitecture": "ARM64", "kit.pool": "edge-arm64"}


def _props(standin, **over):
    return {"organization_url": standin.org_url, "pool_name": "edge-arm64", "token": GOOD_TOKEN,
            "agent_name": "placeholder-edge-arm64", "capabilities": CAPS, **over}


def _agent_posts(standin):
    return [r for r in standin.state.requests if r[0] == "POST"]


def test_create_registers_an_offline_agent_with_the_capabilities(standin):
    result = PlaceholderProvider().create(_props(standin))
    agent = standin.state.agent_named("placeholder-edge-arm64")
    assert agent["status"] == "offline"
    assert {**agent["systemCapabilities"], **agent["userCapabilities"]} == CAPS
    assert result.id == f"7/{agent['id']}" and result.outs["agent_id"] == agent["id"]


def test_create_is_idempotent_when_the_agent_exists(standin):
    existing = standin.state.add_agent(7, "placeholder-edge-arm64", systemCapabilities=CAPS)
    result = PlaceholderProvider().create(_props(standin))
    assert result.outs["agent_id"] == existing["id"]
    assert _agent_posts(standin) == []


def test_update_recreates_a_deleted_placeholder_and_restores_capabilities(standin):
    provider = PlaceholderProvider()
    first = provider.create(_props(standin))
    del standin.state.agents[7][first.outs["agent_id"]]
    provider.update(first.id, first.outs, _props(standin))
    agent = standin.state.agent_named("placeholder-edge-arm64")
    agent["systemCapabilities"] = {"Agent.OS": "Linux"}
    provider.update(first.id, first.outs, _props(standin))
    assert {**agent["systemCapabilities"], **agent["userCapabilities"]}.items() >= CAPS.items()


def test_delete_removes_it_and_tolerates_it_being_gone(standin):
    provider = PlaceholderProvider()
    created = provider.create(_props(standin))
    provider.delete(created.id, created.outs)
    assert standin.state.agent_named("placeholder-edge-arm64") is None
    provider.delete(created.id, created.outs)  # already gone: no error


def test_diff_replaces_on_identity_and_updates_on_capabilities(standin):
    provider = PlaceholderProvider()
    olds = _props(standin)
    assert provider.diff("x", olds, _props(standin)).changes is False
    moved = provider.diff("x", olds, _props(standin, pool_name="other"))
    assert moved.replaces == ["pool_name"]
    recapped = provider.diff("x", olds, _props(standin, capabilities={"a": "b"}))
    assert recapped.changes and not recapped.replaces


def test_auth_errors_surface_from_the_provider(standin):
    standin.state.unscoped_tokens.add("weak-token")
    with pytest.raises(AzdoError, match="Agent Pools"):
        PlaceholderProvider().create(_props(standin, token="weak-token"))


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.resources = []

    def new_resource(self, args):
        self.resources.append(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args):
        return {}


@pytest.fixture
def mocks():
    mocks = _Mocks()
    pulumi.runtime.set_mocks(mocks, project="kit", stack="test", preview=False)
    return mocks


@pulumi.runtime.test
def test_under_mocks_it_registers_without_rest_and_keeps_the_token_secret(mocks, standin):
    res = PlaceholderAgent("ph", standin.org_url, "edge-arm64", token="tok-under-mocks",
                           capabilities=CAPS)

    def check(values):
        name, token_secret = values
        assert name == "placeholder-edge-arm64"
        assert token_secret is True
        (args,) = mocks.resources
        assert args.typ == "pulumi-python:dynamic:Resource"
        assert "tok-under-mocks" not in str(args.inputs.get("__provider", ""))
        assert standin.state.requests == []

    return pulumi.Output.all(res.agent_name, pulumi.Output.from_input(res.token.is_secret())).apply(check)
