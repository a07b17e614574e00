"""Per-host steps: preflight, OS prep, artifacts, config.yaml and install/start."""
from __future__ import annotations

import hashlib
import shlex
import time

from common import k3s

from edge_hosts.inventory import k3s_config
from edge_hosts.artifacts import proxy
from edge_hosts.inventory.credentials import CredentialError
from edge_hosts.facts.probe import PI_CGROUP_FLAGS, SYSCTL_CONTENT, SYSCTL_FILE
from edge_hosts.inventory.registries import registries_file
from edge_hosts.access.ssh import TransportError
from edge_hosts.steps import service
from edge_hosts.engine.context import HostContext
from edge_hosts.preflight.checks import br_netfilter_script, preflight_problems
from fleet import onsite
from edge_hosts.engine.context import StepError

REBOOT_WAIT_S = 300


def preflight(ctx: HostContext) -> bool:
    problems = preflight_problems(ctx, ctx.facts)
    if problems:
        raise StepError("; ".join(problems))
    return False


def os_prep(ctx: HostContext) -> bool:
    """ip_forward persisted in /etc/sysctl.d, br_netfilter loaded and listed in /etc/modules-load.d; on a Raspberry
    Pi the cgroup flags and a reboot."""
    changed = False
    modules = br_netfilter_script(ctx.facts)
    if modules:
        ctx.session.check(modules, "loading br_netfilter")
        changed = True
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


def config(ctx: HostContext, tokens: k3s_config.Tokens | None) -> bool:
    """/etc/rancher/k3s/config.yaml for the host's role (mode 0600), written only when it differs."""
    return _write_if_changed(ctx, "config", k3s.CONFIG, k3s_config.render_config(ctx.inventory, ctx.host, tokens))


def registries(ctx: HostContext) -> bool:
    """/etc/rancher/k3s/registries.yaml (0600) when the inventory has a registries section, written only when it
    differs; the install step restarts k3s for it. The registry password joins the session's secrets first."""
    try:
        wanted = registries_file(ctx.inventory)
    except CredentialError as err:
        raise StepError(str(err)) from None
    if wanted is None:
        return False
    ctx.session.secrets.update(wanted.secrets)
    return _write_if_changed(ctx, "registries", k3s.REGISTRIES, wanted.text)


def _write_if_changed(ctx: HostContext, key: str, path: str, text: str) -> bool:
    """Upload a 0600 file (over SFTP, never in a command) unless the probed sha_<key> matches; `key` joins
    ctx.replaced."""
    data = text.encode()
    digest = hashlib.sha256(data).hexdigest()
    if ctx.facts[f"sha_{key}"] == digest:
        return False
    ctx.session.upload(data, path, "0600", digest)
    ctx.facts.values[f"sha_{key}"] = digest
    ctx.replaced.add(key)
    return True


def install(ctx: HostContext) -> bool:
    """Run the install script when k3s is missing or replaced (it never starts k3s here: the kit starts it without
    blocking), enable the unit when it is not, and (re)start it when binary, unit, env or config changed or it is
    down. True when anything was done."""
    unit_changed = False
    ran = not ctx.facts.yes("unit_file") or bool({"bin", "install"} & ctx.replaced)
    if ran:
        unit_changed = _run_install_script(ctx)
    repaired = not ctx.facts.yes("enabled")
    if repaired:
        service.enable(ctx)
    env_file = f"{service.unit_path(ctx.host.role)}.env"
    env_changed = _write_if_changed(ctx, "unit_env", env_file, proxy.env_file(ctx.inventory))
    restart = unit_changed or env_changed or bool({"config", "bin", "registries"} & ctx.replaced)
    if restart or not ctx.facts.yes("active"):  # a unit stuck activating (with the old config) needs the restart
        service.start(ctx, restart=restart)
    return ran or repaired or ctx.started or import_images(ctx)


# install.sh labels the binary only when it downloads it (setup_selinux: chcon ... container_runtime_exec_t, skipped
# with INSTALL_K3S_SKIP_DOWNLOAD=true): the kit's upload gets its directory's bin_t, so where SELinux is enabled the
# binary is relabelled from the policy (k3s-selinux k3s.fc: /usr/local/s?bin/k3s container_runtime_exec_t)
LABEL_BINARY = f"""if [ -e /sys/fs/selinux/enforce ]; then
  command -v restorecon >/dev/null ||
    {{ echo "SELinux is enabled but restorecon (policycoreutils) is missing" >&2; exit 1; }}
  restorecon -v {k3s.BIN} >/dev/null
fi
"""


def _run_install_script(ctx: HostContext) -> bool:
    """The install script with INSTALL_K3S_SKIP_START (its own `systemctl restart` would block until k3s is ready,
    with Type=notify and TimeoutStartSec=0: forever for an agent that cannot join), then the binary's SELinux label;
    True when it changed the unit or env file (the script's own restart rule, which compares their sha256 before
    and after)."""
    unit = service.unit_path(ctx.host.role)
    files = f"{unit} {unit}.env"
    out = ctx.session.check(
        proxy.exports(ctx.session) +  # install.sh writes them to the unit's env file
        f"before=$(sha256sum {files} 2>&1)\n"
        f"INSTALL_K3S_SKIP_START=true INSTALL_K3S_SKIP_DOWNLOAD=true "
        f"INSTALL_K3S_VERSION={shlex.quote(ctx.inventory.k3s.version)} "
        f"INSTALL_K3S_EXEC={'server' if ctx.host.role == 'server' else 'agent'} sh {k3s.INSTALL_SCRIPT} >/dev/null\n"
        f"[ \"$before\" = \"$(sha256sum {files} 2>&1)\" ] || echo kit-unit-changed\n"
        f"echo sha_unit_env=$(sha256sum < {unit}.env | cut -c1-64)\n" + LABEL_BINARY, "k3s install script")
    env_sha = [line.split("=", 1)[1] for line in out.splitlines() if line.startswith("sha_unit_env=")]
    # the script enables the unit by its path and rewrites its env file
    ctx.facts.values.update(unit_file="yes", enabled="yes", sha_unit_env=env_sha[0] if env_sha else "")
    return "kit-unit-changed" in out


def import_images(ctx: HostContext) -> bool:
    """k3s imports and pins its images directory when it starts; a running k3s gets a replaced MetalLB or Flux
    archive imported now and labelled pinned the way k3s labels its own imports (pkg/agent/containerd: the CRI label
    io.cri-containerd.pinned=pinned keeps kubelet image GC off it, io.cattle.k3s.pinned marks it as k3s's own)."""
    archives = {"metallb_images": ("MetalLB", k3s.metallb_images_path(ctx.host.arch),
                                   [f"{image}:{ctx.inventory.metallb.version}" for image in k3s.METALLB_IMAGES]),
                "flux_images": ("Flux", k3s.flux_images_path(ctx.host.arch), onsite.image_names())}
    replaced = [archive for key, archive in archives.items() if key in ctx.replaced]
    if ctx.started or not replaced:
        return False
    ctr = f"{k3s.BIN} ctr -n {k3s.CRI_NAMESPACE} images"
    for what, archive, images in replaced:
        names = " ".join(shlex.quote(name) for name in images)
        ctx.session.check(f"""set -e
{ctr} import {shlex.quote(archive)} >/dev/null
for name in {names}; do {ctr} label "$name" {k3s.PINNED_LABELS} >/dev/null; done
""", f"importing the {what} images (pinned)")
    return True
