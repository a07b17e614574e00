"""Per-host steps: preflight, OS prep, artifacts, config.yaml and install/start."""
from __future__ import annotations

import hashlib
import shlex
import time

from edge_hosts import k3s
from edge_hosts.probe import PI_CGROUP_FLAGS, SYSCTL_CONTENT, SYSCTL_FILE, Facts
from edge_hosts.ssh import RemoteError, TransportError
from edge_hosts.steps.context import HostContext

MIN_DISK_KB = 2 * 1024 * 1024
REBOOT_WAIT_S = 300


class StepError(Exception):
    """A step's check failed; the message says why."""


def preflight_problems(ctx: HostContext, facts: Facts) -> list[str]:
    """What keeps this host from running k3s."""
    host, problems = ctx.host, []
    if facts["arch"] != host.uname_arch:
        problems.append(f"arch is {facts['arch']}, the inventory says {host.arch} ({host.uname_arch})")
    if facts["uid"] != "0":
        problems.append("commands do not run as root (sudo)")
    if not facts.yes("route"):
        problems.append("no default route (k3s needs one, even air-gapped)")
    if not facts.yes("cgroup_memory") and "Raspberry Pi" not in facts["pi_model"]:
        problems.append("the cgroup memory controller is not enabled")
    if facts["disk_kb"].isdigit() and int(facts["disk_kb"]) < MIN_DISK_KB:
        problems.append(f"only {int(facts['disk_kb']) // 1024} MiB free under /var/lib/rancher (need 2048)")
    busy = facts.busy_ports()
    if busy and not facts.yes("active"):
        problems.append(f"ports {', '.join(map(str, busy))} are in use by another program")
    return problems


def preflight(ctx: HostContext) -> bool:
    problems = preflight_problems(ctx, ctx.facts)
    if problems:
        raise StepError("; ".join(problems))
    return False


def os_prep(ctx: HostContext) -> bool:
    """ip_forward persisted in /etc/sysctl.d; on a Raspberry Pi the cgroup flags and a reboot."""
    changed = False
    if not (ctx.facts.yes("sysctl_file") and ctx.facts["ip_forward"] == "1"):
        ctx.session.check(f"""set -e
mkdir -p /etc/sysctl.d
printf '%s' {shlex.quote(SYSCTL_CONTENT)} > {SYSCTL_FILE}.kit-new && mv -f {SYSCTL_FILE}.kit-new {SYSCTL_FILE}
sysctl -w net.ipv4.ip_forward=1 >/dev/null
""", "enabling net.ipv4.ip_forward")
        changed = True
    if "Raspberry Pi" in ctx.facts["pi_model"]:
        changed = _pi_cgroups(ctx) or changed
    return changed


def _pi_cgroups(ctx: HostContext) -> bool:
    missing = [flag for flag in PI_CGROUP_FLAGS if flag not in ctx.facts["cmdline"].split()]
    if not missing:
        return False
    path = shlex.quote(ctx.facts["cmdline_file"] or "/boot/firmware/cmdline.txt")
    ctx.session.check(f"sed -i '1 s/$/ {' '.join(missing)}/' {path}\n"
                      "nohup sh -c 'sleep 2; reboot' >/dev/null 2>&1 &\n", "adding cgroup flags to the boot cmdline")
    _wait_for_reboot(ctx)
    if not ctx.refresh().yes("cgroup_memory"):
        raise StepError("the cgroup memory controller is still off after the reboot")
    return True


def _wait_for_reboot(ctx: HostContext) -> None:
    ctx.session.close()
    time.sleep(10)
    deadline = time.monotonic() + REBOOT_WAIT_S
    while True:
        try:
            ctx.session.connect()
            return
        except TransportError:
            if time.monotonic() > deadline:
                raise StepError(f"no SSH {REBOOT_WAIT_S} s after the reboot") from None


def artifacts(ctx: HostContext) -> bool:
    """k3s binary, install script, airgap images (and from a bundle the MetalLB images), each skipped when the
    remote sha256 matches."""
    replaced = ctx.source.ensure(ctx.session, ctx.source.host_artifacts(ctx.host), ctx.facts)
    ctx.replaced.update(replaced)
    return bool(replaced)


def config(ctx: HostContext, token: str | None) -> bool:
    """/etc/rancher/k3s/config.yaml for the host's role (mode 0600), written only when it differs."""
    text = k3s.render_config(ctx.inventory, ctx.host, token).encode()
    digest = hashlib.sha256(text).hexdigest()
    if ctx.facts["sha_config"] == digest:
        return False
    ctx.session.upload(text, k3s.CONFIG, "0600", digest)
    ctx.facts.values["sha_config"] = digest
    ctx.replaced.add("config")
    return True


def install(ctx: HostContext) -> bool:
    """Run the install script when k3s is missing or replaced; restart when config or binary changed and it did not."""
    unit = k3s.unit(ctx.host.role)
    restarted = False
    ran = not ctx.facts.yes("unit_file") or bool({"bin", "install"} & ctx.replaced)
    if ran:
        out = ctx.session.check(
            f"INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_VERSION={shlex.quote(ctx.inventory.k3s.version)} "
            f"INSTALL_K3S_EXEC={'server' if ctx.host.role == 'server' else 'agent'} sh {k3s.INSTALL_SCRIPT}\n",
            "k3s install script")
        restarted = "No change detected" not in out
        ctx.facts.values["unit_file"] = "yes"
    if {"config", "bin"} & ctx.replaced and not restarted:  # the script hashes the binary only after we replaced it
        ctx.session.check(f"systemctl restart {unit}\n", f"restarting {unit}")
        restarted = True
    elif not restarted and not ctx.facts.yes("active"):
        ctx.session.check(f"systemctl start {unit}\n", f"starting {unit}")
        restarted = True
    if restarted:
        ctx.facts.values["active"] = "yes"
    return ran or restarted or import_images(ctx, restarted)


def import_images(ctx: HostContext, restarted: bool) -> bool:
    """k3s imports its images directory when it starts; a running k3s imports a replaced MetalLB archive now."""
    if restarted or "metallb_images" not in ctx.replaced:
        return False
    archive = k3s.metallb_images_path(ctx.host.arch)
    ctx.session.check(f"{k3s.BIN} ctr -n {k3s.CRI_NAMESPACE} images import {shlex.quote(archive)}\n",
                      "importing the MetalLB images")
    return True


def ensure_active(ctx: HostContext) -> None:
    """Fail clearly when the unit stopped right after (re)start (e.g. a refused token)."""
    unit = k3s.unit(ctx.host.role)
    result = ctx.session.run(f"systemctl is-active {unit} >/dev/null\n")
    if result.code != 0:
        raise RemoteError(f"{unit} is not running (see its log on the host)")
