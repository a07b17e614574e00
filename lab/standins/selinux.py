#!/usr/bin/python3
"""Lab stand-in for the SELinux file tools and the k3s-selinux package's removal, installed on a lab host made
SELinux-enforcing (lab.hosts.hostops): run as `restorecon`, `chcon`, `selinux-label` (prints a file's label, what
`ls -Z` shows) or `yum` (only `yum remove -y k3s-selinux`), by the name it is called with.

A file's label is its user xattr LABEL_XATTR, so it stays with the inode as the real security.selinux xattr does: a
file written anew (an upload, `mv` over it) has none and reads as the default of its directory, as a new file takes
its parent's type. restorecon (policycoreutils, restorecon(8)) sets the type the file contexts name for the path and
keeps user, role and range unless -F; the k3s-selinux policy's entries (k3s-io/k3s-selinux policy/*/k3s.fc) count
while its package is installed, i.e. while POLICY exists (the package installs it and its %post loads the module).
Only the paths the kit touches are in the tables below.
"""
import os
import re
import sys
from pathlib import Path

LABEL_XATTR = "user.lab.selinux"
POLICY = Path("/usr/share/selinux/packages/k3s.pp")
# (path regex, type): the k3s-selinux policy's entries for the binary and the unit files (k3s.fc), then the base
# policy's for the directories they live in
K3S_CONTEXTS = ((r"/usr/(local/)?s?bin/k3s", "container_runtime_exec_t"),
                (r"/etc/systemd/system/k3s.*", "container_unit_file_t"))
BASE_CONTEXTS = ((r"/usr/(local/)?s?bin(/.*)?", "bin_t"), (r"/etc/systemd/system(/.*)?", "systemd_unit_file_t"))
DEFAULT_TYPE = "default_t"


def wanted_type(path: str) -> str:
    tables = (K3S_CONTEXTS if POLICY.exists() else ()) + BASE_CONTEXTS
    return next((kind for pattern, kind in tables if re.fullmatch(pattern, path)), DEFAULT_TYPE)


def label(path: str) -> str:
    """The file's context; without a label of its own, what a new file there gets (its directory's type)."""
    try:
        return os.getxattr(path, LABEL_XATTR, follow_symlinks=False).decode()
    except OSError:
        return f"unconfined_u:object_r:{wanted_type(os.path.dirname(path))}:s0"


def set_label(path: str, context: str) -> None:
    os.setxattr(path, LABEL_XATTR, context.encode(), follow_symlinks=False)


def restorecon(args: list[str]) -> int:
    flags = {f"-{c}" for a in args if a.startswith("-") for c in a[1:]}
    paths = [a for a in args if not a.startswith("-")]
    code = 0
    for top in paths:
        if not os.path.lexists(top):
            if "-i" not in flags:
                print(f"restorecon: lstat({top}) failed: No such file or directory", file=sys.stderr)
                code = 255
            continue
        for path in _walk(top, "-R" in flags):
            code = max(code, _restore(path, "-F" in flags, "-v" in flags, "-n" in flags))
    return code


def _walk(top: str, recursive: bool):
    yield top
    if recursive and os.path.isdir(top) and not os.path.islink(top):
        for root, dirs, files in os.walk(top):
            yield from (os.path.join(root, name) for name in dirs + files)


def _restore(path: str, force: bool, verbose: bool, dry_run: bool) -> int:
    old = label(path)
    user, role, _, rng = old.split(":", 3)
    kind = wanted_type(path)
    new = f"system_u:object_r:{kind}:s0" if force else f"{user}:{role}:{kind}:{rng}"
    if new != old:
        if not dry_run:
            set_label(path, new)
        if verbose:
            print(f"Relabeled {path} from {old} to {new}")
    return 0


def chcon(args: list[str]) -> int:
    """chcon [-u USER] [-r ROLE] [-t TYPE] [-l RANGE] FILE... (or chcon CONTEXT FILE...)."""
    parts, files, i = {}, [], 0
    while i < len(args):
        if args[i] in ("-u", "-r", "-t", "-l") and i + 1 < len(args):
            parts["urtl".index(args[i][1])] = args[i + 1]
            i += 2
            continue
        files.append(args[i])
        i += 1
    if not parts and files:
        context, files = files[0], files[1:]
        parts = dict(enumerate(context.split(":", 3)))
    for path in files:
        fields = label(path).split(":", 3)
        set_label(path, ":".join(parts.get(n, fields[n]) for n in range(4)))
    return 0 if files else 1


def yum(args: list[str]) -> int:
    if args[:1] == ["remove"] and "k3s-selinux" in args:
        if not POLICY.exists():
            print("No match for argument: k3s-selinux\nNo packages marked for removal.")
            return 0
        POLICY.unlink()
        print("Removed:\n  k3s-selinux.noarch\n\nComplete!")
        return 0
    print(f"yum (lab stand-in): not emulated: {' '.join(args)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    tools = {"restorecon": restorecon, "chcon": chcon, "yum": yum,
             "selinux-label": lambda paths: print("\n".join(f"{label(p)} {p}" for p in paths)) or 0}
    sys.exit(tools[os.path.basename(sys.argv[0])](sys.argv[1:]))
