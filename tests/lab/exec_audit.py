"""An exec audit that cannot miss a short-lived process: a directory put first on PATH holding, for every command of
the system PATH, a wrapper that appends its argv (NUL-separated, one record per exec) to a log, then execs the real
command. Sampling /proc misses a curl that lives a few milliseconds; this records every exec found through PATH."""
import os
from pathlib import Path

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

WRAPPER = """#!/bin/sh
name=${0##*/}
{ printf '%s\\0' "$name" "$@"; printf '\\n\\0'; } >> "$EXEC_AUDIT_LOG"
IFS=:  # builtins only here: a command found through PATH would be this wrapper again
for d in $EXEC_AUDIT_REAL_PATH; do
    [ -x "$d/$name" ] && exec "$d/$name" "$@"
done
echo "exec audit: $name not found" >&2
exit 127
"""


class ExecAudit:
    """Wrappers under `root`; `env` is what a process needs in its environment to be audited."""

    def __init__(self, root: Path, real_path: str = SYSTEM_PATH):
        self.bindir, self.log = root / "audit-bin", root / "audit.log"
        self.bindir.mkdir(parents=True)
        self.log.touch()
        os.chmod(root, 0o755)
        self.log.chmod(0o666)  # the audited process may run as another user; a test's own file
        wrapper = root / "audit-wrapper"
        wrapper.write_text(WRAPPER)
        wrapper.chmod(0o755)
        for directory in reversed(real_path.split(":")):
            for entry in Path(directory).glob("*") if Path(directory).is_dir() else []:
                if entry.is_file() and os.access(entry, os.X_OK):
                    (self.bindir / entry.name).unlink(missing_ok=True)
                    (self.bindir / entry.name).symlink_to(wrapper)
        self.env = {"PATH": f"{self.bindir}:{real_path}", "EXEC_AUDIT_LOG": str(self.log),
                    "EXEC_AUDIT_REAL_PATH": real_path}

    def argvs(self) -> list[list[bytes]]:
        """Every audited exec's argv (the command's name first), in order."""
        records = self.log.read_bytes().split(b"\n\0")
        return [record.split(b"\0")[:-1] for record in records if record]
