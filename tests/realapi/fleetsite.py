"""A lab site's fleet delivery with the real engine, for tests/realapi/test_fleet_flux.py: a copy of the seeds
whose qa site takes its releases from the real docker-registry (tests/fleet/registry.py), the site's Flux objects
rendered by fleet.render and applied to the real API server with the real Flux programs (lab/programs/flux_site.py),
and the receiver (fleet.receiver) behind a recorder that keeps every event the notification-controller posted."""
from __future__ import annotations

import http.client
import json
import secrets
import shutil
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from fleet import flux, onsite
from fleet.artifact import Pusher
from fleet.config import load_fleet
from fleet.receiver import server
from fleet.receiving.keys import site_key
from fleet.release import build, push_release
from fleet.status import StatusStore
from tests.fleet.registry import RealRegistry

SEEDS = Path(__file__).resolve().parents[2] / "fleet"
ENV, SITE = "qa", "qa-line"
GENERATION = 1
POLL = "10s"  # the input providers' reconcileEvery here (the kit renders 5m): a test waits seconds, not minutes


def seeds(root: Path, registry_host: str, receiver: str) -> Path:
    """fleet/'s YAML seeds with the qa env on the test registry (plain HTTP on loopback), reporting by
    generic-hmac to `receiver`, and the qa site with a maintenance window open now (it opened this hour)."""
    for path in SEEDS.rglob("*.yaml"):
        (root / path.relative_to(SEEDS)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / path.relative_to(SEEDS))
    fleet = yaml.safe_load((root / "fleet.yaml").read_text())
    fleet["environments"] = {ENV: {"registry": registry_host, "insecure": True, "notifyType": "generic-hmac",
                                   "receiver": {"address": receiver, "keyGeneration": GENERATION},
                                   "source": fleet["environments"][ENV]["source"]}}
    (root / "fleet.yaml").write_text(yaml.safe_dump(fleet))
    for other in (root / "sites").iterdir():
        if other.name != SITE:
            shutil.rmtree(other)
    hour = datetime.now(timezone.utc).hour
    release_variant(root, {"windows": [{"cron": f"0 {hour} * * *", "timeZone": "UTC", "duration": "3h"}]},
                    replicas=0, marker="r1")
    for version in ("7",):
        folder = root.parent / "models" / "defect-detector" / version
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.onnx").write_bytes(b"weights 7")
    return root


def release_variant(root: Path, extra: dict | None = None, replicas: int = 0, marker: str = "",
                    deadline_s: int = 0) -> None:
    """The site's patch of the application: its replicas (0: healthy without a kubelet, judged by the Deployment
    controller's status alone; 1: never available here, no kubelet runs its Pod), a marker label (each release
    its own artifact) and progressDeadlineSeconds (so the Deployment controller declares it failed)."""
    path = root / "sites" / SITE / "site.yaml"
    site = yaml.safe_load(path.read_text())
    site.update(extra or {})
    spec = {"replicas": replicas, "template": {"metadata": {"labels": {"fleet.test/release": marker}}}}
    if deadline_s:
        spec["progressDeadlineSeconds"] = deadline_s
    site["patches"] = [{"kind": "Deployment", "name": "inference", "merge": {"spec": spec}}]
    path.write_text(yaml.safe_dump(site))


class Recorder:
    """Forwards each POST to the receiver and keeps (path, event) of each, in arrival order."""

    def __init__(self, target: str):
        self.events: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.events.append(json.loads(body))
                request = urllib.request.Request(target + self.path, body, method="POST",
                                                 headers={"X-Signature": self.headers.get("X-Signature", ""),
                                                          "Content-Type": "application/json"})
                try:
                    code = urllib.request.urlopen(request, timeout=10).status
                except urllib.error.HTTPError as err:
                    code = err.code
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"


class Site:
    """The site's world: registry users, the receiver and its store, releases pushed, objects applied."""

    def __init__(self, tmp: Path, registry, kubectl, flux_site):
        self.tmp, self.registry, self.kubectl, self.flux_site = tmp, registry, kubectl, flux_site
        self.pusher = Pusher(registry.url, registry.user("release", [("*", ("pull", "push"))]))
        self.pull_user = registry.user(f"site-{SITE}", [(flux.repository_path(ENV, SITE), ("pull",))])
        self.store = StatusStore(tmp / "status")
        master = secrets.token_bytes(32)
        self.key = site_key(master, GENERATION, ENV, SITE)
        self.receiver = server(("127.0.0.1", 0), self.store, master, {ENV: GENERATION})
        threading.Thread(target=self.receiver.serve_forever, daemon=True).start()
        self.recorder = Recorder(f"http://127.0.0.1:{self.receiver.server_address[1]}")
        self.root = seeds(tmp / "fleet", registry.host, self.recorder.url)
        self.digests: dict[str, str] = {}

    @property
    def repo(self) -> str:
        return flux.repository_path(ENV, SITE)

    def release(self, name: str, replicas: int = 0, deadline_s: int = 0) -> str:
        """Render and push release `name` (the site's Deployment patched as release_variant says); its digest."""
        release_variant(self.root, replicas=replicas, marker=name, deadline_s=deadline_s)
        fleet = load_fleet(self.root)
        revision = f"main@sha1:{secrets.token_hex(20)}"
        models, rendered, sites = build(fleet, ENV, self.tmp / "models", revision)
        pushed = push_release(fleet, ENV, name, models, sites, revision, self.pusher)
        self.digests[name] = pushed.sites[SITE]
        self.rendered = rendered[0]
        return pushed.sites[SITE]

    def apply_site_objects(self) -> list[dict]:
        """The site's bootstrap: its Secrets (onsite.site_secrets) and its Flux objects as fleet.render made them,
        with the providers polling every POLL."""
        objects = [dict(o) for o in self.rendered.flux_objects]
        for obj in objects:
            if obj["kind"] == "ResourceSetInputProvider":
                obj["metadata"]["annotations"]["fluxcd.controlplane.io/reconcileEvery"] = POLL
        secrets_ = onsite.site_secrets(self.registry.host, *self.pull_user, self.key)
        self.kubectl.run("apply", "--server-side", "-f", "-",
                         stdin=yaml.safe_dump_all([*secrets_, *objects], sort_keys=False))
        return objects

    def get(self, kind: str, name: str = flux.SITE_OBJECT, namespace: str = flux.NAMESPACE) -> dict:
        done = self.kubectl.run("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return json.loads(done.stdout) if done.returncode == 0 else {}

    def reconcile(self, kind: str, name: str = flux.SITE_OBJECT) -> None:
        """Ask for a reconcile now (the reconcile.fluxcd.io/requestedAt annotation every Flux controller and the
        operator honour: fluxcd/pkg runtime/predicates ReconcileRequestedPredicate)."""
        self.kubectl.run("annotate", "--overwrite", "-n", flux.NAMESPACE, kind, name,
                         f"reconcile.fluxcd.io/requestedAt={time.time_ns()}")


def condition(obj: dict, kind: str = "Ready") -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def wait_for(what: str, probe, timeout: float = 180.0, every: float = 1.0):
    """probe()'s first truthy answer; AssertionError naming `what` and the last answer when none comes in time
    (a bound on waiting for the controllers, not a timing assertion)."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s; last: {json.dumps(last)[:1500]}")


class FrontedRegistry(RealRegistry):
    """The real registry behind one loopback front port that serves its token realm too: go-containerregistry
    (v0.21.5-v0.21.9, which every Flux program here links) refuses a token realm on a loopback or private
    address unless it is the registry's own host:port (pkg/v1/remote/transport/bearer.go validateRealmURL:
    "realm host ... is a private or link-local address")."""

    def __init__(self, work: Path):
        super().__init__(work)
        self.backend = self.host
        self.front = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.front.serve_forever, daemon=True).start()
        self.host = f"127.0.0.1:{self.front.server_address[1]}"
        self.url = f"http://{self.host}"

    def _config(self) -> Path:
        path = super()._config()
        config = json.loads(path.read_text())
        config["auth"]["token"]["realm"] = f"http://{self.host}/token"
        config["http"]["addr"] = self.backend
        path.write_text(json.dumps(config))
        return path

    def _handler(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                token = f"127.0.0.1:{outer._token_http.server_address[1]}"
                target = token if self.path.startswith("/token") else outer.backend
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                connection = http.client.HTTPConnection(target, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                connection.request(self.command, self.path, body or None, headers)
                answer = connection.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value.replace(outer.backend, outer.host))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward
        return Handler

    def close(self) -> None:
        super().close()
        self.front.shutdown()
