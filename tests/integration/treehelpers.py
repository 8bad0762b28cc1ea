"""Real servers under heapwatch for the process-tree tests: free ports, readiness read from
the server's own log lines, bounded load from scenarios/web_shop/load.py."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from helpers import ROOT, SCENARIOS

SHOP = os.path.join(SCENARIOS, "web_shop")
BIN = os.path.dirname(sys.executable)


def _load_module() -> Any:
    spec = importlib.util.spec_from_file_location("shop_load", os.path.join(SHOP, "load.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


load = _load_module()


def free_port() -> int:
    """A port nobody listens on now (the server binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tool(name: str) -> str:
    return os.path.join(BIN, name)


def gunicorn_quiet_flags() -> list[str]:
    """gunicorn 24+ runs a control socket at a fixed path (~/.gunicorn/gunicorn.ctl) in a
    thread of the master: tests running side by side must not share it."""
    try:
        out = subprocess.run([tool("gunicorn"), "--help"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return ["--no-control-socket"] if "--no-control-socket" in out else []


@dataclass
class Process:
    """A process whose stderr lines are collected, with a wait for a marker line."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        self.proc.stderr.close()
        with self._cond:
            self.lines.append("<eof>")
            self._cond.notify_all()

    def wait_for(self, ok: Callable[[list[str]], bool], timeout: float = 60.0) -> None:
        """Until ``ok(lines)`` holds; fails with the log when the process ends first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ok(self.lines):
                if self.lines and self.lines[-1] == "<eof>":
                    raise AssertionError("the process ended before it was ready:\n"
                                         + "\n".join(self.lines[-40:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("not ready in time:\n" + "\n".join(self.lines[-40:]))
                self._cond.wait(left)

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for the process and for the end of its log."""
        code = self.proc.wait(timeout=timeout)
        self.wait_for(lambda lines: bool(lines) and lines[-1] == "<eof>", timeout)
        return code

    def log(self) -> str:
        with self._cond:
            return "\n".join(self.lines)


def start(cmd: list[str], cwd: str, env: dict[str, str] | None = None) -> Process:
    full = dict(os.environ)
    full["PYTHONPATH"] = os.path.join(ROOT, "src")
    full.update(env or {})
    proc = subprocess.Popen(cmd, cwd=cwd, env=full, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return Process(proc)


def count(needle: str, n: int) -> Callable[[list[str]], bool]:
    return lambda lines: sum(needle in line for line in lines) >= n


class Load:
    """Bounded load in a thread, until ``stop()`` or the target process ends."""

    def __init__(self, port: int, until: int | None, rate: float, seconds: float = 120.0
                 ) -> None:
        self.stop_event = threading.Event()
        self.result: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, args=(port, until, rate, seconds),
                                        daemon=True)
        self._thread.start()

    def _run(self, port: int, until: int | None, rate: float, seconds: float) -> None:
        self.result = load.run(f"http://127.0.0.1:{port}", seconds, 10_000_000, 4,
                               until_gone=until, rate=rate, stop=self.stop_event)

    def join(self, timeout: float = 60.0) -> dict[str, Any]:
        """Until its time is up."""
        self._thread.join(timeout)
        return self.result

    def stop(self) -> dict[str, Any]:
        self.stop_event.set()
        self._thread.join(60)
        return self.result
