"""The CLI's words: summaries, run names, one-line errors, progress in a log."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from heapwatch.cli import main
from heapwatch.cli.options import PlainProgress, run_name
from heapwatch.report.summary import headline, summary_lines


class _A:
    """Just what the summary reads of an Analysis."""

    def __init__(self, verdict: str, *, exit_code: int | None = 0, snapshots: int = 40,
                 duration: float = 20.0, checked_in: bool = True, findings: Any = (),
                 notes: Any = (), reason: str = "nothing grew without bound",
                 target_exit: dict[str, Any] | None = None) -> None:
        self.verdict = verdict
        self.target_exit = target_exit or {}
        self.verdict_reason = reason
        self.run = {"snapshots": snapshots, "duration_s": duration, "exit_code": exit_code}
        self.agent = {"checked_in": checked_in}
        self.findings = list(findings)
        self.notes = list(notes)


def test_the_summary_names_report_html_first_and_the_top_finding_once() -> None:
    from heapwatch.model import Finding, Growth

    f = Finding(id="F1", kind="container", severity="high", title="m.CACHE grows without bound",
                growth=Growth(0, 10, "items", 1.0, "9/9 intervals"), confidence=0.9,
                evidence="", path="m.CACHE", site="m.py:3")
    a = _A("leak", findings=[f])
    lines = summary_lines(a, {"json": "r/report.json", "md": "r/report.md",  # type: ignore[arg-type]
                              "html": "r/report.html"})
    assert lines[0].startswith("heapwatch: LEAK - 1 finding of high or medium severity")
    assert lines[2] == "  report: r/report.html"
    assert lines[3] == "  also: r/report.md, r/report.json"
    assert sum("m.CACHE" in ln for ln in lines) == 1


def test_a_target_that_died_is_said_in_the_summary_whatever_the_verdict() -> None:
    died = {"ended": "died", "died": True, "at_s": 4.2, "how": "killed by SIGKILL"}
    early = summary_lines(_A("inconclusive", exit_code=-9, snapshots=3, duration=4.2,  # type: ignore[arg-type]
                             target_exit=died), "r/report.html")
    assert early[0] == ("heapwatch: INCONCLUSIVE - the target died 4.2s into the run (killed by "
                        "SIGKILL) (3 snapshots): too short to judge; fix the target and run it "
                        "again")
    judged = summary_lines(_A("no-leak", exit_code=-9, target_exit=died), "r/report.html")  # type: ignore[arg-type]
    assert judged[1] == "  the target died 4.2s into the run (killed by SIGKILL)"


def test_a_target_that_failed_at_once_is_told_so() -> None:
    a = _A("inconclusive", exit_code=2, snapshots=1, duration=0.1,
           reason="too few snapshots to judge: run longer")
    text = headline(a)  # type: ignore[arg-type]
    assert "the target exited with 2 after 0.1 s" in text and "run longer" not in text
    assert "(1 snapshot)" in text


@pytest.mark.parametrize(("cmd", "name"), [
    (["sleep", "3"], "sleep"),
    (["python3", "-u", "app.py", "--port", "80"], "app"),
    (["/usr/bin/python3.11", "-m", "mysvc.main", "serve"], "main"),
    (["python", "-c", "pass"], "python"),
    (["python", "-X", "dev", "svc.py"], "svc"),
])
def test_run_folders_are_named_after_the_script(cmd: list[str], name: str) -> None:
    assert run_name(cmd) == name


@pytest.mark.parametrize("args", [
    ["run", "--duration", "5s", "python", "-u", "x.py"],
    ["run", "--duration", "5x", "--", "python", "x.py"],
    ["report", "/nonexistent-heapwatch", "--limit", "abc"],
    ["diff", "/nonexistent-heapwatch", "--top", "zero"],
    ["nosuchcommand"],
    ["run", "--sample-interval", "12 parsecs", "--", "python", "x.py"],
    ["run", "--sample-interval", "8", "--", "python", "x.py"],
    ["run", "--sample-interval", "4GiB", "--", "python", "x.py"],
    ["run", "--trace", "off", "--sample-interval", "1MiB", "--", "python", "x.py"],
    ["soak", "--trace", "auto", "--sample-interval", "1MiB", "--", "python", "x.py"],
    ["attach", "--trace", "on", "--sample-interval", "64KiB", "1"],
])
def test_usage_errors_are_one_line(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("heapwatch: error: "), err
    if "-u" in args:
        assert "put the command after --" in err[0]


def test_report_limit_error_does_not_talk_about_budgets(capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    with pytest.raises(SystemExit):
        main(["report", "/nonexistent-heapwatch", "--limit", "abc"])
    err = capsys.readouterr().err
    assert "rss-max" not in err and "5MB/h" not in err and "512MB" in err


def test_run_help_shows_the_phase_example_on_two_lines() -> None:
    from heapwatch.cli import cli

    out = CliRunner().invoke(cli, ["run", "--help"]).output
    lines = [ln for ln in out.splitlines() if "--phase" in ln and "load.py" in ln]
    assert len(lines) == 2, out
    assert lines[0].rstrip().endswith("\\") and lines[1].lstrip().startswith("--phase peak")
    assert "report.html" in out


def test_plain_progress_prints_every_ten_snapshots(capsys: pytest.CaptureFixture[str]) -> None:
    p = PlainProgress(every=10, seconds=1e9)
    for n in range(0, 35):
        p(f"  {n * 0.5:6.1f}s  snapshots {n}  RSS 40.0 MiB  top grower m.CACHE")
    lines = capsys.readouterr().err.splitlines()
    assert [ln.split("snapshots ")[1].split()[0] for ln in lines] == ["10", "20", "30"]
    assert lines[0].startswith("heapwatch: ") and "m.CACHE" in lines[0]


def test_report_open_says_when_nothing_can_open(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import webbrowser

    from heapwatch.cli import cmd_report

    monkeypatch.setattr(webbrowser, "open", lambda url: False)
    cmd_report._open({"html": str(tmp_path / "report.html")})
    text = capsys.readouterr().err
    assert "no browser to open here" in text and "report.html" in text


def test_ls_never_cuts_a_path_in_the_middle() -> None:
    from heapwatch.cli.cmd_ls import short_command

    cmd = ["/usr/local/bin/python3.11", "/home/someone/projects/service/src/app/main.py",
           "--config", "/etc/service/production-settings-with-a-long-name.yaml", "--workers",
           "8", "--verbose"]
    text = short_command(cmd, width=60)
    assert text == "python3.11 main.py --config …"
    assert all(w in cmd or any(c.endswith("/" + w) for c in cmd) for w in text.split()
               if w != "…")
    assert len(text) <= 62


def test_ls_of_a_run_directory_lists_that_run(tmp_path: Any) -> None:
    from heapwatch.cli import cli
    from heapwatch.model import ProcessStat, Snapshot
    from heapwatch.store import Writer

    run_dir = tmp_path / "svc-20261125-120000"
    run_dir.mkdir()
    w = Writer(str(run_dir / "run.sqlite"), meta={"run": {"command": ["python", "svc.py"]}})
    w.write_snapshot(Snapshot(seq=1, pid=1, t=0.0, mono=0.0, reason="start", duration_s=0.0,
                              phase=None, traced=False, process=ProcessStat(rss=1)))
    w.close()
    out = CliRunner().invoke(cli, ["ls", str(run_dir)])
    assert out.exit_code == 0, out.output
    assert "svc-20261125-120000" in out.output and "no runs" not in out.output


def test_diff_hides_unchanged_rows_by_default() -> None:
    from heapwatch.analysis import analyze
    from heapwatch.analysis.diff import diff
    from heapwatch.model import ContainerStat, ProcessStat, Snapshot
    from heapwatch.store import RunData

    def snap(i: int, grow: int) -> Snapshot:
        conts = (ContainerStat("m.GROWS", "dict", 100 + grow, 0, "m.GROWS"),
                 *(ContainerStat(f"m.SAME{k}", "list", 200, 0, f"m.SAME{k}") for k in range(19)))
        return Snapshot(seq=i + 1, pid=7, t=float(i), mono=float(i), reason="interval",
                        duration_s=0.0, phase=None, traced=False, process=ProcessStat(rss=1),
                        containers=conts)

    run = RunData(path="/tmp/x/run.sqlite", meta={"agent": {"pid": 7}},
                  snapshots=[snap(i, 10 * i) for i in range(12)])
    a = analyze(run)
    d = diff(a, "1", "12")
    assert [r.name for r in d.rows] == ["m.GROWS"] and d.unchanged == 19
    assert len(diff(a, "1", "12", changed_only=False).rows) == 20


@pytest.mark.parametrize("command", ["run", "attach", "report"])
def test_help_names_report_html(command: str) -> None:
    from heapwatch.cli import cli

    out = CliRunner().invoke(cli, [command, "--help"]).output
    assert "report.html" in out or "html" in out, out


def test_the_reports_say_the_target_exited_too() -> None:
    from heapwatch.analysis import analyze
    from heapwatch.model import ProcessStat, Snapshot
    from heapwatch.report import render_html, render_markdown
    from heapwatch.store import RunData

    snaps = [Snapshot(seq=i + 1, pid=5, t=100.0 + 0.05 * i, mono=0.05 * i, reason="interval",
                      duration_s=0.0, phase=None, traced=False, process=ProcessStat(rss=1 << 20))
             for i in range(2)]
    meta = {"agent": {"pid": 5, "python": "3.11.7"}, "run": {"command": ["python", "x.py"]},
            "launch": {"exit_code": 2, "checked_in": True, "wall_s": 0.1}}
    a = analyze(RunData(path="/tmp/x/run.sqlite", meta=meta, snapshots=snaps))
    assert a.verdict == "inconclusive"
    for text in (render_html(a), render_markdown(a)):
        assert "The target exited with 2 after 0.1 s" in text and "run longer" not in text
