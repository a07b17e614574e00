"""MetalLB's real controller (build.py METALLB) out of cluster against a lab ApiServer, its admission webhooks live.

    manifest = lab.releases.upstream.metallb_manifest(pinned_version(METALLB[0]))
    with MetallbController.start(api, work_dir, manifest) as metallb:   # the webhook answers when it returns
        metallb.webhook_configuration, metallb.log_tail()

The caller passes the release manifest (go.universe.tf/metallb config/manifests/metallb-native.yaml, hash-pinned by
lab/releases/upstream.py, which imports this package: so not imported here). Its objects are applied but the
Deployment and DaemonSet (the controller runs as a host process, the speaker not at all), plus one Pod from the
controller Deployment's template: the controller reads its own Pod at start (v0.16.1 internal/k8s/k8s.go New,
--pod-name). The ValidatingWebhookConfiguration and the bgppeers CRD's conversion webhook are rewritten from
clientConfig.service to url https://127.0.0.1:9443<path> with the caBundle of a serving certificate made here
(pki.py); --disable-cert-rotation keeps the controller from replacing it. The webhook server reads that certificate
from controller-runtime's default $TMPDIR/k8s-webhook-server/serving-certs (--cert-dir only tells the rotator:
k8s.go webhookServer sets no CertDir; controller-runtime v0.22.3 webhook/server.go setDefaults), so the controller's
TMPDIR is its work folder. Its port 9443 is fixed upstream (k8s.go webhookServer), so a machine runs one lab
controller at a time (a lock in the program cache). Metrics and health probes get free ports (their listeners bind
every interface). The controller runs as its own ServiceAccount (the Deployment's serviceAccountName), with a token
from the API server's TokenRequest API in a 0600 file that its kubeconfig names (`tokenFile`), so it has only the
release manifest's RBAC, as in a cluster, not the lab's admin certificate.
"""
from __future__ import annotations

import base64
import copy
import fcntl
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from common import yamlio
from common.files import atomic_write
from lab.programs.apiserver import ApiServer, end_group, free_port
from lab.programs.build import KUBERNETES, METALLB, cache_root, ensure_programs
from lab.programs.pki import make_serving_pair

NAMESPACE = "metallb-system"
POD = "controller-lab"
WEBHOOK_PORT = 9443
READY_TIMEOUT = 120.0
TOKEN_LIFETIME = "12h"  # longer than any lab run; a TokenRequest's minimum is 10 minutes
STOP_TIMEOUT = 10.0
NOT_INSTALLED = ("Deployment", "DaemonSet")
# refused by the webhook alone (a pool outside its namespace): the probe that it answers through the API server
PROBE = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
         "metadata": {"name": "lab-webhook-probe", "namespace": "default"}, "spec": {"addresses": ["192.0.2.0/32"]}}
PROBE_ANSWER = f"resource must be created in {NAMESPACE} namespace"


class MetallbError(RuntimeError):
    """The controller did not start or its webhook did not answer; the message carries the end of its log."""


def lab_manifests(manifest: bytes, ca_bundle: bytes) -> list[dict]:
    """The release manifest's objects the lab applies, webhooks pointed at the local controller, and its Pod."""
    docs = [d for d in yamlio.load_all(manifest.decode(), "metallb-native.yaml") if d]
    ca = base64.b64encode(ca_bundle).decode()
    for doc in docs:
        hooks = doc.get("webhooks", [])
        if doc["kind"] == "CustomResourceDefinition" and doc["spec"].get("conversion", {}).get("webhook"):
            hooks = [doc["spec"]["conversion"]["webhook"]]
        for hook in hooks:
            path = hook["clientConfig"].pop("service")["path"]
            hook["clientConfig"].update(url=f"https://127.0.0.1:{WEBHOOK_PORT}{path}", caBundle=ca)
    controller = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "controller")
    template = copy.deepcopy(controller["spec"]["template"])
    pod = {"apiVersion": "v1", "kind": "Pod", "spec": template["spec"],
           "metadata": {**template["metadata"], "name": POD, "namespace": NAMESPACE}}
    return [d for d in docs if d["kind"] not in NOT_INSTALLED] + [pod]


@dataclass
class MetallbController:
    """The running controller; `stop()` (or leaving the `with`) ends it and frees port 9443 for the next one."""

    api: ApiServer
    work: Path
    kubectl: Path
    webhook_configuration: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    lock: object = None

    @property
    def cert_dir(self) -> Path:
        return self.work / "k8s-webhook-server" / "serving-certs"

    @classmethod
    def start(cls, api: ApiServer, work: Path, manifest: bytes,
              ready_timeout: float = READY_TIMEOUT) -> "MetallbController":
        """Install `manifest`'s objects, start the controller, wait until the API server gets its webhook's answer."""
        work.mkdir(parents=True, exist_ok=True, mode=0o700)
        binaries = ensure_programs(programs=METALLB + KUBERNETES)
        metallb = cls(api, work, binaries["kubectl"])
        deadline = time.monotonic() + ready_timeout
        metallb._take_port(deadline)
        try:
            ca = make_serving_pair(metallb.cert_dir, "metallb-webhook-service.metallb-system.svc", ("127.0.0.1",))
            docs = lab_manifests(manifest, ca.read_bytes())
            metallb.webhook_configuration = next(d for d in docs if d["kind"] == "ValidatingWebhookConfiguration")
            metallb.apply(yaml.safe_dump_all(docs))
            metallb._write_identity(next(d for d in docs if d["kind"] == "Pod")["spec"]["serviceAccountName"])
            metallb._spawn(binaries["metallb-controller"])
            metallb._wait_answer(deadline)
        except BaseException:
            metallb.stop(grace=2.0)
            raise
        return metallb

    def _take_port(self, deadline: float) -> None:
        path = cache_root() / f".metallb-webhook-{WEBHOOK_PORT}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = open(path, "w")
        while True:
            try:
                fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise MetallbError(f"another lab MetalLB controller holds {path} (its webhook port {WEBHOOK_PORT} "
                                       "is fixed upstream): wait for it to end and run again") from None
                time.sleep(0.5)
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", WEBHOOK_PORT)) == 0:
                self.stop()
                raise MetallbError(f"something outside the lab listens on 127.0.0.1:{WEBHOOK_PORT}, the MetalLB "
                                   "webhook's fixed port: stop it (`ss -ltnp sport = :9443` names it) and run again")

    def kubectl_run(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
        """The real kubectl against the controller's API server (not checked)."""
        return self.api.kubectl(self.kubectl, *args, stdin=stdin)

    def apply(self, manifests: str) -> None:
        """A server-side apply of `manifests`; MetallbError with kubectl's words if refused."""
        done = self.kubectl_run("apply", "--server-side", "--field-manager=lab", "-f", "-", stdin=manifests)
        if done.returncode != 0:
            raise MetallbError(f"applying MetalLB's objects failed: {done.stderr.strip()[-1500:]}")

    @property
    def kubeconfig(self) -> Path:
        return self.work / "controller.kubeconfig"

    def _write_identity(self, service_account: str) -> None:
        """The controller's kubeconfig: the API server's cluster entry and a token of `service_account`."""
        done = self.kubectl_run("create", "token", service_account, f"--namespace={NAMESPACE}",
                                f"--duration={TOKEN_LIFETIME}")
        if done.returncode != 0:
            raise MetallbError(f"no token for the controller's ServiceAccount {service_account}: "
                               f"{done.stderr.strip()[-600:]}")
        token = self.work / "controller.token"
        atomic_write(token, done.stdout.strip(), 0o600)
        clusters = yamlio.load(self.api.kubeconfig.read_text(), str(self.api.kubeconfig))["clusters"]
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "lab", "clusters": clusters,
                  "users": [{"name": service_account, "user": {"tokenFile": str(token)}}],
                  "contexts": [{"name": "lab", "context": {"cluster": clusters[0]["name"], "user": service_account}}]}
        atomic_write(self.kubeconfig, yaml.safe_dump(config, sort_keys=False), 0o600)

    def _spawn(self, binary: Path) -> None:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), TMPDIR=str(self.work))
        env.pop("KUBERNETES_SERVICE_HOST", None)  # out of cluster: controller-runtime's GetConfigOrDie reads KUBECONFIG
        argv = ["nice", "-n", "10", str(binary), f"--namespace={NAMESPACE}", f"--pod-name={POD}",
                f"--port={free_port()}", f"--health-probe-port={free_port()}", "--disable-cert-rotation",
                f"--cert-dir={self.cert_dir}", "--webhook-mode=enabled", "--log-level=info"]
        with open(os.open(self.work / "metallb-controller.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                  "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                         cwd=self.work, start_new_session=True)

    def _wait_answer(self, deadline: float) -> None:
        """Until a dry-run create of PROBE is refused in the webhook's words (before: `failed calling webhook`)."""
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise MetallbError(f"the MetalLB controller exited with {self.proc.returncode} while starting:\n"
                                   f"{self.log_tail()}")
            done = self.kubectl_run("create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(PROBE))
            if PROBE_ANSWER in done.stderr:
                return
            last = (done.stderr or done.stdout).strip()[-600:]
            time.sleep(0.5)
        raise MetallbError(f"the MetalLB webhook did not answer through {self.api.url} in time; last: {last}\n"
                           f"{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the controller's log (its path first)."""
        path = self.work / "metallb-controller.log"
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
        return "\n".join([f"{path}:", *text])

    def stop(self, grace: float = STOP_TIMEOUT) -> None:
        """End the controller's process group, then give up the webhook port's lock."""
        if self.proc is not None:
            end_group(self.proc, grace)
            self.proc = None
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    def __enter__(self) -> "MetallbController":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
