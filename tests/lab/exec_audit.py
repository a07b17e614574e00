"""An exec audit that cannot miss a short-lived process: a directory put first on PATH holding, for every command of
the system PATH, a wrapper that appends its argv (NUL-separated, one record per exec) to a log, then execs the real
command. Sampling /proc misses a curl that lives a few milliseconds; this records every exec found through PATH.
The wrapper carries its log and the real PATH itself, so it works where no environment reaches the process (a
command an SSH session runs on a lab host). Execs by absolute path and shell builtins are not seen."""
import os
import shlex
import shutil
from pathlib import Path

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_REAL_PATH = "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # what a lab host's /usr/local/sbin shadows
HOST_AUDIT_DIR = "/root/.exec-audit"  # on the host (its /root is its own)

WRAPPER = """#!/bin/sh
name=${{0##*/}}
{{ printf '%s\\0' "$name" "$@"; printf '\\n\\0'; }} >> {log}
real={real_path}
IFS=:  # builtins only here: a command found through PATH would be this wrapper again
for d in $real; do
    [ -x "$d/$name" ] && exec "$d/$name" "$@"
done
echo "exec audit: $name not found" >&2
exit 127
"""


def install_wrappers(bindir: Path, commands: list[Path], wrapper: Path, wrapper_seen_as: str, log: str,
                     real_path: str) -> None:
    """The wrapper (its log and real PATH written in) and, in `bindir`, a link to it (`wrapper_seen_as`: its path
    where the audited process runs) for each command name."""
    wrapper.write_text(WRAPPER.format(log=shlex.quote(log), real_path=shlex.quote(real_path)))
    wrapper.chmod(0o755)
    bindir.mkdir(parents=True, exist_ok=True)
    for name in {command.name for command in commands}:
        (bindir / name).unlink(missing_ok=True)
        (bindir / name).symlink_to(wrapper_seen_as)


def commands_on(path: str) -> list[Path]:
    """Every executable file in the directories of `path` (a PATH string) on this machine."""
    found = (entry for directory in path.split(":") if Path(directory).is_dir() for entry in Path(directory).iterdir())
    return [entry for entry in found if entry.is_file() and os.access(entry, os.X_OK)]


def argvs_in(log: Path) -> list[list[bytes]]:
    """Every audited exec's argv in a log (the command's name first), in order."""
    records = log.read_bytes().split(b"\n\0") if log.exists() else []
    return [record.split(b"\0")[:-1] for record in records if record]


class ExecAudit:
    """Wrappers under `root`; `env` is what a process needs in its environment to be audited."""

    def __init__(self, root: Path, real_path: str = SYSTEM_PATH):
        self.bindir, self.log = root / "audit-bin", root / "audit.log"
        self.log.touch()
        os.chmod(root, 0o755)
        self.log.chmod(0o666)  # the audited process may run as another user; a test's own file
        wrapper = root / "audit-wrapper"
        install_wrappers(self.bindir, commands_on(real_path), wrapper, str(wrapper), str(self.log), real_path)
        self.env = {"PATH": f"{self.bindir}:{real_path}"}

    def argvs(self) -> list[list[bytes]]:
        return argvs_in(self.log)


class HostExecAudit:
    """Every exec a lab host's sessions find through PATH, recorded while in use: the system commands are wrapped in
    the host's own /usr/local/sbin, first on the PATH sshd and sudo give (commands the kit installs later under
    /usr/local/bin are not wrapped: a wrapper there would make them look installed)."""

    def __init__(self, host):
        self.host = host
        self.dir = host.path_on_host(HOST_AUDIT_DIR)
        self.bindir = host.path_on_host("/usr/local/sbin")

    def __enter__(self) -> "HostExecAudit":
        self.dir.mkdir(mode=0o700)
        self.wrapped = [c for c in commands_on(HOST_REAL_PATH.split(":", 1)[1]) if not (self.bindir / c.name).exists()]
        install_wrappers(self.bindir, self.wrapped, self.dir / "wrapper", f"{HOST_AUDIT_DIR}/wrapper",
                         f"{HOST_AUDIT_DIR}/log", HOST_REAL_PATH)
        return self

    def __exit__(self, *exc) -> None:
        self.records = self.argvs()
        for command in {c.name for c in self.wrapped}:
            (self.bindir / command).unlink(missing_ok=True)
        shutil.rmtree(self.dir)

    def argvs(self) -> list[list[bytes]]:
        return argvs_in(self.dir / "log")
