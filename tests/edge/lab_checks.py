"""What edge tests look at on lab hosts: files, modes, unit restarts, kubectl, argv samples, the kubeconfig."""
import base64
import json
import ssl
import threading
import urllib.request
from pathlib import Path

import yaml


def host_file(lab, host: str, path: str) -> Path:
    return lab.host(host).path_on_host(path)


def mode(lab, host: str, path: str) -> int:
    return host_file(lab, host, path).stat().st_mode & 0o777


def starts(lab, host: str) -> int:
    """How many times the host's k3s unit was (re)started."""
    unit = "k3s" if lab.host(host).role == "server" else "k3s-agent"
    path = host_file(lab, host, f"/var/log/lab-units/{unit}.starts")
    return len(path.read_text().splitlines()) if path.exists() else 0


def all_starts(lab) -> dict[str, int]:
    return {h.name: starts(lab, h.name) for h in lab.hosts}


def kubectl_json(lab, args: str, host: str = "edge-1") -> dict:
    return json.loads(lab.exec(host, f"k3s kubectl {args} -o json").stdout)


def ready_nodes(lab) -> set[str]:
    items = kubectl_json(lab, "get nodes")["items"]
    return {n["metadata"]["name"] for n in items
            if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])}


def ready_nodes_or_none(lab) -> set[str] | None:
    """The Ready nodes, or None when the first server has no cluster to ask."""
    try:
        return ready_nodes(lab)
    except (RuntimeError, ValueError, KeyError):
        return None


def host_config(lab, host: str) -> dict:
    return yaml.safe_load(host_file(lab, host, "/etc/rancher/k3s/config.yaml").read_text())


def nodes_via_kubeconfig(path: Path, context: str, workdir: Path) -> set[str]:
    """Call the API server as the kubeconfig's context does (CA + client certificate) from this machine."""
    config = yaml.safe_load(path.read_text())
    ctx = next(c["context"] for c in config["contexts"] if c["name"] == context)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == ctx["user"])
    workdir.mkdir(mode=0o700, exist_ok=True)
    (workdir / "c.crt").write_bytes(base64.b64decode(user["client-certificate-data"]))
    (workdir / "c.key").write_bytes(base64.b64decode(user["client-key-data"]))
    tls = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    tls.load_cert_chain(workdir / "c.crt", workdir / "c.key")
    with urllib.request.urlopen(f"{cluster['server']}/api/v1/nodes", context=tls, timeout=10) as reply:
        return {n["metadata"]["name"] for n in json.loads(reply.read())["items"]}


class ArgvSampler:
    """Samples every process's argv on the lab hosts while a run goes on."""

    def __init__(self, lab, interval: float = 0.1):
        self.lab, self.interval = lab, interval
        self.seen: set[str] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for host in self.lab.hosts:
                self.seen.update(" ".join(argv) for argv in host.process_argvs())
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "ArgvSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
