"""Certificate expiry (each server's /var/lib/rancher/k3s/server/tls/*.crt, every node's agent certificates, the
kubeconfig's client certificate) and edge.rotate-certs.

docs.k3s.io/cli/certificate (github.com/k3s-io/docs docs/cli/certificate.md): leaf certificates are valid 365 days
and renewed at start-up within 120 days of expiry; a file may hold the leaf and its CAs (the leaf comes first);
`k3s certificate rotate` with k3s stopped, then a start, makes new certificates and keys. The CA is not rotated, so
a client certificate issued before stays valid until it expires (Kubernetes has no revocation). Agents (servers run
one too) fetch their kubelet, kube-proxy and k3s-controller certificates from a server at every start (k3s
pkg/agent/config); on an agent `k3s certificate rotate` rotates just those (pkg/cli/cert: "Agent detected",
services.Agent), so agents are rotated after the servers, whose rotation renews the keys they are signed for."""
from __future__ import annotations

import base64
import datetime
from pathlib import Path

import yaml
from cryptography import x509

from common import k3s, yamlio
from edge_hosts.engine.fanout import Engine
from edge_hosts.inventory.model import Inventory
from edge_hosts.engine.results import HostResult
from edge_hosts.steps.kubeconfig import write_kubeconfig
from edge_hosts.access.ssh import HostSession
from edge_hosts.access.state import TokenStore
from edge_hosts.facts import cluster
from edge_hosts.steps import service
from edge_hosts.engine.context import HostContext
from edge_hosts.engine.context import StepError

TLS_DIR = "/var/lib/rancher/k3s/server/tls"
AGENT_DIR = "/var/lib/rancher/k3s/agent"
# what every node's agent holds (k3s pkg/util/services FilesForServices: kubelet, kube-proxy, k3s-controller)
AGENT_FILES = ("client-kubelet.crt", "serving-kubelet.crt", "client-kube-proxy.crt", "client-k3s-controller.crt")
WARN_DAYS = 30
MARK = "--- mlops-edge-kit cert "


def leaf_expiry(pem: bytes) -> datetime.datetime:
    """When the first (leaf) certificate of a PEM file expires (UTC)."""
    return x509.load_pem_x509_certificates(pem)[0].not_valid_after_utc


def host_expiries(session: HostSession, role: str) -> dict[str, datetime.datetime]:
    """Expiry of a node's agent certificates (named agent/<file>) and, on a server, of every certificate file in its
    tls directory (public files, read as root)."""
    agent = " ".join(f"{AGENT_DIR}/{name}" for name in AGENT_FILES)
    out = session.check(f"""for f in {TLS_DIR + "/*.crt " if role == "server" else ""}{agent}; do
  [ -f "$f" ] && {{ case "$f" in {AGENT_DIR}/*) n=agent/${{f##*/}} ;; *) n=${{f##*/}} ;; esac
    echo "{MARK}$n"; cat "$f"; }}
done
""", "reading the k3s certificates")
    found = {}
    for chunk in out.split(MARK)[1:]:
        name, _, pem = chunk.partition("\n")
        found[name.strip()] = leaf_expiry(pem.encode())
    return found


def summary(expiries: dict[str, datetime.datetime], now: datetime.datetime) -> dict | None:
    """The soonest expiry of a set of files, days left, and whether that is under WARN_DAYS."""
    if not expiries:
        return None
    name = min(expiries, key=expiries.get)
    days = (expiries[name] - now).days
    return {"file": name, "expires": expiries[name].isoformat(), "daysLeft": days, "warning": days < WARN_DAYS,
            "files": {n: when.isoformat() for n, when in sorted(expiries.items())}}


def kubeconfig_expiry(path: Path, site: str) -> datetime.datetime | None:
    """When the client certificate of the site's user in a kubeconfig expires (None without one)."""
    path = path.expanduser()
    if not path.is_file():
        return None
    doc = yamlio.load(path.read_text(), str(path)) or {}
    user = next((u.get("user") or {} for u in doc.get("users") or [] if u.get("name") == site), {})
    data = user.get("client-certificate-data")
    return leaf_expiry(base64.b64decode(data)) if data else None


def warnings(report: dict) -> list[str]:
    """One line per host, and for the kubeconfig, whose certificates expire within WARN_DAYS."""
    lines = [f"{h['name']}: {h['certificates']['file']} expires in {h['certificates']['daysLeft']} days "
             f"({h['certificates']['expires'][:10]}): run edge.rotate-certs"
             for h in report["hosts"] if (h.get("certificates") or {}).get("warning")]
    client = report.get("kubeconfig") or {}
    if client.get("warning"):
        lines.append(f"kubeconfig {client['path']}: the client certificate of context {report['site']} expires in "
                     f"{client['daysLeft']} days ({client['expires'][:10]}): run edge.rotate-certs")
    return lines


def kubeconfig_report(path: Path, site: str, now: datetime.datetime) -> dict | None:
    """Expiry of the site's client certificate in a kubeconfig: None without one, an error when unreadable."""
    try:
        expires = kubeconfig_expiry(path, site)
    except (OSError, ValueError, yaml.YAMLError, AttributeError) as err:
        return {"path": str(path), "error": f"cannot read the client certificate: {type(err).__name__}"}
    if expires is None:
        return None
    days = (expires - now).days
    return {"path": str(path), "expires": expires.isoformat(), "daysLeft": days, "warning": days < WARN_DAYS}


def devops_note(inventory: Inventory, old: dict | None) -> str:
    """What to update in Azure DevOps: its k3s-<site> connection holds the kubeconfig from Pulumi secret config."""
    until = f" (the old client certificate stays valid until {old['expires'][:10]})" if old else ""
    return (f"Azure DevOps: the Kubernetes service connection k3s-{inventory.site} still holds the old kubeconfig"
            f"{until}. Update the site's kubeconfigSecretKey in Pulumi.<env>.yaml and apply it: kubectl config view "
            f"--minify --flatten --context {inventory.site} | pulumi config set --secret <kubeconfigSecretKey> "
            f"--stack <env>; then pulumi up --stack <env>")


class RotateCerts:
    """edge.rotate-certs: server by server, k3s stopped, `k3s certificate rotate`, started and Ready again before
    the next; then the kubeconfig refreshed from the first server; then the agents, which fetch
    their new certificates from the servers as they start."""

    def __init__(self, engine: Engine, inventory: Inventory, kubeconfig: Path):
        self.engine, self.inventory, self.kubeconfig = engine, inventory, kubeconfig
        self.first = engine.contexts[inventory.first_server.name]
        self.wait_s = inventory.k3s.join_timeout
        store = TokenStore(inventory.site)
        if store.exists():
            engine.add_secrets(set(store.passwords()))

    def run(self) -> list[HostResult]:
        servers = [self.engine.contexts[h.name] for h in self.inventory.servers]
        agents = [self.engine.contexts[h.name] for h in self.inventory.agents if h.name in self.engine.contexts]
        self.engine.each(servers + agents, self.engine.connect_and_probe)
        for ctx in servers:
            if self.first.failed and ctx is not self.first:
                self.engine.fail(ctx, f"rotate: waiting for the first server {self.first.host.name}, which failed")
            self._rotate_one(ctx)
            if ctx.failed:   # the next servers keep their certificates: one broken server at a time
                for later in servers[servers.index(ctx) + 1:] + agents:
                    self.engine.fail(later, f"rotate: not started, {ctx.host.name} failed")
        self.engine.step(self.first, "kubeconfig", lambda c: write_kubeconfig(c, self.inventory, self.kubeconfig))
        self.engine.each(agents, self._rotate_one)
        return self.engine.results([c.host.name for c in servers + agents])

    def _rotate_one(self, ctx: HostContext) -> None:
        self.engine.step(ctx, "rotate", self._rotate)
        self.engine.step(ctx, "ready", self._ready)

    def _rotate(self, ctx: HostContext) -> bool:
        unit = k3s.unit(ctx.host.role)
        ctx.session.check(f"""systemctl stop {unit} || exit 1
{k3s.BIN} certificate rotate 2>&1; rc=$?
systemctl start --no-block {unit}
exit $rc
""", "k3s certificate rotate")
        ctx.started = True
        return True

    def _ready(self, ctx: HostContext) -> bool:
        what = f"{k3s.unit(ctx.host.role)} is not ready after the rotation"
        if not service.wait_active(ctx, self.wait_s) or not cluster.wait_readyz(self.first.session, self.wait_s):
            raise StepError(service.not_ready_message(ctx, self.wait_s, what))
        seen = cluster.wait_nodes_ready(self.first.session, [ctx.host.name], self.wait_s)
        if not (ctx.host.name in seen and seen[ctx.host.name].ready):
            raise StepError(cluster.not_ready_reason(ctx.host.name, seen))
        return False
