"""Real servers for integration tests: PostgreSQL and Prometheus, each in its own temp
directory, bound to 127.0.0.1 or a unix socket, stopped at the end.

They skip (with the reason) only when the binary cannot be found; any other failure to
start is a test error with the server's log in the message.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

PG_BIN_DIRS = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)


def _pg_bin() -> str | None:
    for d in [os.environ.get("HEAPWATCH_PG_BIN", ""), *PG_BIN_DIRS]:
        if d and os.path.exists(os.path.join(d, "initdb")) and os.path.exists(
                os.path.join(d, "pg_ctl")):
            return d
    return None


def _unprivileged() -> pwd.struct_passwd | None:
    """initdb refuses root: as root, run the server as nobody."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam("nobody")


class Postgres:
    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.user = _unprivileged()
        self.dir = tempfile.mkdtemp(prefix="heapwatch-pg-")
        os.chmod(self.dir, 0o755)  # the server's user must reach its socket and data
        if self.user is not None:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.port = 5432  # only names the socket file in our private directory

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        kw: dict[str, Any] = {}
        if self.user is not None:
            kw.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        return subprocess.run(args, capture_output=True, text=True, timeout=120,
                              cwd=self.dir, env={**os.environ, "LC_ALL": "C"}, **kw)

    def start(self) -> None:
        init = self._run(os.path.join(self.bindir, "initdb"), "-D", self.data, "-U",
                         "heapwatch", "--auth=trust", "--no-sync", "-E", "UTF8")
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip()[-2000:]}")
        opts = f"-k {self.dir} -c listen_addresses='' -p {self.port} -c fsync=off"
        started = self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l",
                            self.log, "-w", "-t", "60", "-o", opts, "start")
        if started.returncode != 0:
            log = ""
            if os.path.exists(self.log):
                with open(self.log) as f:
                    log = f.read()[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {started.stderr.strip()} {log}")

    @property
    def url(self) -> str:
        return (f"postgresql://heapwatch@/postgres?host={urllib.parse.quote(self.dir)}"
                f"&port={self.port}")

    def stop(self) -> None:
        self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "immediate",
                  "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql; "
                    "looked in /usr/lib/postgresql/*/bin and $HEAPWATCH_PG_BIN)")
    server = Postgres(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Prometheus:
    """A Prometheus server scraping ``targets`` every ``scrape_s`` seconds."""

    def __init__(self, binary: str, targets: list[str], scrape_s: float = 1.0) -> None:
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="heapwatch-prom-")
        self.port = free_port()
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            json.dump({  # YAML is a superset of JSON
                "global": {"scrape_interval": f"{scrape_s:g}s",
                           "evaluation_interval": f"{scrape_s:g}s"},
                "scrape_configs": [{"job_name": "heapwatch", "scrape_interval": f"{scrape_s:g}s",
                                    "static_configs": [{"targets": targets}]}],
            }, f)
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={self.dir}/data",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            data = json.load(resp)
        assert data["status"] == "success", data
        return data["data"]

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.logtext()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready",
                                            timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)  # polling a readiness endpoint, not a sleep-and-hope
        raise RuntimeError(f"prometheus not ready after {timeout}s: {self.logtext()}")

    def logtext(self) -> str:
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()[-2000:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def prometheus_binary() -> str:
    binary = shutil.which("prometheus") or os.environ.get("HEAPWATCH_PROMETHEUS", "")
    if not binary or not os.path.exists(binary):
        pytest.skip("the prometheus binary was not found (apt-get install prometheus, or set "
                    "$HEAPWATCH_PROMETHEUS)")
    return binary
