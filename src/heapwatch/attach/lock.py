"""One attach per target at a time: a lock file per target pid in the user's private
registry directory, held with ``flock`` from the pre-flight checks until the agent has
checked in (from then on its registry entry answers for it). The kernel drops the lock
when its holder dies, so a killed attach never blocks the next one.
"""

from __future__ import annotations

import fcntl
import os
import stat

from heapwatch.agent import registry
from heapwatch.attach.errors import AttachError


def _directory() -> str | None:
    """The registry directory, if it is a real directory of ours that nobody else can
    write; else no lock (the pre-flight checks still see a debugger that holds it)."""
    path = registry.registry_dir()
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        return None
    return path


class AttachLock:
    """``with AttachLock(pid):`` raises AttachError when another attach holds ``pid``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fd = -1
        self.path = ""

    def acquire(self) -> None:
        where = _directory()
        if where is None:
            return
        self.path = os.path.join(where, f"attach-{self.pid}.lock")
        for _ in range(5):  # the file may be removed between our open and our lock
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o600)
            except OSError:
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                who = f" (heapwatch process {holder})" if holder else ""
                raise AttachError(
                    f"another heapwatch attach{who} is attaching to process {self.pid} right "
                    f"now: wait for it, then follow its recording or end it with 'heapwatch "
                    f"stop {self.pid}'") from None
            except OSError:
                os.close(fd)
                return
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path, follow_symlinks=False).st_ino
            except OSError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                return
            os.close(fd)

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            os.unlink(self.path)  # while still locked: a waiter then sees a new file
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> AttachLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> int | None:
    """The pid holding the lock on ``fd``'s file: from the kernel's own table of locks
    (set in the same step as the lock), else from what the holder wrote in the file,
    which it can only do just after it got the lock (a racer may read it empty)."""
    held = _kernel_holder(fd)
    if held is not None:
        return held
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _kernel_holder(fd: int) -> int | None:
    """The pid /proc/locks gives for the flock on ``fd``'s file (device and inode), or
    None (no /proc, another kernel, a holder in another pid namespace: pid 0 or -1)."""
    try:
        st = os.fstat(fd)
        key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            for line in f:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:2425064 0 EOF"; waiters have "->"
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == key:
                    pid = int(fields[4]) if fields[4].isdigit() else 0
                    return pid if pid > 0 else None
    except (OSError, ValueError):
        pass
    return None
