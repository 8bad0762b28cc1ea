"""Run directories: where a run's store, reports and charts live, and how files get there.

A run directory is private: created 0700 (whatever the umask), every file in it 0600.
heapwatch writes only into a directory it created or one that holds a heapwatch run, and
never overwrites or deletes a file it did not write. Every file is written under a fresh
temporary name (``O_CREAT | O_EXCL | O_NOFOLLOW``) and renamed over its final name, so a
symbolic link planted in the directory is replaced, never followed. Paths are handled as
the OS gives them: undecodable bytes stay surrogate-escaped ``str`` (PEP 383), and text
that carries them is written back as the same bytes.

The agent uses :func:`private_file` inside the target, so this module needs the stdlib only.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import stat

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401
from heapwatch.errors import ReportError, UsageError

DEFAULT_ROOT = "reports"
DIR_MODE = 0o700
FILE_MODE = 0o600
STORE_NAME = "run.sqlite"
REPORT_SCHEMA_PREFIX = "heapwatch.report/"

O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def default_run_dir(stem: str, root: str = DEFAULT_ROOT) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "run"
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(root, f"{safe}-{stamp}")
    path, n = base, 1
    while os.path.lexists(path):
        n += 1
        path = f"{base}-{n}"
    return path


def shown(path: str) -> str:
    """``path`` as text a person can read: undecodable bytes become U+FFFD."""
    return os.fsencode(path).decode("utf-8", "replace")


def encode_text(text: str) -> bytes:
    """UTF-8, with surrogate-escaped bytes (from paths, argv, the environment) written
    back as the bytes they stand for; any other lone surrogate as a backslash escape."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _open_dir(path: str, follow: bool = False) -> int:
    """An fd of the directory ``path``; its last component must not be a symbolic link
    unless ``follow``."""
    flags = os.O_RDONLY | O_DIRECTORY | O_CLOEXEC | (0 if follow else O_NOFOLLOW)
    return os.open(path, flags)


def _refuse_link(path: str, what: str) -> None:
    try:
        st = os.lstat(path)
    except OSError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UsageError(f"{shown(path)} is a symbolic link: heapwatch does not write "
                         f"{what} through links; give the real directory")
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{shown(path)} exists and is not a directory: choose another --out")


def _check_owner(fd: int, path: str) -> os.stat_result:
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        raise UsageError(f"{shown(path)} belongs to another user (uid {st.st_uid}): heapwatch "
                         f"keeps runs private; choose a directory of your own for --out")
    return st


def _holds_run(fd: int, entries: list[str]) -> bool:
    """True when the directory holds a heapwatch run store or a heapwatch report."""
    if STORE_NAME in entries:
        return True
    if "report.json" not in entries:
        return False
    try:
        rfd = os.open("report.json", os.O_RDONLY | O_NOFOLLOW | O_CLOEXEC, dir_fd=fd)
    except OSError:
        return False
    try:
        with os.fdopen(rfd, "rb") as f:
            head = json.loads(f.read(16 << 20))
    except (OSError, ValueError):
        return False
    return isinstance(head, dict) and str(head.get("schema", "")).startswith(
        REPORT_SCHEMA_PREFIX)


def prepare_run_dir(path: str) -> str:
    """Create ``path`` (0700) for a new run, or take an empty directory of the caller's.

    Refused, with what to do: a directory that holds a run or anything else, one that
    belongs to another user, a symbolic link, a file.
    """
    path = os.path.abspath(path)
    _refuse_link(path, "a run")
    if not os.path.lexists(path):
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            pass  # made by someone else meanwhile: checked below like any existing one
        except OSError as exc:
            raise UsageError(f"cannot create run directory {shown(path)}: {_why(exc)}") from None
    try:
        fd = _open_dir(path)
    except OSError as exc:
        raise UsageError(f"cannot use {shown(path)} as a run directory: {_why(exc)}") from None
    try:
        _check_owner(fd, path)
        entries = os.listdir(fd)
        if STORE_NAME in entries:
            raise UsageError(
                f"{shown(path)} already holds a run: choose another --out directory or remove it"
            )
        if entries:
            raise UsageError(
                f"{shown(path)} is not empty and holds no heapwatch run: heapwatch never "
                f"overwrites files it did not write; give a new or empty --out directory")
        os.fchmod(fd, DIR_MODE)
    finally:
        os.close(fd)
    return path


def prepare_report_dir(path: str) -> str:
    """Make sure reports may be written into ``path``: a new directory (created 0700), an
    empty one, or one holding a heapwatch run or report, of the caller's. A symbolic link
    of the caller's own (``latest -> reports/app-...``) is followed."""
    path = os.path.abspath(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UsageError(f"cannot use {shown(path)} for reports: {_why(exc)}") from None
    if st is None:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ReportError(f"cannot create {shown(path)} for reports: {_why(exc)}") from None
    follow = st is not None and stat.S_ISLNK(st.st_mode) and st.st_uid == os.geteuid()
    if not follow:
        _refuse_link(path, "reports")
    try:
        fd = _open_dir(path, follow=follow)
    except OSError as exc:
        raise UsageError(f"cannot use {shown(path)} for reports: {_why(exc)}") from None
    try:
        _check_owner(fd, path)
        entries = os.listdir(fd)
        if entries and not _holds_run(fd, entries):
            raise UsageError(
                f"{shown(path)} holds files heapwatch did not write and no heapwatch run: "
                f"heapwatch never overwrites them; give a new or empty --out directory")
        if not entries:
            os.fchmod(fd, DIR_MODE)
    finally:
        os.close(fd)
    return path


def write_file(path: str, data: bytes | str, mode: int = FILE_MODE) -> str:
    """Write ``data`` to ``path`` (mode 0600): under a fresh name created exclusively, then
    renamed over ``path``, so nothing planted there (a link, a file) is written through.
    Raises OSError."""
    if isinstance(data, str):
        data = encode_text(data)
    directory, name = os.path.split(os.path.abspath(path))
    dfd = _open_dir(directory, follow=True)
    try:
        write_at(dfd, name, data, mode)
    finally:
        os.close(dfd)
    return path


def write_at(dfd: int, name: str, data: bytes, mode: int = FILE_MODE) -> None:
    """Write ``data`` as ``name`` in the directory open as ``dfd``: under a fresh name
    created exclusively (never through a link), then renamed over ``name``."""
    tmp = f".{name}.{os.urandom(6).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode,
                 dir_fd=dfd)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        raise


def private_subdir(directory: str, name: str) -> str:
    """``directory/name`` as a real directory (created 0700); a link or a file there is
    refused with OSError, never followed."""
    path = os.path.join(directory, name)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(f"{shown(path)} is not a directory heapwatch made (a link or a file)")
    return path


def remove_own(directory: str, name: str) -> None:
    """Remove ``directory/name`` when it is a regular file or a link (a link itself is
    removed, never what it points to)."""
    path = os.path.join(directory, name)
    try:
        st = os.lstat(path)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
        try:
            os.unlink(path)
        except OSError:
            pass


def private_file(path: str) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (so that what SQLite
    opens later, and the -wal/-shm files it makes with the same mode, stay private);
    refuse a link or anything but a regular file there. Raises OSError."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     FILE_MODE)
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{shown(path)} is not a regular file") from None
        return
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
