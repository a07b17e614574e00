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
