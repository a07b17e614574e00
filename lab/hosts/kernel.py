"""A lab host whose kernel has not loaded br_netfilter. The hosts share the machine's kernel (here it is built in),
so the module's absence is what the kit sees of it: /proc/sys/net/bridge empty (a tmpfs over it in the host's
mount namespace) and a per-host `modprobe` stand-in in /usr/local/sbin that "loads" it by removing that tmpfs."""
from lab.hosts.host import LabHost

BRIDGE_SYSCTLS = "/proc/sys/net/bridge"
# kmod's modprobe as the kit uses it: `modprobe [-n|--dry-run] [-q|--quiet] [--] NAME`; exit 1 and kmod's message
# ("FATAL: Module X not found in directory /lib/modules/<release>") for a module the kernel does not have (-q: silent)
MODPROBE = """#!/bin/sh
# lab stand-in: modprobe on a host whose kernel {has} br_netfilter as a loadable module
dry= quiet= module=
for arg; do
    case "$arg" in -n|--dry-run) dry=1 ;; -q|--quiet) quiet=1 ;; -*) ;; *) module=$arg ;; esac
done
if [ "$module" != br_netfilter ] || [ {available} = no ]; then
    [ -n "$quiet" ] || echo "modprobe: FATAL: Module $module not found in directory /lib/modules/$(uname -r)" >&2
    exit 1
fi
[ -n "$dry" ] || ! mountpoint -q {sysctls} || umount {sysctls}
"""


def unload_br_netfilter(host: LabHost, available: bool = True) -> None:
    """br_netfilter is not loaded on this host; `modprobe br_netfilter` loads it when `available`, else the kernel
    has no such module."""
    host.exec(f"mountpoint -q {BRIDGE_SYSCTLS} || mount -t tmpfs -o mode=0555 lab-no-br-netfilter {BRIDGE_SYSCTLS}")
    target = host.path_on_host("/usr/local/sbin/modprobe")
    target.write_text(MODPROBE.format(has="has" if available else "lacks", available="yes" if available else "no",
                                      sysctls=BRIDGE_SYSCTLS))
    target.chmod(0o755)
