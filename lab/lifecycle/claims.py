"""Which /24 belongs to which lab: claim files under /run/mlops-lab, safe across concurrent labs.

Lab number N owns 10.213.N.0/24, the bridge `mlabNbr` and the namespaces `mlabN-*`. A claim file
records the owning process and the hosts' init processes; a lab whose processes are all gone is
stale and `cleanup_stale()` removes what it left behind.
"""
import fcntl
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from lab.hosts import network
from lab.hosts.procs import is_alive, start_time

CLAIM_DIR = Path("/run/mlops-lab")
PREFIX = "mlab"
LAB_NUMBERS = range(256)


def bridge_name(number: int) -> str:
    return f"{PREFIX}{number}br"


def netns_prefix(number: int) -> str:
    return f"{PREFIX}{number}-"


def veth_prefix(number: int) -> str:
    return f"{PREFIX}{number}v"


def subnet_of(number: int) -> str:
    return f"10.213.{number}.0/24"


@contextmanager
def _locked():
    # 0711: other users may pass through (sshd reads a login user's authorized_keys as that user), not list
    CLAIM_DIR.mkdir(mode=0o711, parents=True, exist_ok=True)
    CLAIM_DIR.chmod(0o711)
    with open(CLAIM_DIR / "alloc.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def lab_dir(number: int) -> Path:
    """Where the hosts of lab `number` keep their own files (outside any host's private /tmp)."""
    return CLAIM_DIR / f"lab-{number}"


def _claim_path(number: int) -> Path:
    return CLAIM_DIR / f"lab-{number}.json"


def _subnet_in_use(number: int) -> bool:
    routes = network.ip("route", "show", subnet_of(number), check=False).stdout
    return bool(routes.strip()) or network.link_exists(bridge_name(number))


def claim(state_file: Path) -> int:
    """Reserve a free lab number for the calling process; returns it."""
    with _locked():
        for number in LAB_NUMBERS:
            if _claim_path(number).exists() or _subnet_in_use(number):
                continue
            write_claim(number, state_file, init_pids=[])
            return number
    raise RuntimeError(f"no free lab subnet left in 10.213.0.0/16 (see {CLAIM_DIR})")


def write_claim(number: int, state_file: Path, init_pids: list[tuple[int, int]]) -> None:
    """Record the owner (this process) and the hosts' init processes (pid, start time)."""
    record = {"owner": [os.getpid(), start_time(os.getpid())], "state": str(state_file),
              "inits": init_pids}
    tmp = _claim_path(number).with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(_claim_path(number))


def release(number: int) -> None:
    _claim_path(number).unlink(missing_ok=True)


def _is_live(record: dict) -> bool:
    return any(is_alive(pid, started) for pid, started in [record["owner"], *record["inits"]])


def teardown(number: int) -> None:
    """Remove every namespace (and its processes), the bridge and the host files of lab `number`."""
    for netns in network.list_netns():
        if netns.startswith(netns_prefix(number)):
            network.remove_netns(netns)
    for link in network.list_links(veth_prefix(number)):
        network.remove_link(link)  # the kernel frees a namespace's veth lazily; delete ours now
    network.remove_link(bridge_name(number))
    shutil.rmtree(lab_dir(number), ignore_errors=True)


def cleanup_stale() -> list[int]:
    """Tear down labs whose processes are all gone, and lab namespaces nobody claims.

    Returns the lab numbers cleaned up. Live labs (another test run, a `lab.up`) are untouched.
    """
    cleaned = []
    with _locked():
        live = set()
        for path in CLAIM_DIR.glob("lab-*.json"):
            number = int(path.stem.split("-", 1)[1])
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                record = {"owner": [0, None], "inits": []}
            if _is_live(record):
                live.add(number)
                continue
            teardown(number)
            release(number)
            cleaned.append(number)
        for number in _unclaimed_numbers(live | set(cleaned)):
            teardown(number)
            cleaned.append(number)
    return cleaned


def _unclaimed_numbers(known: set[int]) -> set[int]:
    found = set()
    for netns in network.list_netns():
        head = netns.split("-", 1)[0]
        if head.startswith(PREFIX) and head[len(PREFIX):].isdigit():
            found.add(int(head[len(PREFIX):]))
    bridges = network.ip("-o", "link", "show", "type", "bridge", check=False).stdout
    for line in bridges.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(PREFIX) and name.endswith("br") and name[len(PREFIX):-2].isdigit():
            found.add(int(name[len(PREFIX):-2]))
    return found - known
