"""Edge bootstrap over a thin link (run as root): a 4-host lab site (1 server) behind a 20 Mbit/s token bucket on
the lab bridge (the site's uplink: every byte the machine sends any host passes it; the site LAN does not), its
bundle carrying a realistic airgap images archive (--images-mb of random, incompressible bytes, made at run time).
The largest upload, the images archive to the first agent that gets half of it, is cut at half way: the link to
that host goes down until the run gives up on it (exit 1), then it is restored and the run repeated, as a user
would: whole processes, `./kit edge.bootstrap --site SITE --json`.

    .venv/bin/python benchmarks/edge_wan.py [--images-mb 80] [--rate-mbit 20] [--upload-parallel 2]

Measured, not taken from the kit: bytes_sent is the bridge's tx counter (/sys/class/net/<bridge>/statistics:
every artifact byte, with the SSH, TCP, IP and Ethernet headers and every command of both runs), bytes_needed the
bundle files whose sha256 on each host differed before the run. Baselines from the same run: seconds_at_line_rate
(bytes_needed * 8 / rate) and the bytes a no-op re-run sends (its commands alone). Targets: bytes_sent <= 1.1x
bytes_needed, seconds <= 1.3x seconds_at_line_rate. The last line printed is a JSON object with the figures.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_hosts.artifacts.downloads import ArtifactSource
from edge_hosts.inventory.load import load_inventory
from edge_hosts.access.ssh import PART_SUFFIX, UPLOAD_PREFIX, sha256_file
from lab import Lab, cleanup_stale  # noqa: E402
from lab.hosts.network import limit_link, tx_bytes  # noqa: E402
from lab.lifecycle.packages import ensure_packages  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BYTES_TARGET, SECONDS_TARGET = 1.1, 1.3


def thin_bundle(lab: Lab, directory: Path, images_mb: int) -> Path:
    """The lab's bundle with its amd64 airgap images replaced by `images_mb` MiB of random bytes."""
    shutil.copytree(lab.bundle, directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    relpath = next(p for p in manifest["files"] if p.endswith("k3s-airgap-images-amd64.tar.zst"))
    with open(directory / relpath, "wb") as out:
        for _ in range(images_mb):
            out.write(os.urandom(1 << 20))
    manifest["files"][relpath] = sha256_file(directory / relpath)
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return directory / relpath


def thin_site(lab: Lab, bundle: Path, path: Path) -> Path:
    document = yaml.safe_load(lab.site_file.read_text())
    document["bundle"] = str(bundle)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def bytes_lacking(lab: Lab, site: Path) -> int:
    """Bytes of the bundle files each host lacks (its copy's sha256 differs); the MetalLB manifest once."""
    inventory = load_inventory(str(site))
    source = ArtifactSource(inventory)
    wanted = {h.name: source.host_artifacts(h) for h in inventory.hosts}
    wanted[inventory.first_server.name].append(source.metallb_artifact())
    total = 0
    for name, artifacts in wanted.items():
        for artifact in artifacts:
            on_host = lab.host(name).path_on_host(artifact.remote)
            if not on_host.is_file() or sha256_file(on_host) != artifact.sha256:
                total += source.local_file(artifact).stat().st_size
    return total


class HalfwayCut:
    """Cuts the link of the first agent whose staged upload reaches `half` bytes; `host` and `staged` say which
    and how much it held then."""

    def __init__(self, lab: Lab, half: int):
        self.lab, self.half = lab, half
        self.host: str | None = None
        self.staged = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "HalfwayCut":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        agents = [h for h in self.lab.hosts if h.role == "agent"]
        while not self._stop.wait(0.02):
            for host in agents:
                home = host.path_on_host("/root")
                for part in home.glob(f"{UPLOAD_PREFIX}{host.name}-*{PART_SUFFIX}"):
                    size = _size(part)
                    if size >= self.half:
                        self.lab.cut_link(host.name)
                        self.host, self.staged = host.name, size
                        return


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # installed and removed meanwhile
        return 0


def bootstrap(site: Path, kubeconfig: Path, upload_parallel: int) -> tuple[float, dict]:
    """One `./kit edge.bootstrap` as a user runs it: (seconds, {host: its result})."""
    started = time.perf_counter()
    done = subprocess.run([str(ROOT / "kit"), "edge.bootstrap", "--site", str(site), "--json", "--kubeconfig",
                           str(kubeconfig), "--upload-parallel", str(upload_parallel)],
                          cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    try:
        hosts = {h["name"]: h for h in json.loads(done.stdout.strip().splitlines()[-1])["hosts"]}
    except (ValueError, IndexError, KeyError):
        raise SystemExit(f"edge.bootstrap printed no result (exit {done.returncode}): {done.stderr[-800:]}")
    return seconds, hosts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images-mb", type=int, default=80, help="size of the airgap images archive (MiB)")
    parser.add_argument("--rate-mbit", type=int, default=20, help="the site uplink's token-bucket rate")
    parser.add_argument("--upload-parallel", type=int, default=2)
    args = parser.parse_args()
    ensure_packages()
    cleanup_stale()
    with tempfile.TemporaryDirectory(prefix="edge-wan-") as tmp:
        os.environ["XDG_CONFIG_HOME"] = str(Path(tmp, "xdg"))
        lab = Lab.up(hosts=4, servers=1, out_dir=Path(tmp, "lab"))
        try:
            figures = measure(lab, Path(tmp), args)
        finally:
            lab.down()
    if figures is None:
        return 1
    report(figures)
    return 0


def measure(lab: Lab, tmp: Path, args) -> dict | None:
    images = thin_bundle(lab, tmp / "bundle", args.images_mb)
    site, kubeconfig = thin_site(lab, tmp / "bundle", tmp / "site.yaml"), tmp / "kubeconfig"
    needed = bytes_lacking(lab, site)
    limit_link(lab.bridge, f"{args.rate_mbit}mbit")
    sent_before = tx_bytes(lab.bridge)
    with HalfwayCut(lab, images.stat().st_size // 2) as cut:
        first_s, first = bootstrap(site, kubeconfig, args.upload_parallel)
    if cut.host is None:
        print("no agent's upload reached half way: nothing was cut")
        return None
    lab.restore_link(cut.host)
    second_s, second = bootstrap(site, kubeconfig, args.upload_parallel)
    sent = tx_bytes(lab.bridge) - sent_before
    failed = {n: h["error"] for n, h in second.items() if h["status"] == "failed"}
    if first[cut.host]["status"] != "failed" or failed:
        print(f"unexpected results: first run {cut.host}: {first[cut.host]}; second run failures: {failed}")
        return None
    noop = noop_bytes(lab, site, kubeconfig, args.upload_parallel)
    if noop is None:
        return None
    line_rate_s = needed * 8 / (args.rate_mbit * 1e6)
    return {"hosts": 4, "rate_mbit": args.rate_mbit, "images_mb": args.images_mb,
            "upload_parallel": args.upload_parallel, "cut_host": cut.host, "staged_at_cut": cut.staged,
            "first_run_s": round(first_s, 2),
            "first_run_failed": {n: h["error"] for n, h in first.items() if h["error"]},
            "second_run_s": round(second_s, 2), "second_run_changed": {n: h["changed"] for n, h in second.items()},
            "noop_run_bytes": noop,
            "bytes_sent": sent, "bytes_needed": needed, "bytes_ratio": round(sent / needed, 4),
            "seconds": round(first_s + second_s, 2), "seconds_at_line_rate": round(line_rate_s, 2),
            "seconds_ratio": round((first_s + second_s) / line_rate_s, 4)}


def noop_bytes(lab: Lab, site: Path, kubeconfig: Path, upload_parallel: int) -> int | None:
    """The baseline: bytes a run with nothing to upload sends (its commands), or None when it was no no-op."""
    before = tx_bytes(lab.bridge)
    _, hosts = bootstrap(site, kubeconfig, upload_parallel)
    if {h["status"] for h in hosts.values()} != {"ok"}:
        print(f"the run after the resumed one was not a no-op: {hosts}")
        return None
    return tx_bytes(lab.bridge) - before


def report(f: dict) -> None:
    """The figures, each against its target, then the JSON line."""
    print(f"site: 4 hosts behind a {f['rate_mbit']} Mbit/s token bucket; images archive {f['images_mb']} MiB; "
          f"--upload-parallel {f['upload_parallel']}")
    print(f"cut: {f['cut_host']}'s link when its staged upload held {f['staged_at_cut']} bytes; "
          f"first run {f['first_run_s']:.2f} s ({f['cut_host']} failed), re-run {f['second_run_s']:.2f} s")
    print(f"bytes: sent {f['bytes_sent']} / needed {f['bytes_needed']} = {f['bytes_ratio']:.3f}x "
          f"(target <= {BYTES_TARGET}x): {'met' if f['bytes_ratio'] <= BYTES_TARGET else 'MISSED'}; "
          f"a no-op run sends {f['noop_run_bytes']}")
    print(f"seconds: {f['seconds']:.2f} / at line rate {f['seconds_at_line_rate']:.2f} = {f['seconds_ratio']:.3f}x "
          f"(target <= {SECONDS_TARGET}x): {'met' if f['seconds_ratio'] <= SECONDS_TARGET else 'MISSED'}")
    print(json.dumps(f))


if __name__ == "__main__":
    sys.exit(main())
