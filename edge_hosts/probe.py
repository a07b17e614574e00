"""One remote command per host that gathers every fact the steps check, so a no-op run costs one round trip."""
from __future__ import annotations

import shlex
from dataclasses import dataclass

from edge_hosts import k3s
from edge_hosts.inventory import Host
from edge_hosts.ssh import HostSession, RemoteError, redact
from edge_hosts.steps import cluster

SYSCTL_FILE = "/etc/sysctl.d/90-mlops-edge-kit.conf"
SYSCTL_CONTENT = "net.ipv4.ip_forward = 1\n"
PI_CGROUP_FLAGS = ("cgroup_enable=cpuset", "cgroup_memory=1", "cgroup_enable=memory")
MARKER = "kit-probe=1"
END_MARKER = "kit-probe-end=1"  # facts are complete only when the probe ran to its last line
SELINUX_POLICY = "/usr/share/selinux/packages/k3s.pp"  # what install.sh checks for the k3s-selinux policy


# one awk for the default route, the cgroup memory controller (v2 controllers file or v1 table) and the TCP ports
# in LISTEN state (/proc/net/tcp{,6} on stdin)
PROC_AWK = """FILENAME == "/proc/net/route" { if ($2 == "00000000") route = 1; next }
FILENAME == "/proc/cgroups" { if ($1 == "memory" && $4 == "1") memory = 1; next }
FILENAME == cgroups { for (i = 1; i <= NF; i++) if ($i == "memory") memory = 1; next }
$4 == "0A" { split($2, a, ":"); ports[a[2]] = 1 }
END { print "route=" (route ? "yes" : "no"); print "cgroup_memory=" (memory ? "yes" : "no")
      s = ""; for (p in ports) s = s p " "; print "listening=" s }"""


def probed_files(host: Host) -> dict[str, str]:
    """Files whose sha256 the probe reads, by artifact key (facts sha_<key>)."""
    return {"bin": k3s.BIN, "install": k3s.INSTALL_SCRIPT, "images": k3s.images_path(host.arch),
            "metallb_images": k3s.metallb_images_path(host.arch), "config": k3s.CONFIG,
            "flux_images": k3s.flux_images_path(host.arch), "flux_operator": k3s.FLUX_OPERATOR_MANIFEST,
            "fleet_manifest": k3s.FLEET_MANIFEST}


def probe_script(host: Host) -> str:
    unit = k3s.unit(host.role)
    ports = " ".join(str(p) for p in (k3s.SERVER_PORTS if host.role == "server" else k3s.AGENT_PORTS))
    paths = " ".join(shlex.quote(path) for path in probed_files(host).values())
    # only the CA hash of the server's token file, never its password
    ca_line = (f"echo ca_hash=$(sed -n 's/^K10\\([0-9a-f]*\\)::.*/\\1/p' {k3s.TOKEN_FILE} 2>/dev/null)\n"
               if host.role == "server" else "")
    return f"""echo {MARKER}
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
cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v cgroups=$cgroups '{PROC_AWK}' /proc/net/route $cgroups -
d=/var/lib/rancher; [ -d $d ] || d=/var/lib
echo disk_kb=$(df -Pk $d | awk 'NR==2{{print $4}}')
read -r forward < /proc/sys/net/ipv4/ip_forward; echo ip_forward=$forward
[ "$(cat {SYSCTL_FILE} 2>/dev/null)" = "{SYSCTL_CONTENT.strip()}" ] && echo sysctl_file=yes || echo sysctl_file=no
model=/sys/firmware/devicetree/base/model; [ -f $model ] && echo pi_model=$(tr -d '\\000' < $model)
for f in /boot/firmware/cmdline.txt /boot/cmdline.txt; do [ -f $f ] && {{ echo cmdline_file=$f; echo cmdline=$(cat $f); break; }}; done
sha256sum {paths} 2>/dev/null | sed 's/^/sha256 /'
[ -f /etc/systemd/system/{unit}.service ] && echo unit_file=yes || echo unit_file=no
systemctl is-active {unit} >/dev/null 2>&1 && echo active=yes || echo active=no
systemctl is-enabled {unit} >/dev/null 2>&1 && echo enabled=yes || echo enabled=no
[ -s {k3s.NODE_PASSWORD_FILE} ] && echo node_password=yes || echo node_password=no
{ca_line}echo wanted_ports="{ports}"
echo {END_MARKER}
"""


@dataclass
class Facts:
    values: dict[str, str]

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
    result = session.run(before + probe_script(session.host) + after, reveal=read_cluster)
    if MARKER not in result.out:
        detail = " | ".join(result.err.strip().splitlines()[-2:]) or f"exit {result.code}"
        raise RemoteError(f"sudo does not work for {session.settings.user}: {detail}")
    out, _, read = result.out.partition(cluster.READING_MARK)
    reading = cluster.parse_reading(session, read)  # the tokens are secrets before the facts are parsed
    if END_MARKER not in out:
        detail = " | ".join(redact(result.err, session.secrets).strip().splitlines()[-2:]) or "no error output"
        raise RemoteError(f"the probe stopped before its end (exit {result.code}): {detail}")
    return _facts(session.host, redact(out, session.secrets)), reading


def _facts(host: Host, out: str) -> Facts:
    values = {f"sha_{key}": "" for key in probed_files(host)}
    keys = {path: f"sha_{key}" for key, path in probed_files(host).items()}
    for line in out.splitlines():
        if line.startswith("sha256 "):  # one sha256sum call for every file: "sha256 <digest>  <path>"
            _, digest, path = line.split(maxsplit=2)
            if path in keys:
                values[keys[path]] = digest
            continue
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return Facts(values)
