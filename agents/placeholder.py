"""PlaceholderAgent: an offline agent record that keeps a pool scalable to zero.

Azure DevOps fails a queued job at once ("No agent found in pool ...") when no agent in the
pool, online or not, has the capabilities the job demands; KEDA then never sees it queued.
One offline agent record per pool, carrying the capabilities the ScaledJob demands, avoids
that without a placeholder pod. It is created by REST, looked up by name first (idempotent),
kept (re-created or its capabilities restored) on update and deleted on delete.
"""
from typing import Any, Mapping

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from agents.azdo import AzdoClient, PoolNotFound
from agents.build import read_lock

PLACEHOLDER_VERSION = read_lock()["AGENT_VERSION"]  # the image's agent version; no agent binary runs behind it
PLACEHOLDER_PREFIX = "placeholder-"  # agents.cleanup never deletes agents named so
REPLACE_ON = ("organization_url", "pool_name", "agent_name")


def _missing(wanted: Mapping[str, str], agent) -> dict[str, str]:
    have = {**agent.system_capabilities, **agent.user_capabilities}
    return {k: v for k, v in wanted.items() if have.get(k) != v}


def ensure_placeholder(props: Mapping[str, Any]) -> dict[str, Any]:
    """Make sure the placeholder exists with the wanted capabilities; return its ids."""
    client = AzdoClient(props["organization_url"], props["token"])
    pool_id = client.pool_id(props["pool_name"])
    wanted = dict(props.get("capabilities") or {})
    agent = client.find_agent(pool_id, props["agent_name"])
    if agent is None:
        agent = client.add_agent(pool_id, props["agent_name"], PLACEHOLDER_VERSION, wanted)
    if _missing(wanted, agent):
        client.update_agent_capabilities(pool_id, agent.id, {**agent.user_capabilities, **wanted})
    return {"pool_id": pool_id, "agent_id": agent.id}


class PlaceholderProvider(ResourceProvider):
    """Dynamic provider behind PlaceholderAgent (runs in the Pulumi engine's Python host)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        ids = ensure_placeholder(props)
        return CreateResult(id_=f"{ids['pool_id']}/{ids['agent_id']}", outs={**props, **ids})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [key for key in REPLACE_ON if olds.get(key) != news.get(key)]
        changed = bool(replaces) or any(
            olds.get(key) != news.get(key) for key in ("capabilities", "token"))
        return DiffResult(changes=changed, replaces=replaces, delete_before_replace=True)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs={**news, **ensure_placeholder(news)})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        client = AzdoClient(props["organization_url"], props["token"])
        agent = client.find_agent(int(props["pool_id"]), props["agent_name"])
        if agent is None:
            return ReadResult(id_=None, outs={})
        return ReadResult(id_=id_, outs={**props, "agent_id": agent.id})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        client = AzdoClient(props["organization_url"], props["token"])
        try:
            pool_id = client.pool_id(props["pool_name"])
        except PoolNotFound:
            return  # the pool went away, and its agents with it
        agent = client.find_agent(pool_id, props["agent_name"])
        if agent is not None:
            client.delete_agent(pool_id, agent.id)


class PlaceholderAgent(Resource):
    """An offline agent registered once per pool so that KEDA can scale the pool to zero."""

    pool_id: pulumi.Output[int]
    agent_id: pulumi.Output[int]
    agent_name: pulumi.Output[str]

    def __init__(self, name: str, organization_url: pulumi.Input[str],
                 pool_name: pulumi.Input[str], token: pulumi.Input[str],
                 agent_name: pulumi.Input[str] | None = None,
                 capabilities: Mapping[str, str] | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        if agent_name is None:
            agent_name = pulumi.Output.from_input(pool_name).apply(lambda p: f"{PLACEHOLDER_PREFIX}{p}")
        secret_opts = pulumi.ResourceOptions(additional_secret_outputs=["token"])
        props = {"organization_url": organization_url, "pool_name": pool_name,
                 "token": pulumi.Output.secret(token), "agent_name": agent_name,
                 "capabilities": dict(capabilities or {}), "pool_id": None, "agent_id": None}
        super().__init__(PlaceholderProvider(), name, props,
                         pulumi.ResourceOptions.merge(secret_opts, opts))
