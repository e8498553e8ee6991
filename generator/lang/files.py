"""Writing files safely: every file cardgen writes (modules, cards, pages, checkpoints, logs) goes
through ``atomic_write``, so a killed run leaves the old file or the new one, never half of one,
and a name planted in the folder (a symlink committed to a hostile repository) is never followed.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from .errors import CardError

try:
    import fcntl
except ImportError:  # Windows: no flock; leftovers are removed even while a write holds them
    fcntl = None

TMP_PREFIX = ".cardgen-"
TMP_SUFFIX = ".tmp"


class OutsideError(CardError):
    """A path that would land outside the folder it must stay in (a user error: exit 1)."""


def inside(root: str | os.PathLike, name: str | os.PathLike) -> Path:
    """``root / name``, refused unless it resolves to a place inside ``root`` (symlinks followed:
    a link planted at ``name`` that points elsewhere is refused too)."""
    base = Path(root).resolve()
    path = (base / name).resolve()
    if path == base or base not in path.parents:
        raise OutsideError(f"{name} would be written outside {root}"
                           + (f" (it is a link to {path})" if (base / name).is_symlink() else ""),
                           hint="output file names come from card names; remove the link or choose "
                                "another output folder")
    return path


def atomic_write(path: str | os.PathLike, data: bytes | str, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` all at once: a fresh temporary file in the same folder (created
    with O_EXCL by ``mkstemp``, so it cannot be an existing file or a symlink), flushed to disk,
    then renamed over ``path``. A symlink at ``path`` itself is replaced, not followed.  A file
    that is replaced keeps its permissions (a private card stays private); ``mode`` (less the
    umask) is for new files."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        old = os.lstat(path)
        bits = stat.S_IMODE(old.st_mode) if stat.S_ISREG(old.st_mode) else mode & ~_umask()
    except FileNotFoundError:
        bits = mode & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=TMP_SUFFIX, dir=path.parent)
    try:
        _try_lock(fd, block=True)  # held until the rename: remove_leftovers beside us leaves it be
        with memoryview(data) as view:
            while view:
                view = view[os.write(fd, view):]
        os.fchmod(fd, bits)
        os.fsync(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)
    _fsync_dir(path.parent)


def read_plain(path: str | os.PathLike, limit: int | None = None) -> bytes | None:
    """What a regular file at ``path`` holds (at most ``limit`` bytes), or None for anything else:
    nothing there, a link (never followed: it may point at /dev/zero or a secret), a folder, a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return f.read() if limit is None else f.read(limit)


def holds(path: str | os.PathLike, data: bytes) -> bool:
    """``path`` is a regular file holding exactly ``data`` (so rewriting it would change nothing)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == len(data) and read_plain(path) == data


def remove_leftovers(folder: str | os.PathLike) -> int:
    """Delete the temporary files a killed write left in ``folder``: only ours (by their prefix),
    only plain files or links (a link is unlinked, never followed), and never one a write running
    beside us still holds (``atomic_write`` keeps a lock on its file until the rename; a killed
    process's lock is gone).  Returns how many were removed."""
    n = 0
    for p in Path(folder).glob(f"{TMP_PREFIX}*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                p.unlink()
                n += 1
            elif stat.S_ISREG(st.st_mode):
                fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
                try:
                    if _try_lock(fd):  # OSError (BlockingIOError) while a live write holds it
                        p.unlink()
                        n += 1
                finally:
                    os.close(fd)
    return n


def _try_lock(fd: int, block: bool = False) -> bool:
    """An exclusive advisory lock on ``fd`` (where the system has flock; else always granted)."""
    if fcntl is None:
        return True
    fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
    return True


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
