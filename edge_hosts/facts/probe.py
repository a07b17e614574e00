"""One remote command per host that gathers every fact the steps check, so a no-op run costs one round trip."""
from __future__ import annotations

import shlex
import time
from dataclasses import dataclass

from common import k3s
from edge_hosts.inventory.model import Host, Inventory
from edge_hosts.access.ssh import HostSession, RemoteError, redact
from edge_hosts.facts import cluster

SYSCTL_FILE = "/etc/sysctl.d/90-mlops-edge-kit.conf"
SYSCTL_CONTENT = "net.ipv4.ip_forward = 1\n"
PI_CGROUP_FLAGS = ("cgroup_enable=cpuset", "cgroup_memory=1", "cgroup_enable=memory")
MARKER = "kit-probe=1"
END_MARKER = "kit-probe-end=1"  # facts are complete only when the probe ran to its last line
SELINUX_POLICY = "/usr/share/selinux/packages/k3s.pp"  # what install.sh checks for the k3s-selinux policy
# time-sync daemons by their systemd unit names (Debian's chrony.service is chronyd.service on RHEL; ntpsec's is
# also ntp.service); asked only when timedatectl does not say the clock is synchronized
TIME_SYNC_UNITS = ("systemd-timesyncd", "chronyd", "chrony", "ntpd", "ntp", "ntpsec", "openntpd")
BRIDGE_SYSCTL = "/proc/sys/net/bridge/bridge-nf-call-iptables"  # exists once br_netfilter is loaded (or built in)
REACH_TIMEOUT_S = 3  # a TCP connect within the site's LAN answers in milliseconds; silence this long is a drop
# a TCP connect from bash (the kit's probe has no other client it can count on); prints "reach HOST PORT EXIT MSG"
# (bash's first error line ends with the reason: "Connection refused", "Name or service not known"...)
REACH_FUNCTION = f"""reach() {{ r=$(timeout {REACH_TIMEOUT_S} bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>&1)
  c=$?; r=${{r%%
*}}; echo "reach $1 $2 $c ${{r##*: }}"; }}
"""


# one awk for the default route, the interface peers come in on (the node subnet's route, else the default one), the
# cgroup memory controller (v2 controllers file or v1 table) and the TCP ports in LISTEN state (/proc/net/tcp{,6} on
# stdin)
PROC_AWK = """FILENAME == "/proc/net/route" { if ($2 == "00000000") { route = 1; out = $1 }
                             if ($2 == lan) peers = $1; next }
FILENAME == "/proc/cgroups" { if ($1 == "memory" && $4 == "1") memory = 1; next }
FILENAME == cgroups { for (i = 1; i <= NF; i++) if ($i == "memory") memory = 1; next }
$4 == "0A" { split($2, a, ":"); ports[a[2]] = 1 }
END { print "route=" (route ? "yes" : "no"); print "cgroup_memory=" (memory ? "yes" : "no")
      print "peer_iface=" (peers ? peers : out)
      s = ""; for (p in ports) s = s p " "; print "listening=" s }"""


def probed_files(host: Host) -> dict[str, str]:
    """Files whose sha256 the probe reads, by artifact key (facts sha_<key>)."""
    return {"bin": k3s.BIN, "install": k3s.INSTALL_SCRIPT, "images": k3s.images_path(host.arch),
            "metallb_images": k3s.metallb_images_path(host.arch), "config": k3s.CONFIG,
            "flux_images": k3s.flux_images_path(host.arch), "flux_operator": k3s.FLUX_OPERATOR_MANIFEST,
            "fleet_manifest": k3s.FLEET_MANIFEST, "registries": k3s.REGISTRIES,
            "unit_env": f"/etc/systemd/system/{k3s.unit(host.role)}.service.env"}


def _route_hex(inventory: Inventory) -> str:
    """The node subnet's address as /proc/net/route writes destinations: hex of the address in host byte order,
    little-endian on every arch the kit supports (x86_64, arm64, armv7)."""
    return f"{int.from_bytes(inventory.node_subnet.network_address.packed, 'little'):08X}"


def reach_targets(inventory: Inventory, host: Host) -> list[str]:
    """Where a joiner's probe connects on 6443 before it joins: the API endpoint and, when that is another name
    (a VIP or DNS name), the first server itself."""
    if host == inventory.first_server:
        return []
    return list(dict.fromkeys([inventory.api_host, str(inventory.first_server.address)]))


def probe_script(host: Host, inventory: Inventory) -> str:
    unit = k3s.unit(host.role)
    ports = " ".join(str(p) for p in (k3s.SERVER_PORTS if host.role == "server" else k3s.AGENT_PORTS))
    paths = " ".join(shlex.quote(path) for path in probed_files(host).values())
    # only the CA hash of the server's token file, never its password
    ca_line = (f"echo ca_hash=$(sed -n 's/^K10\\([0-9a-f]*\\)::.*/\\1/p' {k3s.TOKEN_FILE} 2>/dev/null)\n"
               if host.role == "server" else "")
    # a joiner not yet running k3s connects to the API endpoint (nothing listens there before the first install:
    # "connection refused" is the server's own answer, so the path is open; a drop is a timeout)
    reach = "".join(f"  reach {shlex.quote(target)} {k3s.API_PORT}\n" for target in reach_targets(inventory, host))
    return f"""echo {MARKER}
echo clock_start=$(date +%s.%N)
echo uid=$(id -u)
m=$(uname -m); echo arch=$m
if [ "$m" = aarch64 ]; then  # a 64-bit kernel may run a 32-bit userland (Raspberry Pi OS)
  echo long_bit=$(getconf LONG_BIT 2>/dev/null); echo dpkg_arch=$(dpkg --print-architecture 2>/dev/null)
fi
{{ read -r enforce < /sys/fs/selinux/enforce; }} 2>/dev/null
if [ "$enforce" = 1 ]; then
  echo selinux=enforcing; [ -f {SELINUX_POLICY} ] && echo selinux_policy=yes
fi
read -r name < /proc/sys/kernel/hostname; echo hostname=$name
cgroups=/proc/cgroups; [ -f /sys/fs/cgroup/cgroup.controllers ] && cgroups=/sys/fs/cgroup/cgroup.controllers
cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v cgroups=$cgroups -v lan={_route_hex(inventory)} '{PROC_AWK}' \
  /proc/net/route $cgroups -
d=/var/lib/rancher; [ -d $d ] || d=/var/lib
echo disk_kb=$(df -Pk $d | awk 'NR==2{{print $4}}')
read -r forward < /proc/sys/net/ipv4/ip_forward; echo ip_forward=$forward
[ "$(cat {SYSCTL_FILE} 2>/dev/null)" = "{SYSCTL_CONTENT.strip()}" ] && echo sysctl_file=yes || echo sysctl_file=no
model=/sys/firmware/devicetree/base/model; [ -f $model ] && echo pi_model=$(tr -d '\\000' < $model)
for f in /boot/firmware/cmdline.txt /boot/cmdline.txt; do [ -f $f ] && {{ echo cmdline_file=$f; echo cmdline=$(cat $f); break; }}; done
sha256sum {paths} 2>/dev/null | sed 's/^/sha256 /'
[ -f /etc/systemd/system/{unit}.service ] && echo unit_file=yes || echo unit_file=no
systemctl is-active {unit} >/dev/null 2>&1 && active=yes || active=no; echo active=$active
systemctl is-enabled {unit} >/dev/null 2>&1 && echo enabled=yes || echo enabled=no
[ -s {k3s.NODE_PASSWORD_FILE} ] && echo node_password=yes || echo node_password=no
{ca_line}echo wanted_ports="{ports}"
synced=$(timedatectl show -p NTPSynchronized --value 2>/dev/null); echo ntp_synchronized=$synced
[ "$synced" = yes ] || echo time_sync=$(systemctl is-active {" ".join(TIME_SYNC_UNITS)} 2>/dev/null)
if [ -e {BRIDGE_SYSCTL} ]; then echo br_netfilter=loaded
elif modprobe -n -q br_netfilter 2>/dev/null; then echo br_netfilter=loadable; else echo br_netfilter=missing; fi
grep -qsx br_netfilter /etc/modules-load.d/*.conf && echo br_netfilter_persisted=yes
{REACH_FUNCTION if reach else ""}if [ $active = no ]; then  # before k3s runs here (it then adds rules of its own)
  command -v nft >/dev/null && r=$(nft -j list ruleset 2>/dev/null || echo unreadable) && echo "nft_ruleset=$r"
  case "$r" in *'"xt"'*)  # iptables-nft rules, whose matches nft -j shows only as opaque xt expressions
    for s in iptables-nft-save iptables-save; do
      command -v $s >/dev/null && {{ $s 2>/dev/null | sed 's/^/ipt /'; break; }}
    done ;;
  esac
  echo firewall_tools=$(for t in iptables ufw firewall-cmd; do command -v $t >/dev/null && echo $t; done)
  command -v iptables-legacy-save >/dev/null &&
    echo iptables_legacy_rules=$(iptables-legacy-save 2>/dev/null | grep -c -e '^-A' -e '^:[A-Z]* DROP')
{reach}fi
echo clock_end=$(date +%s.%N)
echo {END_MARKER}
"""


@dataclass
class Facts:
    values: dict[str, str]
    warned: bool = False  # preflight has shown the warnings these facts give (plan and bootstrap ask twice)

    def __getitem__(self, key: str) -> str:
        return self.values.get(key, "")

    def yes(self, key: str) -> bool:
        return self.values.get(key) == "yes"

    def busy_ports(self) -> list[int]:
        listening = {int(p, 16) for p in self["listening"].split()}
        return sorted(int(p) for p in self["wanted_ports"].split() if int(p) in listening)


def gather(session: HostSession, read_cluster: bool = False) -> tuple[Facts, cluster.Reading | None]:
    """Run the probe with sudo; a sudo failure is reported as such. With read_cluster (the first server) the same
    command reads the running cluster's tokens and snapshot, kept out of the facts."""
    before, after = cluster.reading_scripts() if read_cluster else ("", "")
    sent = time.time()
    result = session.run(before + probe_script(session.host, session.inventory) + after, reveal=read_cluster)
    received = time.time()
    if MARKER not in result.out:
        detail = " | ".join(result.err.strip().splitlines()[-2:]) or f"exit {result.code}"
        raise RemoteError(f"sudo does not work for {session.settings.user}: {detail}")
    out, _, read = result.out.partition(cluster.READING_MARK)
    reading = cluster.parse_reading(session, read)  # the tokens are secrets before the facts are parsed
    if END_MARKER not in out:
        detail = " | ".join(redact(result.err, session.secrets).strip().splitlines()[-2:]) or "no error output"
        raise RemoteError(f"the probe stopped before its end (exit {result.code}): {detail}")
    facts = _facts(session.host, redact(out, session.secrets))
    facts.values.update(clock_sent=repr(sent), clock_received=repr(received))  # this machine's clock around it
    return facts, reading


def _facts(host: Host, out: str) -> Facts:
    values = {f"sha_{key}": "" for key in probed_files(host)}
    keys = {path: f"sha_{key}" for key, path in probed_files(host).items()}
    for line in out.splitlines():
        if line.startswith("sha256 "):  # one sha256sum call for every file: "sha256 <digest>  <path>"
            _, digest, path = line.split(maxsplit=2)
            if path in keys:
                values[keys[path]] = digest
            continue
        if line.startswith("ipt "):  # iptables-nft-save, line by line
            values["iptables_save"] = values.get("iptables_save", "") + line[4:] + "\n"
            continue
        if line.startswith("reach "):  # "reach <target> <port> <exit code> <last error words>"
            _, target, port, code, *message = line.split(" ", 4) + [""]
            values[f"reach {target}:{port}"] = f"{code} {''.join(message)}".strip()
            continue
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return Facts(values)
