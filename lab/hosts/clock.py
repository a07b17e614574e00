"""A lab host's clock as the kit reads it: per-host `date` and `timedatectl` stand-ins in /usr/local/sbin (before
/bin on the host's PATH). The kernel clock is the machine's, shared by every host (Linux time namespaces do not
cover CLOCK_REALTIME), so a skewed clock is what `date` prints, the only way the kit reads a host's time."""
from lab.hosts.host import LabHost

DATE = """#!/bin/sh
# lab stand-in: this host's clock runs {offset} s off the machine's; -d/-r/-s/-f do not read the clock
case " $* " in *" -d"*|*" --date"*|*" -r"*|*" --reference"*|*" -s"*|*" --set"*|*" -f"*|*" --file"*)
    exec /bin/date "$@" ;;
esac
now=$(/bin/date +%s.%N)
exec /bin/date -d "@$((${{now%.*}} + {offset})).${{now#*.}}" "$@"
"""
# systemd's timedatectl: `show -p NTPSynchronized [--value]` (the kernel's view, set by any NTP daemon); the kit
# asks nothing else, and the stand-in refuses what it does not answer
TIMEDATECTL = """#!/bin/sh
# lab stand-in: timedatectl of a host whose clock is {state}
case "$*" in
    "show -p NTPSynchronized --value"|"show --property=NTPSynchronized --value") echo {value} ;;
    "show -p NTPSynchronized"|"show --property=NTPSynchronized") echo NTPSynchronized={value} ;;
    *) echo "timedatectl (lab stand-in): unsupported: $*" >&2; exit 1 ;;
esac
"""


def set_clock(host: LabHost, offset_s: int = 0, synced: bool = True) -> None:
    """`date` on this host is `offset_s` whole seconds off the machine's (none: the real date), and timedatectl
    says NTPSynchronized=yes or no."""
    date = host.path_on_host("/usr/local/sbin/date")
    if offset_s:
        _write(host, "/usr/local/sbin/date", DATE.format(offset=int(offset_s)))
    else:
        date.unlink(missing_ok=True)
    state = "synchronized by NTP" if synced else "not synchronized"
    _write(host, "/usr/local/sbin/timedatectl", TIMEDATECTL.format(state=state, value="yes" if synced else "no"))


def _write(host: LabHost, path: str, text: str) -> None:
    target = host.path_on_host(path)
    target.write_text(text)
    target.chmod(0o755)
