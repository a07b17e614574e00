"""agents.azdo against the REST stand-in: pools, pagination, errors that name the cause."""
import pytest

from agents.azdo import AzdoClient, AzdoError, PoolNotFound, check_org_url
from tests.agents_runtime.conftest import GOOD_TOKEN


def test_agents_follow_continuation_tokens(standin):
    standin.state.page_size = 2
    for n in range(5):
        standin.state.add_agent(7, f"agent-{n}")
    client = AzdoClient(standin.org_url, GOOD_TOKEN)
    agents = client.agents(client.pool_id("edge-arm64"))
    assert [a.name for a in agents] == [f"agent-{n}" for n in range(5)]
    pages = [q for m, p, q in standin.state.requests if p.endswith("/pools/7/agents")]
    assert [q.get("continuationToken") for q in pages] == [None, "2", "4"]


def test_agent_fields_are_parsed(standin):
    standin.state.add_agent(7, "busy-one", status="online", busy=True, version="4.1.0")
    client = AzdoClient(standin.org_url, GOOD_TOKEN)
    (agent,) = client.agents(7)
    assert (agent.online, agent.busy, agent.version) == (True, True, "4.1.0")
    assert agent.created_on is not None and agent.created_on.tzinfo is not None


def test_missing_pool_is_named(standin):
    client = AzdoClient(standin.org_url, GOOD_TOKEN)
    with pytest.raises(PoolNotFound, match="'no-such-pool' not found"):
        client.pool_id("no-such-pool")


@pytest.mark.parametrize("kind, expected", [
    ("expired_tokens", "expired"),
    ("signin_page_tokens", "expired"),
    ("unscoped_tokens", "Agent Pools \\(Read & manage\\)"),
    ("unknown", "expired, revoked or wrong"),
])
def test_token_problems_are_explained_without_the_token(standin, kind, expected):
    token = "secret-tok-" + kind
    if kind != "unknown":
        getattr(standin.state, kind).add(token)
    with pytest.raises(AzdoError, match=expected) as caught:
        AzdoClient(standin.org_url, token).pool_id("edge-arm64")
    assert token not in str(caught.value)
    assert caught.value.user_error


def test_unknown_organization_is_a_bad_org_url(standin):
    wrong = standin.org_url.replace("/contoso", "/fabrikam")
    with pytest.raises(AzdoError, match="bad organization URL .*fabrikam.*404"):
        AzdoClient(wrong, GOOD_TOKEN).pool_id("edge-arm64")


def test_unreachable_organization_is_a_bad_org_url():
    with pytest.raises(AzdoError, match="bad organization URL .*cannot reach"):
        AzdoClient("http://127.0.0.1:9/contoso", GOOD_TOKEN, timeout=2).pool_id("p")


@pytest.mark.parametrize("url", ["dev.azure.com/contoso", "ftp://dev.azure.com/x",
                                 "http://dev.azure.com/contoso", "https://dev.azure.com/c?x=1"])
def test_malformed_org_urls_are_refused_before_any_call(url):
    with pytest.raises(AzdoError, match="bad organization URL"):
        check_org_url(url)


def test_good_org_url_is_normalised():
    assert check_org_url(" https://dev.azure.com/contoso/ ") == "https://dev.azure.com/contoso"


def test_delete_removes_the_agent(standin):
    agent = standin.state.add_agent(7, "gone")
    client = AzdoClient(standin.org_url, GOOD_TOKEN)
    client.delete_agent(7, agent["id"])
    assert client.find_agent(7, "gone") is None
