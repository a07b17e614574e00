"""Fleet delivery on a site's first server, for a site whose inventory has a `fleet:` block: the Flux Operator's
install.yaml and the site's on-site manifest (fleet/onsite.py: FluxInstance, the site's registry and notification
Secrets, its Flux objects from fleet.render's flux.yaml) in k3s's auto-deploy directory, each written only when its
sha256 differs. k3s applies both and retries what fails until the operator's CRDs exist (fleet/onsite.py). The
Flux images archive travels with every host's artifacts (edge_hosts/artifacts/downloads.py) and is imported pinned."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import yaml

from common import k3s, yamlio
from edge_hosts.artifacts import proxy
from edge_hosts.inventory.credentials import CredentialError, site_registry_credential
from edge_hosts.inventory.model import Inventory
from edge_hosts.engine.context import HostContext
from edge_hosts.engine.context import StepError
from fleet import flux, onsite
from fleet.receiving import keys

NEEDS_TOKEN = ("azuredevops", "generic-hmac")  # the Provider types whose secret holds a `token`


class FleetInputError(Exception):
    """The fleet block cannot be used; the message lists every problem, each with the file and key."""


@dataclass(frozen=True)
class OnSite:
    text: str = field(repr=False)  # the auto-deploy manifest: it holds the site's tokens
    secrets: frozenset[str] = field(repr=False)  # every form of them the manifest holds

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def _flux_objects(inventory: Inventory, problems: list[str]) -> list[dict]:
    path = inventory.source.parent / inventory.fleet.rendered / "flux.yaml"
    try:
        objects = [d for d in yamlio.load_all(path.read_text(), str(path)) if isinstance(d, dict)]
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        problems.append(f"fleet.rendered: {path}: cannot be read ({err}); run ./kit fleet.render --env "
                        f"{inventory.fleet.env}")
        return []
    kinds = {o.get("kind") for o in objects}
    missing = {"ResourceSetInputProvider", "Provider", "Alert"} - kinds
    if missing:
        problems.append(f"fleet.rendered: {path}: not fleet.render's flux.yaml (no {', '.join(sorted(missing))})")
        return []
    meta = _one(objects, "Alert")["spec"].get("eventMetadata", {})
    if meta.get("env") != inventory.fleet.env or meta.get("site") != path.parent.name:
        problems.append(f"fleet.rendered: {path} is site {meta.get('site')} of env {meta.get('env')}, not site "
                        f"{path.parent.name} of env {inventory.fleet.env}")
    return objects


def _one(objects: list[dict], kind: str) -> dict:
    return next(o for o in objects if o.get("kind") == kind)


def _registry(objects: list[dict]) -> str:
    """The registry host the site's input provider pulls from (oci://<registry>/fleet/<env>/<site>)."""
    return _one(objects, "ResourceSetInputProvider")["spec"]["url"].removeprefix("oci://").split("/", 1)[0]


def _site_key(master: str, objects: list[dict], problems: list[str]) -> str:
    """generic-hmac: the site's own report key, derived from the env's master key for the Provider's key
    generation (fleet/receiving/keys.py), never the master key itself."""
    generation = _one(objects, "Provider")["metadata"].get("annotations", {}).get(flux.KEY_GENERATION, "")
    meta = _one(objects, "Alert")["spec"]["eventMetadata"]
    try:
        return keys.site_key(master.encode(), int(generation), meta["env"], meta["site"])
    except (ValueError, KeyError) as err:
        problems.append(f"fleet.notifyTokenEnv: cannot derive the site's report key: {err}")
        return ""


def _notification(inventory: Inventory, notify_type: str, environ, problems: list[str]) -> tuple[str, str]:
    """(token, address) for the fleet-notify Secret."""
    fleet, token = inventory.fleet, ""
    if notify_type in NEEDS_TOKEN:
        if not fleet.notify_token_env:
            problems.append(f"fleet.notifyTokenEnv: required: the site's Provider is {notify_type}, which needs a "
                            f"token; name the environment variable that holds it")
        elif not environ.get(fleet.notify_token_env):
            problems.append(f"fleet.notifyTokenEnv: environment variable {fleet.notify_token_env} is not set")
        else:
            token = environ[fleet.notify_token_env]
    if notify_type == "generic" and not fleet.notify_address:
        problems.append(f"fleet.notifyAddress: required: the site's Provider is {notify_type}, which posts to it")
    return token, fleet.notify_address or ""


def onsite_manifest(inventory: Inventory) -> OnSite:
    """The first server's auto-deploy manifest for the site; FleetInputError names every problem at once. The
    registry credential is looked up once per run (credentials.site_registry_credential), shared with the check
    before any connection and with registries.yaml."""
    problems: list[str] = []
    objects = _flux_objects(inventory, problems)
    credential = None
    try:
        credential = site_registry_credential(inventory)
    except CredentialError as err:
        problems.append(str(err).removeprefix(f"{inventory.source}: "))
    if credential and objects and credential.server != _registry(objects):
        problems.append(f"registries.credentials: the credential is for {credential.server}, the site's Flux pulls "
                        f"from {_registry(objects)}")
    notify_type = _one(objects, "Provider")["spec"]["type"] if objects else ""
    master, address = _notification(inventory, notify_type, os.environ, problems)
    token = _site_key(master, objects, problems) if notify_type == "generic-hmac" and master else master
    if problems:
        raise FleetInputError("\n".join(f"{inventory.source}: {p}" for p in problems))
    secrets = onsite.site_secrets(credential.server, credential.username, credential.password, token, address)
    variables = proxy.variables(inventory)
    if variables:
        secrets.append(onsite.proxy_secret(variables))  # the site's proxy, for the Flux controllers
    text = onsite.auto_deploy_manifest(objects, secrets)
    encoded = {value for secret in secrets for value in secret["data"].values()}
    return OnSite(text, frozenset({credential.password, *filter(None, (master, token, address)), *encoded,
                                   *proxy.passwords(inventory)}))


def ensure_fleet(ctx: HostContext) -> bool:
    """The Flux Operator's install.yaml and the site's manifest in the auto-deploy directory (0600), each only when
    its sha256 on the host differs."""
    if ctx.inventory.fleet is None:
        return False
    try:
        manifest = onsite_manifest(ctx.inventory)
    except FleetInputError as err:
        raise StepError(str(err)) from None
    ctx.session.secrets.update(manifest.secrets)
    changed = ctx.source.ensure(ctx.session, [ctx.source.flux_operator_artifact()], ctx.facts)
    if ctx.facts["sha_fleet_manifest"] != manifest.sha256:
        ctx.session.upload(manifest.text.encode(), k3s.FLEET_MANIFEST, "0600", manifest.sha256)
        ctx.facts.values["sha_fleet_manifest"] = manifest.sha256
        changed.append("fleet_manifest")
    ctx.replaced.update(changed)
    return bool(changed)
