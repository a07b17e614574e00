"""Atomic file writes: a temporary file in the same directory, fsync, then one rename."""
import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, text: str, mode: int) -> None:
    """Replace `path` with `text`; readers see the old or the new file, never half of one.

    The temporary file is created with `mode` from the start, so a private file is never readable by others.
    """
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_problem(path: Path) -> str | None:
    """Why `path` could not be written by atomic_write (its missing directories made first), or None: checked
    before the work whose result it holds begins."""
    if path.is_dir():
        return f"{path} is a directory, where a file is needed"
    if path.exists() and not path.is_file():
        return f"{path} is not a regular file"
    directory = next(p for p in path.parents if p.exists())
    if not directory.is_dir():
        return f"{directory} is a file, where a directory is needed"
    if os.statvfs(directory).f_flag & os.ST_RDONLY:
        return f"cannot write in {directory}: it is on a read-only file system"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"cannot write in {directory}: it is not writable by this user"
    return None
