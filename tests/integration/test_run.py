"""heapwatch run on real processes: what passes through, what it records, how it fails."""

from __future__ import annotations

import os
import sys
import textwrap
from typing import Any

import pytest
from helpers import ROOT, heapwatch, report

from heapwatch.store import open_run
from procs import reap


def write(path: Any, text: str) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write(textwrap.dedent(text))
    return str(path)


def test_io_and_exit_code_pass_through(tmp_path: Any) -> None:
    script = write(tmp_path / "echo.py", """
        import sys
        line = sys.stdin.readline()
        print("got", line.strip())
        print("to stderr", file=sys.stderr)
        sys.exit(3)
    """)
    proc = heapwatch("run", "--interval", "0.2", "--out", str(tmp_path / "r"), "--",
                     sys.executable, script, input="hello\n")
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "got hello\n"
    assert "to stderr" in proc.stderr
    rep = report(str(tmp_path / "r"))
    assert rep["agent"]["checked_in"] is True
    assert rep["run"]["exit_code"] == 3


@pytest.mark.parametrize("children", ["all", "none"])
def test_target_sitecustomize_runs_and_children_get_a_clean_env(children: str, tmp_path: Any
                                                                ) -> None:
    site = tmp_path / "site"
    site.mkdir()
    marker = tmp_path / "sitecustomize-ran"
    write(site / "sitecustomize.py", f"open({str(marker)!r}, 'w').write('yes')\n")
    script = write(tmp_path / "parent.py", """
        import subprocess, sys
        code = "import os, sys; print(os.environ.get('PYTHONPATH')); print('heapwatch' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
        print(out, end="")
        print("parent-has-agent", "heapwatch.agent" in sys.modules)
    """)
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = heapwatch("run", "--interval", "0.2", "--children", children, "--out",
                     str(tmp_path / "r"), "--", sys.executable, script, env=env)
    assert proc.returncode == 0, proc.stderr
    # the child sees its own environment; with --children all it runs an agent of its own
    child_agent = str(children == "all")
    assert proc.stdout.splitlines() == [str(site), child_agent, "parent-has-agent True"]
    assert marker.read_text() == "yes"


def _snapshots_in(out: str) -> int:
    """Snapshots in a run store being written (0 before it has its schema)."""
    from heapwatch.errors import StoreError

    try:
        return len(open_run(out).snapshots)
    except StoreError:
        return 0


def test_python_dash_I_records_process_figures_and_says_why(tmp_path: Any) -> None:
    import subprocess
    import time

    flag = tmp_path / "go"
    script = write(tmp_path / "isolated.py", f"""
        import os, time
        while not os.path.exists({str(flag)!r}):
            time.sleep(0.02)
    """)
    out = str(tmp_path / "r")
    with subprocess.Popen([sys.executable, "-m", "heapwatch", "run", "--interval", "0.2",
                           "--out", out, "--", sys.executable, "-I", script],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        # the target ends once two snapshots from outside are in the store (a handshake)
        deadline = time.monotonic() + 120
        while _snapshots_in(out) < 2:
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.02)
        flag.write_text("1")
        _, err = p.communicate(timeout=120)
    proc = subprocess.CompletedProcess(p.args, p.returncode, "", err)
    assert proc.returncode == 0, proc.stderr
    assert "-I" in proc.stderr
    rep = report(str(tmp_path / "r"))
    assert rep["verdict"] == "inconclusive"
    assert rep["agent"]["checked_in"] is False
    assert "No Python heap data" in rep["notes"][0] and "-I" in rep["notes"][0]
    assert rep["run"]["snapshots"] >= 2  # process figures from outside


def test_non_python_command(tmp_path: Any) -> None:
    proc = heapwatch("run", "--interval", "0.2", "--out", str(tmp_path / "r"), "--",
                     "sleep", "1.2")
    assert proc.returncode == 0, proc.stderr
    assert "does not look like a Python program" in proc.stderr
    rep = report(str(tmp_path / "r"))
    assert rep["verdict"] == "inconclusive"
    assert all(s.source == "external" for s in open_run(str(tmp_path / "r")).snapshots)


def test_python_dash_m_and_a_console_script(tmp_path: Any) -> None:
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    write(pkg / "__init__.py", "")
    write(pkg / "__main__.py", "print('pkg main')\n")
    proc = heapwatch("run", "--interval", "0.2", "--out", str(tmp_path / "m"), "--",
                     sys.executable, "-m", "mypkg", cwd=str(tmp_path))
    assert proc.returncode == 0 and proc.stdout == "pkg main\n", proc.stderr
    assert report(str(tmp_path / "m"))["agent"]["checked_in"] is True
    tool = tmp_path / "mytool"
    write(tool, f"#!{sys.executable}\nprint('tool ran')\n")
    tool.chmod(0o755)
    proc = heapwatch("run", "--interval", "0.2", "--out", str(tmp_path / "t"), "--", str(tool))
    assert proc.returncode == 0 and proc.stdout == "tool ran\n", proc.stderr
    assert report(str(tmp_path / "t"))["agent"]["checked_in"] is True


def test_bad_input_is_one_line_exit_2(tmp_path: Any) -> None:
    cases = [
        ("run", "--interval", "fast", "--", sys.executable, "-c", "pass"),
        ("run", "--out", str(tmp_path / "x"), "--", "no-such-command-heapwatch"),
        ("report", str(tmp_path / "missing")),
        ("run", "--trace", "sometimes", "--", sys.executable, "-c", "pass"),
    ]
    for args in cases:
        proc = heapwatch(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip(), args
    proc = heapwatch("run", "--out", str(tmp_path / "x"), "--", "no-such-command-heapwatch")
    assert proc.stderr.strip().splitlines() == [
        "heapwatch: error: command not found: no-such-command-heapwatch"]


def test_a_killed_target_still_reports_its_snapshots(tmp_path: Any) -> None:
    script = write(tmp_path / "dies.py", """
        import os, signal, sys, time
        DATA = []
        agent = sys.modules["heapwatch.agent.sampler"].current()
        while agent.snapshots < 6:  # a handshake with the agent, not a guess of its pace
            DATA.extend(range(100))
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = str(tmp_path / "r")
    proc = heapwatch("run", "--interval", "0.1", "--out", out, "--", sys.executable, script)
    assert proc.returncode == 128 + 9, proc.stderr
    rep = report(out)
    assert rep["run"]["snapshots"] >= 5
    again = heapwatch("report", out)
    assert again.returncode == 0, again.stderr
    assert "report:" in again.stdout


def test_demo(tmp_path: Any) -> None:
    # a snapshot count, not a clock: a loaded machine stretches the agent's interval
    proc = heapwatch("demo", "--snapshots", "16", "--out", str(tmp_path / "d"), cwd=ROOT,
                     timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "report: " in proc.stderr and "report.html" in proc.stderr
    rep = report(str(tmp_path / "d"))
    assert rep["run"]["snapshots"] >= 16
    assert rep["findings"] and rep["findings"][0]["path"].endswith("TRACKER._pending")


def test_sigterm_to_heapwatch_takes_a_final_snapshot_then_ends_the_target(tmp_path: Any) -> None:
    import signal
    import subprocess
    import time

    script = write(tmp_path / "forever.py", """
        import sys, time
        print("ready", flush=True)
        while True:
            time.sleep(0.05)
    """)
    out = str(tmp_path / "r")
    proc = subprocess.Popen([sys.executable, "-m", "heapwatch", "run", "--interval", "0.2",
                             "--out", out, "--", sys.executable, script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"  # the target runs (and site ran before it)
        deadline = time.monotonic() + 30
        while open_run(out).meta.get("agent") is None:  # wait for the agent's check-in
            assert time.monotonic() < deadline and proc.poll() is None, "agent never checked in"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        reap(proc)
    assert proc.returncode == 130, err
    run = open_run(out)
    assert run.meta["agent_stopped"]["reason"] == "cli"
    assert run.snapshots[-1].reason == "stop"
    assert run.meta["launch"]["ended_by"] == "interrupt"
    assert os.path.exists(os.path.join(out, "report.json"))


def _start_run(tmp_path: Any, script_text: str) -> tuple[Any, str, int]:
    """heapwatch run of a script printing its pid; wait for the agent to check in."""
    import subprocess
    import time

    script = write(tmp_path / "svc.py", script_text)
    out = str(tmp_path / "r")
    proc = subprocess.Popen([sys.executable, "-m", "heapwatch", "run", "--interval", "0.2",
                             "--out", out, "--", sys.executable, script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())
    deadline = time.monotonic() + 60
    while _snapshots_in(out) == 0 or open_run(out).meta.get("agent") is None:
        assert time.monotonic() < deadline and proc.poll() is None, "agent never checked in"
        time.sleep(0.02)
    return proc, out, pid


def _readline_until(stream: Any, needle: str) -> list[str]:
    seen = []
    for line in stream:
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} never came: {seen}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        return f.read().rpartition(")")[2].split()[0] != "Z"  # a zombie has ended


def _interrupt(tmp_path: Any, body: str, times: int) -> tuple[int, str, bool, str]:
    """Ctrl-C ``times`` times, the second once heapwatch said it is stopping; return
    (exit code, run directory, whether heapwatch left its target running, stderr after the
    first Ctrl-C). A target left running is killed here: it holds heapwatch's stderr open."""
    import signal
    import subprocess

    proc, out, pid = _start_run(tmp_path, "import os, signal, time\n" + body
                                + "print(os.getpid(), flush=True)\n"
                                + "while True:\n    time.sleep(0.05)\n")
    left = False
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        seen = "".join(_readline_until(proc.stderr, "stopping: final snapshot"))
        if times > 1:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # heapwatch prints its threads' stacks
            try:
                proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
            proc.kill()
            _, stacks = proc.communicate()
            raise AssertionError(f"heapwatch did not exit within 120 s of the Ctrl-C; where "
                                 f"it was:\n{seen}{stacks[-6000:]}") from None
        left = _alive(pid)
        if left:
            os.kill(pid, signal.SIGKILL)
        rest = proc.stderr.read()
    finally:
        reap(proc)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    return proc.returncode, out, left, seen + rest


def test_ctrl_c_says_it_is_stopping_then_reports(tmp_path: Any) -> None:
    code, out, left, err = _interrupt(tmp_path, "", 1)
    assert code == 130, err
    assert not left
    assert "report: " in err and os.path.exists(os.path.join(out, "report.html"))


def test_a_second_ctrl_c_leaves_a_run_that_heapwatch_report_completes(tmp_path: Any) -> None:
    slow_to_stop = ("signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n")
    code, out, left, err = _interrupt(tmp_path, slow_to_stop, 2)
    assert code == 130, err
    assert "interrupted again" in err and f"heapwatch report {out}" in err, err
    assert "Aborted" not in err and "Traceback" not in err
    assert not left, "the target was left running"
    again = heapwatch("report", out)
    assert again.returncode == 0, again.stderr
    assert os.path.exists(os.path.join(out, "report.html"))


def test_plain_progress_in_a_log(tmp_path: Any) -> None:
    """stderr is a pipe here: progress comes as plain lines; the target ends only after
    heapwatch printed one (a handshake through a file, no sleeping)."""
    import subprocess

    flag = tmp_path / "go"
    script = write(tmp_path / "waits.py", f"""
        import os, time
        while not os.path.exists({str(flag)!r}):
            time.sleep(0.05)
    """)
    proc = subprocess.Popen([sys.executable, "-m", "heapwatch", "run", "--interval", "0.1",
                             "--out", str(tmp_path / "r"), "--", sys.executable, script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        seen = _readline_until(proc.stderr, "snapshots")
        flag.write_text("1")
        rest = proc.stderr.read()
        proc.wait(timeout=120)
    finally:
        reap(proc)
    line = seen[-1]
    assert line.startswith("heapwatch: ") and "\r" not in line and "\x1b" not in line
    assert "RSS" in line and proc.returncode == 0, rest


def test_sample_interval_reaches_the_agent_in_the_target(tmp_path: Any) -> None:
    from heapwatch.agent import sites

    if sites._native()[0] is None or os.environ.get("HEAPWATCH_NO_NATIVE"):
        pytest.skip(f"no sampler: {sites._native()[1]}")
    # The target reads its own sampler's interval: the flag crossed the process boundary.
    script = write(tmp_path / "idle.py", """
        import sys, time
        import heapwatch._native as native
        print(native.sampler_stats()["interval"], flush=True)
        while True:
            time.sleep(0.05)
    """)
    proc = heapwatch("run", "--sample-interval", "64KiB", "--interval", "0.2", "--snapshots",
                     "3", "--out", str(tmp_path / "r"), "--", sys.executable, script)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.split()[0]) == 65536
    assert report(str(tmp_path / "r"))["trace"]["sample_interval"] == 65536
