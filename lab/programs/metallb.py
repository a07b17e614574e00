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
import json
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from common import yamlio
from common.files import atomic_write
from lab.hosts import network
from lab.programs.apiserver import ApiServer, end_group, free_port, rss_kib
from lab.programs.build import KUBERNETES, METALLB, cache_root, ensure_programs
from lab.programs.pki import make_serving_pair

NAMESPACE = "metallb-system"
POD = "controller-lab"
WEBHOOK_PORT = 9443
READY_TIMEOUT = 120.0
TOKEN_LIFETIME = "12h"  # longer than any lab run; a TokenRequest's minimum is 10 minutes
STOP_TIMEOUT = 10.0
NOT_INSTALLED = ("Deployment", "DaemonSet")
CONTROLLER_PODS = "app=metallb,component=controller"  # the release's controller Deployment's pod labels
PROJECTION_PERIOD = 1.0
# until its address is on the bridge, the API server's calls to the Pod go unanswered (its SYN is retried) where a pod
# network would refuse them at once: kept short by polling often
POD_POLL = 0.1
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
    pod_address: tuple[str, str] | None = None  # (address, bridge) run_as_pod added
    projection: threading.Thread | None = None  # run_as_pod's secret volumes
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def cert_dir(self) -> Path:
        return self.work / "k8s-webhook-server" / "serving-certs"

    @classmethod
    def start(cls, api: ApiServer, work: Path, manifest: bytes,
              ready_timeout: float = READY_TIMEOUT) -> "MetallbController":
        """Install `manifest`'s objects, start the controller, wait until the API server gets its webhook's answer."""
        return cls._launch(api, work, ready_timeout, lambda metallb, binaries, deadline: metallb._install_and_run(
            manifest, binaries, deadline))

    @classmethod
    def run_as_pod(cls, api: ApiServer, work: Path, bridge: str, timeout: float = READY_TIMEOUT) -> "MetallbController":
        """Be the kubelet of an installed release's controller: once the Deployment's Pod runs with an address (kwok
        gives it one from its node's pod CIDR), put that address on the lab bridge `bridge`, so the API server reaches
        the webhook Service's endpoint as through a pod network, and run the controller as that Pod: its
        ServiceAccount and environment, the manifest's webhooks through their Service, and MetalLB's own certificate
        rotation (the serving certificate, its Secret and the webhooks' caBundle, as in a cluster)."""
        return cls._launch(api, work, timeout, lambda metallb, binaries, deadline: metallb._run_as_the_pod(
            bridge, binaries, deadline))

    @classmethod
    def _launch(cls, api: ApiServer, work: Path, timeout: float,
                run: Callable[["MetallbController", dict[str, Path], float], None]) -> "MetallbController":
        """A controller for `api` holding the webhook port, started by `run(controller, binaries, deadline)`; all of it
        undone if that fails."""
        work.mkdir(parents=True, exist_ok=True, mode=0o700)
        binaries = ensure_programs(programs=METALLB + KUBERNETES)
        metallb = cls(api, work, binaries["kubectl"])
        deadline = time.monotonic() + timeout
        metallb._take_port(deadline)
        try:
            run(metallb, binaries, deadline)
        except BaseException:
            metallb.stop(grace=2.0)
            raise
        return metallb

    def _install_and_run(self, manifest: bytes, binaries: dict[str, Path], deadline: float) -> None:
        ca = make_serving_pair(self.cert_dir, "metallb-webhook-service.metallb-system.svc", ("127.0.0.1",))
        docs = lab_manifests(manifest, ca.read_bytes())
        self.webhook_configuration = next(d for d in docs if d["kind"] == "ValidatingWebhookConfiguration")
        self.apply(yaml.safe_dump_all(docs))
        self._write_identity(next(d for d in docs if d["kind"] == "Pod")["spec"]["serviceAccountName"])
        self._spawn(binaries["metallb-controller"], POD, ["--disable-cert-rotation"])
        self._wait_answer(deadline)

    def _run_as_the_pod(self, bridge: str, binaries: dict[str, Path], deadline: float) -> None:
        pod = self._wait_running_pod(deadline)
        network.ip("addr", "add", f"{pod['status']['podIP']}/32", "dev", bridge)
        self.pod_address = (pod["status"]["podIP"], bridge)
        self._write_identity(pod["spec"]["serviceAccountName"])
        self.projection = threading.Thread(target=self._project_secrets, args=(pod,), daemon=True)
        self.projection.start()
        env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0].get("env", []) if "value" in e}
        self._spawn(binaries["metallb-controller"], pod["metadata"]["name"], [], env)

    def _project_secrets(self, pod: dict) -> None:
        """What the kubelet's secret volumes do for the Pod's container: each Secret's keys as files (0600) at its
        mount path, the Pod's /tmp being the work folder (so the webhook's certificate, which MetalLB's rotator
        writes into Secret metallb-webhook-cert, appears where controller-runtime reads it: cert-controller v0.15.0
        rotator.go ensureCertsMounted waits for it there). Polled every second until `stop()`; a real kubelet
        refreshes a mounted Secret at its next pod sync (--sync-frequency, 1 min by default)."""
        volumes = {v["name"]: v["secret"]["secretName"] for v in pod["spec"].get("volumes", []) if "secret" in v}
        mounts = {self.work / Path(m["mountPath"]).relative_to("/tmp"): volumes[m["name"]]
                  for m in pod["spec"]["containers"][0].get("volumeMounts", [])
                  if m["name"] in volumes and m["mountPath"].startswith("/tmp/")}
        written: dict[Path, str] = {}
        while not self.stopping.wait(PROJECTION_PERIOD):
            for folder, secret in mounts.items():
                done = self.kubectl_run("get", "secret", secret, f"--namespace={NAMESPACE}", "--output=json")
                data = (json.loads(done.stdout).get("data") or {}) if done.returncode == 0 else {}
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                for key, value in data.items():
                    text = base64.b64decode(value).decode()
                    if written.get(folder / key) != text:
                        atomic_write(folder / key, text, 0o600)
                        written[folder / key] = text

    def _wait_running_pod(self, deadline: float) -> dict:
        """The controller Deployment's Pod once it is Running with an address (MetallbError at the deadline)."""
        while time.monotonic() < deadline:
            done = self.kubectl_run("get", "pods", f"--namespace={NAMESPACE}", f"--selector={CONTROLLER_PODS}",
                                    "--output=json")
            pods = json.loads(done.stdout)["items"] if done.returncode == 0 else []
            running = [p for p in pods if p.get("status", {}).get("phase") == "Running" and p["status"].get("podIP")]
            if running:
                return running[0]
            time.sleep(POD_POLL)
        raise MetallbError(f"no Pod of the MetalLB controller Deployment ({CONTROLLER_PODS}) ran in time")

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

    def _spawn(self, binary: Path, pod: str, flags: list[str], env: dict[str, str] | None = None) -> None:
        """The controller as `pod` of NAMESPACE, its webhook's certificates under TMPDIR (see the module docstring)."""
        environ = dict(os.environ, KUBECONFIG=str(self.kubeconfig), TMPDIR=str(self.work), **(env or {}))
        environ.pop("KUBERNETES_SERVICE_HOST", None)  # out of cluster: controller-runtime's GetConfigOrDie reads KUBECONFIG
        argv = ["nice", "-n", "10", str(binary), f"--namespace={NAMESPACE}", f"--pod-name={pod}",
                f"--port={free_port()}", f"--health-probe-port={free_port()}", f"--cert-dir={self.cert_dir}",
                "--webhook-mode=enabled", "--log-level=info", *flags]
        with open(os.open(self.work / "metallb-controller.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                  "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=environ,
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

    def rss_kib(self) -> dict[str, int]:
        """The controller's resident memory in KiB."""
        return rss_kib({"metallb-controller": self.proc})

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the controller's log (its path first)."""
        path = self.work / "metallb-controller.log"
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
        return "\n".join([f"{path}:", *text])

    def stop(self, grace: float = STOP_TIMEOUT) -> None:
        """End the controller's process group, take its Pod's address off the bridge, give up the webhook port's lock."""
        self.stopping.set()
        if self.projection is not None:
            self.projection.join()
            self.projection = None
        if self.proc is not None:
            end_group(self.proc, grace)
            self.proc = None
        if self.pod_address is not None:
            network.ip("addr", "del", f"{self.pod_address[0]}/32", "dev", self.pod_address[1], check=False)
            self.pod_address = None
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    def __enter__(self) -> "MetallbController":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
