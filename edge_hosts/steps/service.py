"""The k3s unit's life on a host: started without blocking, then, when it is not ready in time, its log read to name
the cause. With the real unit (Type=notify, TimeoutStartSec=0) `systemctl start` only returns once k3s is ready, and
an agent with a wrong token or no reachable server retries forever: the kit never waits on it."""
from __future__ import annotations

import re
import shlex

from common import k3s

from edge_hosts.inventory import k3s_config
from edge_hosts.engine.context import HostContext

JOURNAL_LINES = 50
# what k3s logs for each cause (pkg/agent/config, pkg/clientaccess, pkg/nodepassword), most specific first
CAUSES = (
    ("node password rejected (the cluster knows this node name from an earlier install)",
     re.compile(r"node password rejected|node-passw(or)?d.*(mismatch|not match|validation failed)", re.I)),
    ("token rejected", re.compile(r"401 Unauthorized|token CA hash does not match|token rejected|invalid token", re.I)),
    ("unknown config.yaml key", re.compile(r"flag provided but not defined", re.I)),
    ("server unreachable", re.compile(r"connection refused|no route to host|i/o timeout|network is unreachable|"
                                      r"connection timed out|dial tcp", re.I)),
)


def unit_path(role: str) -> str:
    return f"/etc/systemd/system/{k3s.unit(role)}.service"


def start(ctx: HostContext, restart: bool) -> None:
    """(Re)start the unit and return at once (the start job runs on; readiness is waited for separately). A restart
    notes the running instance's InvocationID first: systemd runs the queued job later, at idle priority
    (src/core/manager.c), so right after `restart --no-block` is-active still answers for the old instance, and each
    start gets a new InvocationID (src/core/service.c service_start)."""
    unit = k3s.unit(ctx.host.role)
    verb = "restart" if restart else "start"
    out = ctx.session.check(f"systemctl show -p InvocationID --value {unit}\nsystemctl {verb} --no-block {unit}\n",
                            f"{'restarting' if restart else 'starting'} {unit}")
    ctx.facts.values.update(active="yes", old_invocation=out.strip() if restart else "")
    ctx.started = True


def enable(ctx: HostContext) -> None:
    """Enable the unit by its path, as install.sh does (so it starts again after a reboot)."""
    path = unit_path(ctx.host.role)
    ctx.session.check(f"systemctl enable {path} >/dev/null\nsystemctl daemon-reload\n",
                      f"enabling {k3s.unit(ctx.host.role)}")
    ctx.facts.values["enabled"] = "yes"


def wait_active(ctx: HostContext, wait_s: float) -> bool:
    """Poll until the unit is active, after a restart as a new instance (another InvocationID than the one `start`
    noted): for Type=notify that is when k3s reported ready (an agent only after it got its configuration from a
    server and started its kubelet). The node object of a restarted agent stays Ready for
    a while in the cluster, so this, not the node's condition, says whether the (re)start worked."""
    unit = k3s.unit(ctx.host.role)
    old = shlex.quote(f"InvocationID={ctx.facts['old_invocation']}") if ctx.facts else "''"
    result = ctx.session.run(f"""end=$(($(date +%s) + {max(1, round(wait_s))}))
ready() {{ s=$(systemctl show -p ActiveState -p InvocationID {unit}) || return 1
  printf '%s\\n' "$s" | grep -qx ActiveState=active && ! printf '%s\\n' "$s" | grep -qxF {old}; }}
until ready; do [ "$(date +%s)" -ge "$end" ] && exit 1; sleep 0.5; done
""")
    return result.code == 0


def failure_cause(log: str) -> tuple[str, str] | None:
    """(cause, the log line that shows it) for the first known cause in a unit's log since its last start."""
    lines = log.splitlines()
    starts = [i for i, line in enumerate(lines) if "systemd[" in line and " Starting " in line]
    lines = lines[starts[-1]:] if starts else lines
    for cause, pattern in CAUSES:
        hits = [line for line in lines if pattern.search(line)]
        if hits:
            return cause, hits[-1].strip()
    return None


def not_ready_message(ctx: HostContext, waited: float, what: str) -> str:
    """Why the unit is not ready, from its last journal lines (read with sudo; secrets redacted)."""
    unit = k3s.unit(ctx.host.role)
    result = ctx.session.run(f"journalctl -u {unit} -n {JOURNAL_LINES} --no-pager 2>&1\n")
    found = failure_cause(result.out)
    if found is None:
        last = (result.out.strip().splitlines() or ["(no log)"])[-1]
        return f"{what} after {waited:.0f} s; last line of journalctl -u {unit}: {last[-240:]}"
    cause, line = found
    if cause == "server unreachable":
        cause = f"server unreachable ({k3s_config.server_url(ctx.inventory)})"
    return f"{what} after {waited:.0f} s: {cause}; journalctl -u {unit}: {line[-240:]}"
