"""Writing files safely: every file cardgen writes (modules, cards, pages, checkpoints, logs) goes
through ``atomic_write``, so a killed run leaves the old file or the new one, never half of one,
and a name planted in the folder (a symlink committed to a hostile repository) is never followed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

TMP_PREFIX = ".cardgen-"
TMP_SUFFIX = ".tmp"


class OutsideError(ValueError):
    """A path that would land outside the folder it must stay in."""


def inside(root: str | os.PathLike, name: str | os.PathLike) -> Path:
    """``root / name``, refused unless it resolves to a place inside ``root`` (symlinks followed)."""
    base = Path(root).resolve()
    path = (base / name).resolve()
    if path == base or base not in path.parents:
        raise OutsideError(f"{name} would be written outside {root}")
    return path


def atomic_write(path: str | os.PathLike, data: bytes | str, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` all at once: a fresh temporary file in the same folder (created
    with O_EXCL by ``mkstemp``, so it cannot be an existing file or a symlink), flushed to disk,
    then renamed over ``path``. A symlink at ``path`` itself is replaced, not followed."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def remove_leftovers(folder: str | os.PathLike) -> None:
    """Delete the temporary files a killed write left in ``folder`` (only ours: by their prefix,
    and only plain files; a symlink of that name is unlinked, never followed)."""
    for p in Path(folder).glob(f"{TMP_PREFIX}*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            if p.is_symlink() or p.is_file():
                p.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); where folders cannot be opened, skip it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
