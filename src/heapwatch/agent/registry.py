"""Where running agents can be found by pid: one small JSON file each in a private
per-user directory (0700), written at start and removed at stop.

The directory usually sits under /tmp, where anyone can create a name first. So it is
used only when it is a real directory (never through a symbolic link: it is opened with
``O_NOFOLLOW``), owned by the caller and closed to everyone else, and every file in it is
opened through that directory's fd, ``O_NOFOLLOW``, and must be the caller's own. A
registry someone else made is ignored, and :func:`problem` says why.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from typing import Any

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401
from heapwatch.rundir import O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW, write_at

_MAX_ENTRY = 64 * 1024


def _base() -> str:
    """A directory others cannot create names in, when there is one: the session's
    runtime directory, /run for root; else the temporary directory."""
    uid = os.geteuid()
    for base in (os.environ.get("XDG_RUNTIME_DIR"), f"/run/user/{uid}",
                 "/run" if uid == 0 else None):
        if not base:
            continue
        try:
            st = os.stat(base)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o022:
            return base
    return tempfile.gettempdir()


def registry_dir() -> str:
    return os.path.join(_base(), f"heapwatch-{os.geteuid()}")


def _trusted(st: os.stat_result) -> bool:
    return st.st_uid == os.geteuid() and not st.st_mode & 0o077


def _open_dir(create: bool) -> int | None:
    """An fd of the registry directory, or None when it is missing or not trustworthy."""
    path = registry_dir()
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return None
    try:
        fd = os.open(path, os.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    except OSError:
        return None
    try:
        if _trusted(os.fstat(fd)):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def problem() -> str | None:
    """Why the registry cannot be used, in a few words; None when it can (or is absent)."""
    path = registry_dir()
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link, which heapwatch does not follow: remove it"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory: remove it"
    if st.st_uid != os.geteuid():
        return f"{path} belongs to uid {st.st_uid}, not to you: remove it"
    if st.st_mode & 0o077:
        return f"{path} is open to other users (mode {st.st_mode & 0o777:o}): remove it"
    return None


def register(pid: int, info: dict[str, Any]) -> None:
    dfd = _open_dir(create=True)
    if dfd is None:
        return
    try:
        write_at(dfd, f"{pid}.json", json.dumps(info).encode())
    finally:
        os.close(dfd)


def unregister(pid: int) -> None:
    dfd = _open_dir(create=False)
    if dfd is None:
        return
    try:
        os.unlink(f"{pid}.json", dir_fd=dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def lookup(pid: int) -> dict[str, Any] | None:
    dfd = _open_dir(create=False)
    if dfd is None:
        return None
    try:
        fd = os.open(f"{pid}.json", os.O_RDONLY | O_NOFOLLOW | O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return None
    finally:
        os.close(dfd)
    try:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or not _trusted(st):
                return None
            data = json.loads(f.read(_MAX_ENTRY))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
