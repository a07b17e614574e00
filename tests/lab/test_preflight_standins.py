"""What edge preflight reads on a lab host: a per-host clock (`date`, `timedatectl`), br_netfilter not loaded
(`modprobe` and /proc/sys/net/bridge), real nftables rules in a host's network namespace, /etc/modules-load.d."""
from pathlib import Path

import pytest

BRIDGE_SYSCTL = "/proc/sys/net/bridge/bridge-nf-call-iptables"


@pytest.fixture(scope="module")
def lab(module_lab_factory):
    return module_lab_factory(hosts=2, servers=1)


def run(lab, host: str, command: str):
    return lab.exec(host, command, check=False)


def test_date_runs_an_offset_on_that_host_only(lab):
    lab.set_clock("edge-1", 3600)
    try:
        now = int(run(lab, "edge-1", "/bin/date +%s").stdout)
        skewed = int(run(lab, "edge-1", "date +%s").stdout)
        assert 3599 <= skewed - now <= 3601
        assert abs(int(run(lab, "edge-2", "date +%s").stdout) - now) <= 1
        assert run(lab, "edge-1", "date -u -d @0 +%Y").stdout.strip() == "1970"  # -d does not read the clock
        fraction = run(lab, "edge-1", "date +%s.%N").stdout.strip().split(".")[1]
        assert len(fraction) == 9 and fraction.isdigit()  # nanoseconds, as the kit's probe reads them
    finally:
        lab.set_clock("edge-1", 0)
    assert not lab.host("edge-1").path_on_host("/usr/local/sbin/date").exists()


def test_timedatectl_answers_ntp_synchronized_and_refuses_the_rest(lab):
    assert run(lab, "edge-2", "timedatectl show -p NTPSynchronized --value").stdout == "yes\n"  # the lab's default
    lab.set_clock("edge-2", synced=False)
    try:
        assert run(lab, "edge-2", "timedatectl show -p NTPSynchronized --value").stdout == "no\n"
        assert run(lab, "edge-2", "timedatectl show -p NTPSynchronized").stdout == "NTPSynchronized=no\n"
        refused = run(lab, "edge-2", "timedatectl status")
        assert refused.returncode == 1 and "unsupported: status" in refused.stderr
    finally:
        lab.set_clock("edge-2")


def test_modprobe_loads_an_unloaded_br_netfilter(lab):
    assert run(lab, "edge-1", f"test -e {BRIDGE_SYSCTL}").returncode == 0  # loaded (built into this kernel)
    lab.unload_br_netfilter("edge-1")
    assert run(lab, "edge-1", f"test -e {BRIDGE_SYSCTL}").returncode == 1
    assert run(lab, "edge-2", f"test -e {BRIDGE_SYSCTL}").returncode == 0  # the other host is untouched
    dry = run(lab, "edge-1", "modprobe -n -q br_netfilter")
    assert (dry.returncode, dry.stdout, dry.stderr) == (0, "", "")
    assert run(lab, "edge-1", f"test -e {BRIDGE_SYSCTL}").returncode == 1  # a dry run loads nothing
    assert run(lab, "edge-1", "modprobe br_netfilter && modprobe br_netfilter").returncode == 0  # loaded: still 0
    assert run(lab, "edge-1", f"test -e {BRIDGE_SYSCTL}").returncode == 0


def test_a_kernel_without_br_netfilter_fails_like_kmod(lab):
    lab.unload_br_netfilter("edge-2", available=False)
    try:
        quiet = run(lab, "edge-2", "modprobe -n -q br_netfilter")
        assert (quiet.returncode, quiet.stdout, quiet.stderr) == (1, "", "")
        loud = run(lab, "edge-2", "modprobe br_netfilter")
        assert loud.returncode == 1
        assert loud.stderr.startswith("modprobe: FATAL: Module br_netfilter not found in directory /lib/modules/")
        assert run(lab, "edge-2", f"test -e {BRIDGE_SYSCTL}").returncode == 1
    finally:
        lab.exec("edge-2", "umount /proc/sys/net/bridge; rm -f /usr/local/sbin/modprobe")


def connect(lab, source: str, target: str, port: int) -> str:
    """What a TCP connect from one host to another says: ok, refused, or timeout."""
    done = run(lab, source, f"timeout 2 bash -c 'exec 3<>/dev/tcp/{target}/{port}' 2>&1")
    return {0: "ok", 124: "timeout"}.get(done.returncode, "refused" if "refused" in done.stdout else done.stdout)


def test_nft_rules_in_a_hosts_namespace_drop_what_they_say_and_nothing_else(lab):
    server = lab.host("edge-1").address
    assert connect(lab, "edge-2", server, 6443) == "refused"  # nothing listens: the kernel answers with a reset
    lab.exec("edge-1", "nft add table inet kit_test && nft add chain inet kit_test input "
                       "'{ type filter hook input priority 0; policy accept; }' && "
                       "nft add rule inet kit_test input tcp dport 6443 drop")
    try:
        assert connect(lab, "edge-2", server, 6443) == "timeout"  # dropped: silence
        assert connect(lab, "edge-2", server, 22) == "ok"
        assert run(lab, "edge-2", "nft list ruleset").stdout.strip() == ""  # the other host has no rules
    finally:
        lab.exec("edge-1", "nft delete table inet kit_test")


def test_modules_load_d_is_each_hosts_own(lab):
    lab.exec("edge-1", "echo br_netfilter > /etc/modules-load.d/kit-test.conf")
    try:
        assert run(lab, "edge-2", "test -e /etc/modules-load.d/kit-test.conf").returncode == 1
        assert not Path("/etc/modules-load.d/kit-test.conf").exists()  # not the machine's either
    finally:
        lab.exec("edge-1", "rm -f /etc/modules-load.d/kit-test.conf")
