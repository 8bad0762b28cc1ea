"""Phase schedules for ``heapwatch run --phase NAME=DURATION[:CMD]``."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
from dataclasses import dataclass

from heapwatch.durations import parse_duration
from heapwatch.errors import LaunchError, UsageError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,39}$")


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    seconds: float
    command: tuple[str, ...] = ()


def parse_phase(spec: str) -> Phase:
    """``load=2m:python load.py --rps 50`` -> Phase("load", 120.0, ("python", ...))."""
    name, eq, rest = spec.partition("=")
    if not eq or not _NAME.match(name.strip()):
        raise UsageError(f"invalid --phase {spec!r}: use NAME=DURATION or NAME=DURATION:COMMAND,"
                         f" e.g. load=2m:\"python load.py\"")
    duration, colon, cmd = rest.partition(":")
    seconds = parse_duration(duration)
    command: tuple[str, ...] = ()
    if colon:
        try:
            command = tuple(shlex.split(cmd))
        except ValueError as exc:
            raise UsageError(f"invalid command in --phase {spec!r}: {exc}") from None
        if not command:
            raise UsageError(f"--phase {spec!r} has a ':' but no command after it")
    return Phase(name.strip(), seconds, command)


def start_load(phase: Phase, env: dict[str, str]) -> subprocess.Popen[bytes] | None:
    if not phase.command:
        return None
    try:
        return subprocess.Popen(list(phase.command), env=env, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise LaunchError(f"cannot start the load command of phase {phase.name!r} "
                          f"({phase.command[0]}): {exc.strerror or exc}") from None


def stop_load(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGINT, then SIGTERM, then SIGKILL, a few seconds each."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGINT, 3.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
