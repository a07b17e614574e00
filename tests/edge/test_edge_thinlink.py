"""Thin links on a lab site: the site uplink as a token bucket, dropped uploads resumed (only the rest sent, counted
on the link), corrupt parts replaced, uploads to a site bounded by --upload-parallel."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from edge_hosts.engine.fanout import Engine
from edge_hosts.inventory.load import load_inventory
from edge_hosts.engine.progress import Progress
from edge_hosts.access.ssh import PART_SUFFIX, UPLOAD_PREFIX, HostSession, TransportError
from lab.hosts.network import limit_link, netns_pids, tx_bytes
from lab.hosts.procs import argv_of

from helpers import json_result, kit, lab_site
from lab_checks import host_file, ready_nodes

HOST = "edge-2"
AIRGAP_IMAGES = "k3s-airgap-images-amd64.tar.zst"


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    return module_lab_factory(hosts=4, servers=1)


@pytest.fixture
def session(lab):
    inventory = load_inventory(str(lab.site_file))
    session = HostSession(inventory, inventory.host(HOST))
    yield session
    session.close()


@pytest.fixture
def thin_host(lab):
    """HOST behind a 16 Mbit/s token bucket: an upload of a few MiB is under way long enough to be dropped."""
    lab.limit_link(HOST, "16mbit")
    yield lab.host(HOST)
    lab.limit_link(HOST, None)


def random_file(path: Path, mib: int) -> tuple[Path, str]:
    path.write_bytes(os.urandom(mib << 20))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def parts(lab, name: str) -> list[Path]:
    """The staged parts of files in the login (root) home of a host."""
    return sorted(host_file(lab, name, "/root").glob(f"{UPLOAD_PREFIX}{name}-*{PART_SUFFIX}"))


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # installed and removed meanwhile
        return 0


def drop_sessions(lab, name: str) -> None:
    """Kill the host's SSH session processes (by pid, found in its namespace): the kit's connection drops."""
    for pid in netns_pids(lab.host(name).netns):
        argv = argv_of(pid) or []
        if argv and "@notty" in argv[0]:
            os.kill(pid, signal.SIGKILL)


def upload_dropped_at(lab, session, source: Path, sha: str, remote: str, staged: int) -> Path:
    """Upload `source`, drop the connection once `staged` bytes of it are on the host and reconnect; return the
    part the upload left."""
    errors = []
    thread = threading.Thread(target=lambda: _upload_into(session, source, sha, remote, errors))
    thread.start()
    while not any(size_of(p) >= staged for p in parts(lab, HOST)):
        assert thread.is_alive(), f"the upload ended before it was dropped: {errors}"
        time.sleep(0.02)
    drop_sessions(lab, HOST)
    thread.join(timeout=120)
    assert [type(e) for e in errors] == [TransportError], errors
    [part] = parts(lab, HOST)
    session.connect()  # what the engine does after a dropped link, before it runs the step again
    return part


def _upload_into(session, source: Path, sha: str, remote: str, errors: list) -> None:
    try:
        session.upload(source, remote, "0644", sha)
    except Exception as error:  # noqa: BLE001 - reported to the test
        errors.append(error)


def test_the_site_uplink_is_a_token_bucket_every_upload_passes(lab, session, tmp_path):
    qdisc = lambda: subprocess.run(["tc", "-s", "qdisc", "show", "dev", lab.bridge], capture_output=True,
                                   text=True).stdout
    source, sha = random_file(tmp_path / "blob", 4)
    limit_link(lab.bridge, "20mbit")
    try:
        before = tx_bytes(lab.bridge)
        session.upload(source, "/var/lib/rancher/thin/blob", "0644", sha)
        sent, shown = tx_bytes(lab.bridge) - before, qdisc()
    finally:
        limit_link(lab.bridge, None)
    assert "tbf" in shown and "rate 20Mbit" in shown
    fields = shown.split()
    assert int(fields[fields.index("Sent") + 1]) >= 4 << 20  # the whole upload went through the bucket
    assert int(fields[fields.index("overlimits") + 1].rstrip(",")) > 0  # which held packets back
    assert (4 << 20) <= sent < 1.1 * (4 << 20)
    assert host_file(lab, HOST, "/var/lib/rancher/thin/blob").read_bytes() == source.read_bytes()
    assert "tbf" not in qdisc()


def test_a_dropped_upload_keeps_its_part_and_the_next_sends_only_the_rest(lab, session, thin_host, tmp_path):
    source, sha = random_file(tmp_path / "images", 12)
    remote = "/var/lib/rancher/thin/images"
    part = upload_dropped_at(lab, session, source, sha, remote, 3 << 20)
    staged = part.stat().st_size
    assert (3 << 20) <= staged < (12 << 20) and part.stat().st_mode & 0o777 == 0o600
    assert part.read_bytes() == source.read_bytes()[:staged]
    assert not host_file(lab, HOST, remote).exists()
    before = tx_bytes(thin_host.veth)
    session.upload(source, remote, "0644", sha)
    sent = tx_bytes(thin_host.veth) - before
    rest = (12 << 20) - staged
    assert rest <= sent <= 1.1 * rest  # the rest, with its headers and a few commands: not the whole file again
    assert host_file(lab, HOST, remote).read_bytes() == source.read_bytes()
    assert parts(lab, HOST) == [] and not list(host_file(lab, HOST, "/var/lib/rancher/thin").glob(".*kit-new"))


def test_the_engine_retries_a_step_whose_upload_dropped_and_the_whole_step_sends_the_file_about_once(
        lab, thin_host, tmp_path):
    inventory = load_inventory(str(lab.site_file))
    source, sha = random_file(tmp_path / "images", 12)
    remote = "/var/lib/rancher/thin/retried"
    with Engine(inventory, [HOST], 1, Progress([HOST], enabled=False)) as engine:
        ctx = engine.contexts[HOST]
        ctx.session.connect()
        before = tx_bytes(thin_host.veth)
        stepping = threading.Thread(target=engine.step, args=(ctx, "artifacts", lambda c: c.session.upload(
            source, remote, "0644", sha) or True))
        stepping.start()
        while not any(size_of(p) >= 3 << 20 for p in parts(lab, HOST)):
            assert stepping.is_alive(), ctx.error
            time.sleep(0.02)
        drop_sessions(lab, HOST)
        stepping.join(timeout=120)
        sent = tx_bytes(thin_host.veth) - before
    assert ctx.error is None and ctx.changed == ["artifacts"]
    assert host_file(lab, HOST, remote).read_bytes() == source.read_bytes()
    assert sent < 1.15 * (12 << 20)  # sent from the start again it would be at least 15 MiB
    assert parts(lab, HOST) == []


def test_a_corrupt_part_is_found_by_its_sha256_and_replaced(lab, session, thin_host, tmp_path):
    source, sha = random_file(tmp_path / "images", 8)
    remote = "/var/lib/rancher/thin/corrupt"
    part = upload_dropped_at(lab, session, source, sha, remote, 2 << 20)
    with open(part, "r+b") as handle:  # a flipped block in the middle of what was staged
        handle.seek(part.stat().st_size // 2)
        handle.write(b"\xff" * 4096)
    before = tx_bytes(thin_host.veth)
    session.upload(source, remote, "0644", sha)
    sent = tx_bytes(thin_host.veth) - before
    assert sent >= 8 << 20  # sent again from the first byte
    assert host_file(lab, HOST, remote).read_bytes() == source.read_bytes()
    assert parts(lab, HOST) == []


def test_a_part_of_other_content_for_the_same_target_is_dropped(lab, session, thin_host, tmp_path):
    old, old_sha = random_file(tmp_path / "old", 8)
    remote = "/var/lib/rancher/thin/replaced"
    old_part = upload_dropped_at(lab, session, old, old_sha, remote, 2 << 20)
    new, new_sha = random_file(tmp_path / "new", 1)
    session.upload(new, remote, "0644", new_sha)
    assert host_file(lab, HOST, remote).read_bytes() == new.read_bytes()
    assert not old_part.exists() and parts(lab, HOST) == []


class InFlight:
    """Samples the hosts' staged parts; `most`: how many were under way at once (more than `floor` bytes, less than
    `full`). A part's sightings under way span a time inside its true transfer, so overlapping spans are transfers
    that overlapped, however late a sample is taken."""

    def __init__(self, lab, names: list[str], floor: int, full: int):
        self.lab, self.names, self.floor, self.full = lab, names, floor, full
        self.spans: dict[Path, list[float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "InFlight":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            for part in [p for name in self.names for p in parts(self.lab, name)]:
                size, seen = size_of(part), time.monotonic()
                if self.floor < size < self.full:
                    self.spans.setdefault(part, [seen, seen])[1] = seen

    @property
    def most(self) -> int:
        return max((sum(start <= t <= end for start, end in self.spans.values()) for t, _ in self.spans.values()),
                   default=0)


@pytest.mark.parametrize("slots", [1, 2])
def test_uploads_to_a_site_are_bounded_by_its_upload_slots_not_by_parallel(lab, tmp_path, slots):
    inventory = load_inventory(str(lab.site_file))
    names = ["edge-2", "edge-3", "edge-4"]
    source, sha = random_file(tmp_path / "blob", 4)
    limit_link(lab.bridge, "40mbit")
    try:
        with Engine(inventory, names, 3, Progress(names, enabled=False)) as engine, \
                InFlight(lab, names, 0, 4 << 20) as flight:
            engine.limit_uploads(slots)
            engine.each(list(engine.contexts.values()),
                        lambda ctx: ctx.session.upload(source, f"/var/lib/rancher/thin/slots-{slots}", "0644", sha))
    finally:
        limit_link(lab.bridge, None)
    assert flight.most == slots  # never more, and the bound is what held them back
    assert all(host_file(lab, n, f"/var/lib/rancher/thin/slots-{slots}").read_bytes() == source.read_bytes()
               for n in names)


def test_bootstrap_upload_parallel_1_uploads_one_file_at_a_time_over_the_thin_uplink(lab, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(lab.bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    images = next(p for p in manifest["files"] if p.endswith(AIRGAP_IMAGES))
    (bundle / images).write_bytes(os.urandom(4 << 20))
    manifest["files"][images] = hashlib.sha256((bundle / images).read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    site = lab_site(lab, tmp_path, bundle=str(bundle))
    names = [h.name for h in lab.hosts]
    limit_link(lab.bridge, "40mbit")
    try:
        with InFlight(lab, names, 1 << 20, 4 << 20) as flight:  # only the images archive is above 1 MiB
            done = kit("edge.bootstrap", "--site", str(site), "--json", "--upload-parallel", "1",
                       "--kubeconfig", str(tmp_path / "kubeconfig"))
    finally:
        limit_link(lab.bridge, None)
    hosts = json_result(done)
    assert done.returncode == 0, done.stderr
    assert all("artifacts" in hosts[n]["changed"] for n in names)
    assert flight.most == 1
    assert ready_nodes(lab) == set(names)
    target = f"/var/lib/rancher/k3s/agent/images/{AIRGAP_IMAGES}"
    assert all(host_file(lab, n, target).read_bytes() == (bundle / images).read_bytes() for n in names)


def test_upload_parallel_below_1_is_bad_input_with_parallel_named_too(lab, tmp_path):
    done = kit("edge.bootstrap", "--site", str(lab.site_file), "--upload-parallel", "0", "--parallel", "0",
               "--kubeconfig", str(tmp_path / "kubeconfig"))
    assert done.returncode == 2
    assert "--upload-parallel: must be at least 1, got 0" in done.stderr
    assert "--parallel: must be at least 1, got 0" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "kubeconfig").exists()
