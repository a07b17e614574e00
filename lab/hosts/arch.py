"""Make a lab host look like another CPU: per-host `uname`, `dpkg --print-architecture` (and `getconf LONG_BIT`)
stand-ins in /usr/local/sbin, which comes before /bin on the host's PATH. The node's kubernetes.io/arch comes from
the k3s binary installed (the kubelet reports its Go architecture), as install.sh picks it for `uname -m`."""
import shlex

from lab.hosts.host import LabHost

# uname -m -> Go architecture (k3s release naming), as install.sh and the kubelet map them
GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
           "armv7l": "arm", "armv6l": "arm", "armhf": "arm"}

UNAME = """#!/bin/sh
# lab stand-in: this host reports machine {machine}
out=$(/bin/uname "$@") || exit $?
printf '%s\\n' "$out" | sed "s/$(/bin/uname -m)/{machine}/g"
"""
DPKG = """#!/bin/sh
# lab stand-in: the userland's Debian architecture is {deb}
[ "$*" = --print-architecture ] && {{ echo {deb}; exit 0; }}
exec /usr/bin/dpkg "$@"
"""
GETCONF = """#!/bin/sh
# lab stand-in: a {bits}-bit userland
[ "$*" = LONG_BIT ] && {{ echo {bits}; exit 0; }}
exec /usr/bin/getconf "$@"
"""


def set_machine(host: LabHost, machine: str, long_bit: int | None = None) -> None:
    """`uname -m` prints `machine` on this host from now on; `long_bit` (32/64) fakes the userland's word size
    (`getconf LONG_BIT`; with 32 on aarch64, `dpkg --print-architecture` says armhf)."""
    if machine not in GO_ARCH:
        raise ValueError(f"unknown machine {machine!r}; known: {', '.join(GO_ARCH)}")
    _write(host, "/usr/local/sbin/uname", UNAME.format(machine=shlex.quote(machine).strip("'")))
    deb = {"amd64": "amd64", "arm64": "arm64", "arm": "armhf"}[GO_ARCH[machine]]
    if long_bit == 32 and deb == "arm64":
        deb = "armhf"            # a 64-bit kernel on a 32-bit userland (Raspberry Pi OS 32-bit)
    _write(host, "/usr/local/sbin/dpkg", DPKG.format(deb=deb))
    if long_bit is not None:
        _write(host, "/usr/local/sbin/getconf", GETCONF.format(bits=int(long_bit)))


def _write(host: LabHost, path: str, text: str) -> None:
    target = host.path_on_host(path)
    target.write_text(text)
    target.chmod(0o755)
