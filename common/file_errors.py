"""A file operation the environment refused (a read-only checkout, a directory that is a file, no permission, a
full disk), said as bad input: the path, the option that named it, and what is wrong; any other error is a bug.
An output directory option that is a file is refused before the task starts."""
import errno
import os
from pathlib import Path

WRITE_PROBLEMS = {errno.EROFS: "is on a read-only file system", errno.EACCES: "is not writable by this user",
                  errno.EPERM: "is not writable by this user", errno.ENOSPC: "is on a full disk",
                  errno.EDQUOT: "is on a disk whose quota is used up"}
NOT_A_DIRECTORY = (errno.EEXIST, errno.ENOTDIR)


def file_problem(err: OSError, options: dict[str, str]) -> str | None:
    """What is wrong, naming the directory (and the option of `options`, {--flag: absolute path}, that leads to
    it); None when `err` is not one the user can fix."""
    if err.filename is None or err.errno not in (*WRITE_PROBLEMS, *NOT_A_DIRECTORY, errno.EISDIR):
        return None
    path = Path(os.path.abspath(err.filename))
    if err.errno in NOT_A_DIRECTORY:
        return f"{_subject(_file_on_the_way(path), _option_of(path, options))}: is a file, where a directory is needed"
    if err.errno == errno.EISDIR:  # a rename's target (filename2) is the directory in the way
        path = Path(os.path.abspath(err.filename2 or err.filename))
        return f"{_subject(path, _option_of(path, options))}: is a directory, where a file is needed"
    directory = path if path.is_dir() else path.parent
    option = _option_of(path, options)
    return f"{option + ': ' if option else ''}cannot write in {directory}: it {WRITE_PROBLEMS[err.errno]}"


def output_directory_problem(flag: str, value: str) -> str | None:
    """What is wrong with an output directory option before anything is written: it, or a parent, is a file (a
    task would fail half-way, or replace the file)."""
    path = Path(value)
    blocking = _file_on_the_way(path)
    if not blocking.exists() or blocking.is_dir():
        return None
    return f"{_subject(blocking, f'{flag} {path}')}: is a file, where a directory is needed"


def _file_on_the_way(path: Path) -> Path:
    """The first existing non-directory among `path` and its parents (`path` itself when there is none)."""
    for candidate in (*reversed(path.parents), path):
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return path


def _subject(path: Path, option: str) -> str:
    """'--out /x' when that option names `path`, '--out /x/y: /x' when it leads through it, else the path."""
    if option.endswith(f" {path}"):
        return option
    return f"{option}: {path}" if option else str(path)


def _option_of(path: Path, options: dict[str, str]) -> str:
    """'--out VALUE' for the option whose path is `path` or holds it (the closest if several), else ''."""
    holding = [(flag, Path(value)) for flag, value in options.items()
               if Path(value).is_absolute() and (path == Path(value) or Path(value) in path.parents)]
    if not holding:
        return ""
    flag, value = max(holding, key=lambda option: len(option[1].parts))
    return f"{flag} {value}"
