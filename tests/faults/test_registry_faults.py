"""Issue 10, case 19: the registry of agents where another user can create names first, and
control sockets that are not the agent's."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from faultkit import OTHER_UID, as_other_user, assert_one_line_error, need_root

from heapwatch import control
from heapwatch.agent import registry
from heapwatch.errors import AgentError


@pytest.fixture
def shared_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A /tmp of the test's own (world-writable, sticky, reachable by the other user) as
    the registry's base."""
    need_root()
    base = tempfile.mkdtemp(prefix="heapwatch-test-shared-")
    try:
        os.chmod(base, 0o1777)
        monkeypatch.setattr(registry, "_base", lambda: base)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


#: What an impostor says it stopped: more digits than any pid (pid_max is at most 2^22), so
#: finding it in heapwatch's output means heapwatch read the impostor's reply, and no pid
#: heapwatch names itself can contain it by chance (999 was found inside pid 9992).
IMPOSTOR_PID = 987_654_321


class Impostor:
    """A control socket served by whoever the test likes; records what it was sent."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.received: list[bytes] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.sock.settimeout(30)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                data = b""
                try:
                    while not data.endswith(b"\n"):
                        chunk = conn.recv(512)
                        if not chunk:
                            break
                        data += chunk
                    self.received.append(data)
                    conn.sendall(b"ok stopped %d\n" % IMPOSTOR_PID)
                except OSError:
                    self.received.append(data)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the thread
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=10)


@pytest.fixture
def victim() -> Iterator[int]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_case19_registry_pre_created_by_another_user_is_not_used(shared_tmp: str,
                                                                  victim: int) -> None:
    hijacked = registry.registry_dir()
    fake = json.dumps({"control": os.path.join(shared_tmp, "fake.sock")})
    subprocess.run(["/bin/sh", "-c", f"mkdir -m 777 '{hijacked}' && "
                    f"printf '%s' '{fake}' > '{hijacked}/{victim}.json'"],
                   preexec_fn=as_other_user(), check=True)
    assert os.stat(hijacked).st_uid == OTHER_UID
    assert registry.lookup(victim) is None
    registry.register(victim, {"control": "/x"})
    assert os.listdir(hijacked) == [f"{victim}.json"]  # nothing of ours written there
    assert "belongs to uid 65534" in (registry.problem() or "")
    with pytest.raises(AgentError, match="belongs to uid 65534"):
        control.command(str(victim), "stop")


def test_case19_a_symlinked_registry_directory_is_not_followed(shared_tmp: str,
                                                               tmp_path: Any, victim: int
                                                               ) -> None:
    elsewhere = tmp_path / "elsewhere"  # a private directory of root's, looking just right
    elsewhere.mkdir(mode=0o700)
    elsewhere.chmod(0o700)
    (elsewhere / f"{victim}.json").write_text(json.dumps({"control": "/x"}))
    os.symlink(elsewhere, registry.registry_dir())
    assert registry.lookup(victim) is None
    registry.register(12345, {"control": "/y"})
    assert sorted(os.listdir(elsewhere)) == [f"{victim}.json"]
    assert "symbolic link" in (registry.problem() or "")


def test_case19_registry_of_our_own_is_private_and_used(shared_tmp: str, victim: int) -> None:
    registry.register(victim, {"control": "/z"})
    path = registry.registry_dir()
    assert os.stat(path).st_mode & 0o777 == 0o700
    assert os.stat(os.path.join(path, f"{victim}.json")).st_mode & 0o777 == 0o600
    assert registry.lookup(victim) == {"control": "/z"}
    registry.unregister(victim)
    assert registry.lookup(victim) is None


@pytest.mark.parametrize("impostor", ["other-user", "other-process"])
def test_case19_stop_pid_never_talks_to_an_impostor_socket(tmp_path: Any, victim: int,
                                                           impostor: str) -> None:
    """A registry entry of root's own (left by an agent that was killed, say) names a
    socket that someone else now serves: ``heapwatch stop PID`` sends it nothing."""
    need_root()
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    reg = xdg / f"heapwatch-{os.geteuid()}"
    reg.mkdir(mode=0o700)
    sock_dir = tmp_path / "sock"
    sock_dir.mkdir()
    fake = Impostor(str(sock_dir / "agent.sock"))
    try:
        if impostor == "other-user":
            os.chown(fake.path, OTHER_UID, -1)
        (reg / f"{victim}.json").write_text(json.dumps({"control": fake.path}))
        (reg / f"{victim}.json").chmod(0o600)
        env = dict(os.environ, XDG_RUNTIME_DIR=str(xdg))
        for verb in (["stop", str(victim)], ["mark", str(victim), "load"]):
            proc = subprocess.run([sys.executable, "-m", "heapwatch", *verb], env=env,
                                  capture_output=True, text=True, timeout=60)
            assert str(IMPOSTOR_PID) not in proc.stdout + proc.stderr
            if impostor == "other-user":
                assert_one_line_error(proc, "belongs to uid 65534", "impostor")
            else:
                assert_one_line_error(proc, "not by the agent in process", "impostor")
    finally:
        fake.close()
    assert all(not data for data in fake.received), fake.received
