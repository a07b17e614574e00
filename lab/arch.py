"""Make a lab host look like another CPU: a per-host `uname` (and `getconf LONG_BIT`) stand-in in /usr/local/sbin,
which comes before /bin on the host's PATH. The stand-in k3s then reports that host's architecture as the kubelet
would (kubernetes.io/arch from the Go architecture of the binary install.sh picks for `uname -m`)."""
import shlex

from lab.host import LabHost

# uname -m -> Go architecture (k3s release naming), as install.sh and the kubelet map them
GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
           "armv7l": "arm", "armv6l": "arm", "armhf": "arm"}

UNAME = """#!/bin/sh
# lab stand-in: this host reports machine {machine}
out=$(/bin/uname "$@") || exit $?
printf '%s\\n' "$out" | sed "s/$(/bin/uname -m)/{machine}/g"
"""
GETCONF = """#!/bin/sh
# lab stand-in: a {bits}-bit userland
[ "$*" = LONG_BIT ] && {{ echo {bits}; exit 0; }}
exec /usr/bin/getconf "$@"
"""


def set_machine(host: LabHost, machine: str, long_bit: int | None = None) -> None:
    """`uname -m` prints `machine` on this host from now on; `long_bit` (32/64) fakes the userland's word size."""
    if machine not in GO_ARCH:
        raise ValueError(f"unknown machine {machine!r}; known: {', '.join(GO_ARCH)}")
    _write(host, "/usr/local/sbin/uname", UNAME.format(machine=shlex.quote(machine).strip("'")))
    if long_bit is not None:
        _write(host, "/usr/local/sbin/getconf", GETCONF.format(bits=int(long_bit)))


def _write(host: LabHost, path: str, text: str) -> None:
    target = host.path_on_host(path)
    target.write_text(text)
    target.chmod(0o755)
