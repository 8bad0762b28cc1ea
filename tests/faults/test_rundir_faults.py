"""Issue 10, run directory cases: --out into a directory of the user's (9), non-UTF-8 bytes in
--out (13), private modes whatever the umask (18), links planted in --out (20)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from typing import Any

import pytest
from faultkit import (
    OTHER_GID,
    OTHER_UID,
    assert_one_line_error,
    heapwatch,
    need_root,
    write,
)
from test_store_faults import make_store

from heapwatch.errors import UsageError
from heapwatch.rundir import prepare_report_dir, prepare_run_dir, write_file
from procs import reap

QUICK = [sys.executable, "-c", "import time; time.sleep(0.5)"]


def tree(path: str) -> dict[str, bytes]:
    out = {}
    for base, _, files in os.walk(path):
        for name in files:
            full = os.path.join(base, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = f.read()
    return out


# -- case 9 ---------------------------------------------------------------------------------
def test_case09_out_into_a_directory_of_the_users_own_files_is_refused(tmp_path: Any) -> None:
    mine = tmp_path / "mine"
    (mine / "charts").mkdir(parents=True)
    (mine / "report.md").write_text("my own notes\n")
    (mine / "charts" / "F3.png").write_bytes(b"my chart")
    (mine / "keep.txt").write_text("keep me\n")
    before = tree(str(mine))
    run = heapwatch("run", "--interval", "0.2", "--out", str(mine), "--", *QUICK)
    assert_one_line_error(run, "not empty", "--out")
    other = make_store(str(tmp_path / "r"))
    rep = heapwatch("report", other, "--out", str(mine))
    assert_one_line_error(rep, "did not write", "--out")
    assert tree(str(mine)) == before  # nothing overwritten, nothing deleted


def test_case09_a_stale_claim_can_not_disable_the_agent(tmp_path: Any) -> None:
    """The agent's claim and config live in a fresh private directory of each run, never in
    --out: a leftover claim there makes --out non-empty (refused), and an empty --out gets
    an agent and is left holding only heapwatch's own files."""
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "agent.claim").write_text("12345")
    assert_one_line_error(heapwatch("run", "--out", str(stale), "--", *QUICK), "not empty")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    proc = heapwatch("run", "--interval", "0.2", "--out", str(fresh), "--", *QUICK)
    assert proc.returncode == 0, proc.stderr
    with open(fresh / "report.json", encoding="utf-8") as f:
        assert json.load(f)["agent"]["checked_in"] is True
    assert sorted(os.listdir(fresh)) == ["charts", "report.html", "report.json", "report.md",
                                         "run.sqlite"]


def test_case09_reports_are_rewritten_only_where_heapwatch_wrote_them(tmp_path: Any) -> None:
    run = make_store(str(tmp_path / "r"))
    elsewhere = str(tmp_path / "elsewhere")
    assert heapwatch("report", run, "--format", "json", "--out", elsewhere).returncode == 0
    again = heapwatch("report", run, "--format", "json,md", "--out", elsewhere)
    assert again.returncode == 0, again.stderr  # its own report.json marks it as heapwatch's
    with pytest.raises(UsageError, match="not empty"):
        prepare_run_dir(elsewhere)


# -- case 13 --------------------------------------------------------------------------------
def test_case13_non_utf8_bytes_in_out(tmp_path: Any) -> None:
    out = os.fsencode(str(tmp_path)) + b"/run-\xff\xfe"
    proc = subprocess.run([sys.executable.encode(), b"-m", b"heapwatch", b"run", b"--interval",
                           b"0.2", b"--out", out, b"--", *(a.encode() for a in QUICK)],
                          capture_output=True, timeout=120)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert sorted(os.listdir(out)) == [b"charts", b"report.html", b"report.json", b"report.md",
                                       b"run.sqlite"]
    with open(out + b"/report.json", encoding="utf-8") as f:
        assert json.load(f)["agent"]["checked_in"] is True
    with open(out + b"/report.md", "rb") as f:
        assert f.read().startswith(b"# heapwatch report")


def test_case13_text_with_the_os_bytes_is_written_back_as_those_bytes(tmp_path: Any) -> None:
    name = os.fsdecode(b"x-\xff")
    path = write_file(str(tmp_path / "t.txt"), f"dir {name}\n")
    with open(path, "rb") as f:
        assert f.read() == b"dir x-\xff\n"


# -- case 18 --------------------------------------------------------------------------------
LIVE = """
    import sys, heapwatch
    heapwatch.snapshot()
    print("ready", flush=True)
    sys.stdin.readline()
"""


def modes(path: str) -> dict[str, int]:
    out = {".": stat.S_IMODE(os.stat(path).st_mode)}
    for base, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(base, name)
            out[os.path.relpath(full, path)] = stat.S_IMODE(os.stat(full).st_mode)
    return out


def test_case18_run_directory_0700_and_files_0600_whatever_the_umask(tmp_path: Any) -> None:
    script = write(tmp_path / "live.py", LIVE)
    out = str(tmp_path / "r")
    proc = subprocess.Popen([sys.executable, "-m", "heapwatch", "run", "--interval", "60s",
                             "--out", out, "--", sys.executable, script],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: os.umask(0))
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "ready\n"
        live = modes(out)  # the store with its -wal and -shm while the target runs
        assert {"run.sqlite", "run.sqlite-wal", "run.sqlite-shm"} <= set(live), live
        proc.stdin.write("go\n")
        proc.stdin.flush()
        _, err = proc.communicate(timeout=60)
    finally:
        reap(proc)
    assert proc.returncode == 0, err
    done = modes(out)
    assert "charts/memory.png" in done and "report.html" in done
    for seen in (live, done):
        for name, mode in seen.items():
            want = 0o700 if os.path.isdir(os.path.join(out, name)) else 0o600
            assert mode == want, (name, oct(mode))


# -- case 20 --------------------------------------------------------------------------------
def test_case20_links_planted_in_out_are_never_followed(tmp_path: Any) -> None:
    victims = tmp_path / "victims"
    victims.mkdir()
    for name in ("shadow", "authorized_keys", "crontab"):
        (victims / name).write_text(f"root's {name}\n")
        (victims / name).chmod(0o600)
    before = tree(str(victims))
    planted = tmp_path / "planted"
    planted.mkdir()
    os.symlink(victims / "shadow", planted / "report.json")
    os.symlink(victims / "authorized_keys", planted / "report.md")
    os.symlink(victims / "crontab", planted / "run.sqlite")
    assert_one_line_error(heapwatch("run", "--out", str(planted), "--", *QUICK), "--out")
    # A real run directory with links planted in it afterwards (by whoever could): every
    # report replaces the link itself, a linked charts/ directory is refused.
    run = make_store(str(tmp_path / "r"))
    os.symlink(victims / "shadow", os.path.join(run, "report.json"))
    os.symlink(victims / "crontab", os.path.join(run, "report.html"))
    os.symlink(victims, os.path.join(run, "charts"))
    proc = heapwatch("report", run)
    assert_one_line_error(proc, "charts")
    assert tree(str(victims)) == before
    for name in ("report.json", "report.html"):
        assert not os.path.islink(os.path.join(run, name))
    with open(os.path.join(run, "report.json"), encoding="utf-8") as f:
        assert json.load(f)["run"]["snapshots"] == 12
    # the --out directory itself as a link is refused
    link = tmp_path / "link"
    os.symlink(victims, link)
    assert_one_line_error(heapwatch("run", "--out", str(link), "--", *QUICK), "symbolic link")
    assert tree(str(victims)) == before


def test_case20_an_out_directory_of_another_user_is_refused(tmp_path: Any) -> None:
    need_root()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, OTHER_UID, OTHER_GID)
    with pytest.raises(UsageError, match="belongs to another user"):
        prepare_run_dir(str(theirs))
    with pytest.raises(UsageError, match="belongs to another user"):
        prepare_report_dir(str(theirs))
    assert os.listdir(theirs) == []
