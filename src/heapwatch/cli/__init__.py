"""heapwatch: find what leaks in a Python process, who holds it, and where it was allocated.

The only layer that knows about exit codes and terminals. Subcommands are loaded lazily,
one module each; a module's docstring is its --help.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

from heapwatch.errors import HeapwatchError

_COMMANDS = {
    "run": "heapwatch.cli.cmd_run",
    "demo": "heapwatch.cli.cmd_demo",
    "report": "heapwatch.cli.cmd_report",
    "mark": "heapwatch.cli.cmd_mark",
    "stop": "heapwatch.cli.cmd_stop",
    "diff": "heapwatch.cli.cmd_diff",
    "ls": "heapwatch.cli.cmd_ls",
    "attach": "heapwatch.cli.cmd_attach",
    "soak": "heapwatch.cli.cmd_soak",
    "history": "heapwatch.cli.cmd_history",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n in _COMMANDS if importlib.util.find_spec(_COMMANDS[n]) is not None)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = _COMMANDS.get(name)
        if module is None:
            return None
        try:
            cmd: click.Command = importlib.import_module(module).command
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            return None  # a command not built yet
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="heapwatch")
def cli() -> None:
    """Find what leaks in a Python process, who holds it, and where it was allocated.

    \b
    heapwatch run -- python app.py      wrap a command and report what grows
    heapwatch demo                      run a leaking example service
    heapwatch report RUN_DIR            re-render the reports of a run
    heapwatch diff RUN_DIR              what changed between two snapshots or phases
    heapwatch mark RUN_DIR|PID PHASE    mark a phase in a running run
    heapwatch ls [DIR]                  list runs with their verdicts
    """


def fail(message: str, code: int = 2) -> None:
    click.echo(f"heapwatch: error: {message}", err=True)
    sys.exit(code)


_RUNS_A_COMMAND = ("run", "soak")


def _stacks_on_sigusr1() -> None:
    """``kill -USR1 <heapwatch>`` prints where each of heapwatch's threads is (stderr), for
    a heapwatch that seems stuck. Only in the command itself, never in a target: heapwatch's
    own process, not one it is watching."""
    import faulthandler
    import signal

    try:
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    except (AttributeError, ValueError, RuntimeError, OSError):
        pass


def main(argv: list[str] | None = None) -> Any:
    """Every error is one line on stderr (``heapwatch: error: ...``) and a non-zero exit."""
    args = list(sys.argv[1:] if argv is None else argv)
    if argv is None:
        _stacks_on_sigusr1()
    try:
        return cli.main(args=args, prog_name="heapwatch", standalone_mode=False)
    except HeapwatchError as exc:
        fail(str(exc), exc.exit_code)
    except click.exceptions.NoSuchOption as exc:
        hint = ""
        if args and args[0] in _RUNS_A_COMMAND and "--" not in args:
            hint = (f" (if it is an option of the command, put the command after --: "
                    f"heapwatch {args[0]} [OPTIONS] -- python -u app.py)")
        fail(exc.format_message() + hint, exc.exit_code)
    except click.ClickException as exc:
        fail(exc.format_message().replace("\n", " "), exc.exit_code)
    except click.exceptions.Abort:
        click.echo("heapwatch: interrupted", err=True)
        sys.exit(130)
    return None
