"""pytest plugin: fail a test whose body leaves something growing.

Check one test with ``@pytest.mark.leakcheck`` (arguments, positionally or by keyword:
``iterations=None`` for adaptive or a number of at least 8, ``warmup=2``, ``ignore=[...]``,
``enabled=True``), a callable with the ``leakcheck`` fixture, or every test of a suite with
``--leakcheck-all`` (or ``leakcheck_all = true`` in the ini file; ``leakcheck(enabled=False)``
opts a test out). unittest.TestCase tests and async tests (pytest-asyncio, anyio) are
checked too. Each call of the test sets its function-scoped fixtures up afresh.

Options: ``--leakcheck-all``, ``--no-leakcheck``, ``--leakcheck-iterations N``,
``--leakcheck-warmup N``; ini: ``leakcheck_all``, ``leakcheck_iterations``,
``leakcheck_warmup``, ``leakcheck_ignore`` (glob patterns of holders: owner paths such as
``myapp.cache.*``, or allocation sites such as ``*/vendor/*``). Works under pytest-xdist:
each worker checks its own tests, the summary at the end lists every leaking test.
"""

from __future__ import annotations

import functools
import statistics
import sys
from collections.abc import Callable, Generator
from typing import Any

import pytest

from heapwatch.errors import UsageError
from heapwatch.leakcheck import LeakResult, Settings, Stop, run_check, settings_from

PROPERTY = "heapwatch_leakcheck"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("heapwatch", "heapwatch leak checks")
    group.addoption("--leakcheck-all", action="store_true", default=None,
                    help="leak-check every test, not only those marked leakcheck")
    group.addoption("--leakcheck-iterations", type=int, default=None,
                    help="calls of a checked test (default: adaptive, 6 to 30, then 12 more "
                         "when something grows)")
    group.addoption("--leakcheck-warmup", type=int, default=None,
                    help="warm-up calls before measuring (default: 2)")
    group.addoption("--no-leakcheck", action="store_true", default=False,
                    help="run leakcheck tests once, without checking")
    parser.addini("leakcheck_all", "leak-check every test", type="bool", default=False)
    parser.addini("leakcheck_iterations", "calls of a checked test (empty: adaptive)",
                  default="")
    parser.addini("leakcheck_warmup", "warm-up calls before measuring", default="2")
    parser.addini("leakcheck_ignore", "glob patterns of holders (owner paths) or sites to "
                  "ignore", type="linelist", default=[])


class _Parent:
    """Stands for "the next item" in SetupState.teardown_exact: the item's own parents, so
    that only the item's own (function-scoped) fixtures are torn down."""

    def __init__(self, chain: list[Any]) -> None:
        self._chain = chain

    def listchain(self) -> list[Any]:
        return self._chain


class Manager:
    """The plugin's state for one session (registered in pytest_configure)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.disabled: bool = config.getoption("--no-leakcheck")
        opt_all = config.getoption("--leakcheck-all")
        self.check_all = bool(opt_all if opt_all is not None else config.getini("leakcheck_all"))
        self.results: list[tuple[str, dict[str, Any]]] = []
        self.base = self._base()

    def _base(self) -> Settings:
        cfg = self.config
        ini_it = str(cfg.getini("leakcheck_iterations")).strip()
        try:
            iterations = int(ini_it) if ini_it else None
            warmup = int(str(cfg.getini("leakcheck_warmup")).strip() or "2")
        except ValueError:
            raise pytest.UsageError("leakcheck_iterations and leakcheck_warmup must be whole "
                                    "numbers") from None
        try:
            return settings_from({"iterations": iterations, "warmup": warmup,
                                  "ignore": tuple(cfg.getini("leakcheck_ignore"))}, "ini")
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from None

    def settings(self, args: tuple[Any, ...], kwargs: dict[str, Any], where: str) -> Settings:
        """The marker's (or the fixture's) arguments over the ini, under the command line."""
        from heapwatch.leakcheck import parse_marker

        marked = parse_marker(args, kwargs)
        values: dict[str, Any] = {"ignore": marked.ignore, "enabled": marked.enabled}
        if "iterations" in kwargs or len(args) >= 1:
            values["iterations"] = marked.iterations
        if "warmup" in kwargs or len(args) >= 2:
            values["warmup"] = marked.warmup
        cfg = self.config
        if cfg.getoption("--leakcheck-iterations") is not None:
            values["iterations"] = cfg.getoption("--leakcheck-iterations")
        if cfg.getoption("--leakcheck-warmup") is not None:
            values["warmup"] = cfg.getoption("--leakcheck-warmup")
        return settings_from(values, where, self.base)

    def settings_for(self, item: pytest.Item) -> Settings | None:
        """None when ``item`` is not checked."""
        if self.disabled or not isinstance(item, pytest.Function):
            return None
        marker = item.get_closest_marker("leakcheck")
        if marker is None and not (self.check_all and item.get_closest_marker("xfail") is None):
            return None
        args, kwargs = (marker.args, dict(marker.kwargs)) if marker else ((), {})
        s = self.settings(tuple(args), kwargs, "@pytest.mark.leakcheck")
        return s if s.enabled else None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        try:
            item.stash[_SETTINGS] = self.settings_for(item)
        except UsageError as exc:
            item.stash[_SETTINGS] = None
            pytest.fail(f"usage error: {exc}", pytrace=False)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, None]:
        settings = item.stash.get(_SETTINGS, None)
        if settings is None or not isinstance(item, pytest.Function):
            yield
            return
        original = item.runtest
        item.runtest = lambda: self._check(item, original, settings)  # type: ignore[method-assign]
        try:
            yield
        finally:
            del item.runtest

    def _check(self, item: pytest.Function, original: Callable[[], None],
               settings: Settings) -> None:
        refresh = _Refresher(item)
        unittest_item = hasattr(item, "_excinfo")

        def step(i: int) -> None:
            where = "" if i == 0 else f"iteration {i + 1} of the leak check"
            if i > 0:
                refresh.again(where)
            try:
                original()
            except (pytest.skip.Exception, pytest.xfail.Exception, KeyboardInterrupt):
                raise
            except BaseException as exc:
                if i > 0:
                    _note(item, exc, f"heapwatch: the test failed on {where} (it passed "
                                     f"{i} time{'s' if i != 1 else ''} before)")
                raise
            if unittest_item and getattr(item, "_excinfo", None):
                if i > 0:  # reported by pytest's unittest support after the call
                    item.add_report_section("call", "heapwatch", f"the test failed on {where} "
                                            f"(it passed {i} time{'s' if i != 1 else ''} before)")
                raise Stop

        try:
            result = run_check(step, settings, item.nodeid, refresh.note())
        except Stop:
            return
        self._record(item, result)
        if result.leaked:
            pytest.fail(result.message, pytrace=False)

    def _record(self, item: pytest.Item, result: LeakResult) -> None:
        first = result.message.splitlines()[1].strip() if result.leaked else ""
        item.user_properties.append((PROPERTY, {
            "leaked": result.leaked, "check_s": round(result.check_s, 4),
            "check_cpu_s": round(result.check_cpu_s, 4),
            "screened": result.screened, "diagnosed": result.diagnosed,
            "calls": result.iterations, "outcome": result.outcome, "first": first}))

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == PROPERTY and isinstance(value, dict):
                self.results.append((report.nodeid, value))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results:
            return
        tr = terminalreporter
        leaks = [(n, v) for n, v in self.results if v.get("leaked")]
        costs = [float(v.get("check_s", 0.0)) for _, v in self.results]
        cpu = [float(v.get("check_cpu_s", 0.0)) for _, v in self.results]
        diagnosed = sum(1 for _, v in self.results if v.get("diagnosed"))
        tr.write_sep("=", "heapwatch leakcheck")
        tr.write_line(f"checked {len(self.results)} test(s): {len(leaks)} leak, "
                      f"{diagnosed} diagnosed; checking cost per test median "
                      f"{statistics.median(costs):.3f} s ({statistics.median(cpu):.3f} s CPU), "
                      f"total {sum(costs):.1f} s")
        for nodeid, v in leaks:
            tr.write_line(f"LEAK {nodeid}: {v.get('first', '')}")


_SETTINGS = pytest.StashKey[Settings | None]()


def _note(item: pytest.Item, exc: BaseException, text: str) -> None:
    if sys.version_info >= (3, 11):
        exc.add_note(text)
    else:  # pragma: no cover - 3.10: the note goes into a report section instead
        item.add_report_section("call", "heapwatch", text)


class _Refresher:
    """Tears down and sets up again the item's function-scoped fixtures between calls, as
    pytest does between two tests. When pytest's internals do not allow it, the fixtures
    are reused and the failure message says so."""

    def __init__(self, item: pytest.Function) -> None:
        self.item = item
        self.reused: str | None = None
        self.count = 0
        # What plugins keep on the item between setup and teardown (tmp_path's record of
        # the setup report, say): a teardown removes it, the next one expects it again.
        storage = getattr(item.stash, "_storage", None)
        self.stashed: dict[Any, Any] = dict(storage) if isinstance(storage, dict) else {}
        self.finalizers = {id(fd): len(fd._finalizers) for fd in self._fixturedefs()}

    def again(self, where: str) -> None:
        if self.reused is not None:
            return
        item = self.item
        try:
            state = item.session._setupstate
            chain = item.listchain()
            init = item._initrequest
        except AttributeError as exc:
            self.reused = f"this pytest does not let heapwatch set fixtures up again ({exc})"
            return
        try:
            state.teardown_exact(_Parent(chain[:-1]))  # type: ignore[arg-type]
            init()
            state.setup(item)
            for key, value in self.stashed.items():
                if key not in item.stash:
                    item.stash[key] = value
            self._prune()
        except BaseException as exc:
            _note(item, exc, f"heapwatch: setting the test's function-scoped fixtures up "
                             f"again failed on {where}")
            raise
        self.count += 1

    def _fixturedefs(self) -> list[Any]:
        """Every fixture definition of a wider scope (also those a plugin requests by name
        at run time, as pytest-asyncio does for its loop)."""
        manager = getattr(self.item.session, "_fixturemanager", None)
        defs = getattr(manager, "_arg2fixturedefs", None) or {}
        return [fd for group in list(defs.values()) for fd in group
                if getattr(fd, "scope", "function") != "function"
                and isinstance(getattr(fd, "_finalizers", None), list)]

    def _prune(self) -> None:
        """A function-scoped fixture that uses a wider-scoped one registers its own
        ``finish`` with it each time it is set up (pytest keeps one per test until the wider
        scope ends). Setting it up for every call would grow that list by one per call:
        drop the copies this check added; the one pytest added stays, and ``finish`` of a
        fixture already torn down does nothing."""
        for fd in self._fixturedefs():
            base = self.finalizers.get(id(fd))
            fins = fd._finalizers
            if base is None or len(fins) <= base:
                continue
            extra = fins[base:]
            kept = [f for f in extra if not (
                isinstance(f, functools.partial)
                and getattr(f.func, "__name__", "") == "finish"
                and type(getattr(f.func, "__self__", None)).__name__ == "FixtureDef")]
            fins[base:] = kept

    def note(self) -> str:
        if self.reused:
            return "function-scoped fixtures were reused for every call: " + self.reused
        return "function-scoped fixtures were set up afresh for each call"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "leakcheck(iterations=None, warmup=2, ignore=(), enabled=True): run the test "
        "repeatedly and fail when a container, type or site keeps growing")
    config.pluginmanager.register(Manager(config), "heapwatch-leakcheck")


@pytest.fixture
def leakcheck(request: pytest.FixtureRequest) -> Callable[..., LeakResult]:
    """``leakcheck(fn, iterations=None, warmup=2, ignore=())`` fails the test when ``fn``
    leaks; returns the LeakResult otherwise."""
    manager = request.config.pluginmanager.get_plugin("heapwatch-leakcheck")
    assert isinstance(manager, Manager)

    def run(fn: Callable[[], Any], *args: Any, **kwargs: Any) -> LeakResult:
        try:
            settings = manager.settings(args, kwargs, "leakcheck()")
        except UsageError as exc:
            pytest.fail(f"usage error: {exc}", pytrace=False)
        result = run_check(lambda i: fn(), settings,
                           getattr(fn, "__qualname__", request.node.name))
        if result.leaked:
            pytest.fail(result.message, pytrace=False)
        return result

    return run
