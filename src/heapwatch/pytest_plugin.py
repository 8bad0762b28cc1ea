"""pytest plugin: ``@pytest.mark.leakcheck(iterations=50, warmup=5)`` and the ``leakcheck``
fixture fail a test whose body leaves something growing.

Options: ``--leakcheck-iterations N``, ``--leakcheck-warmup N``, ``--no-leakcheck``; ini:
``leakcheck_iterations``, ``leakcheck_warmup``, ``leakcheck_ignore`` (glob patterns of owner
paths, types or sites). Works under pytest-xdist: each worker checks its own tests.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from heapwatch.leakcheck import LeakResult, check


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("heapwatch", "heapwatch leak checks")
    group.addoption("--leakcheck-iterations", type=int, default=None,
                    help="iterations of a leakcheck test (default: the marker's, or 50)")
    group.addoption("--leakcheck-warmup", type=int, default=None,
                    help="warm-up iterations before measuring (default: 5)")
    group.addoption("--no-leakcheck", action="store_true", default=False,
                    help="run leakcheck tests once, without checking")
    parser.addini("leakcheck_iterations", "default iterations of a leakcheck test", default="50")
    parser.addini("leakcheck_warmup", "default warm-up iterations", default="5")
    parser.addini("leakcheck_ignore", "glob patterns of paths/types/sites to ignore",
                  type="linelist", default=[])


class Manager:
    """The plugin's state for one session (registered in pytest_configure)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.disabled: bool = config.getoption("--no-leakcheck")
        self.ignore: list[str] = list(config.getini("leakcheck_ignore"))

    def settings(self, marker_kwargs: dict[str, Any]) -> tuple[int, int, list[str]]:
        cfg = self.config
        iterations = (cfg.getoption("--leakcheck-iterations") or marker_kwargs.get("iterations")
                      or int(cfg.getini("leakcheck_iterations")))
        warmup = cfg.getoption("--leakcheck-warmup")
        if warmup is None:
            warmup = marker_kwargs.get("warmup", int(cfg.getini("leakcheck_warmup")))
        ignore = [*self.ignore, *marker_kwargs.get("ignore", ())]
        return int(iterations), int(warmup), ignore

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool | None:
        marker = pyfuncitem.get_closest_marker("leakcheck")
        if marker is None or self.disabled:
            return None
        fn = pyfuncitem.obj
        if inspect.iscoroutinefunction(fn):
            pytest.fail("leakcheck does not support async tests yet: use the leakcheck "
                        "fixture inside a sync wrapper", pytrace=False)
        names = pyfuncitem._fixtureinfo.argnames
        kwargs = {n: pyfuncitem.funcargs[n] for n in names}
        iterations, warmup, ignore = self.settings(dict(marker.kwargs))
        result = check(lambda: fn(**kwargs), iterations, warmup, ignore, name=pyfuncitem.name)
        if result.leaked:
            pytest.fail(result.message, pytrace=False)
        return True


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "leakcheck(iterations=50, warmup=5, ignore=()): run the test body repeatedly and fail "
        "when a container, type or site keeps growing")
    config.pluginmanager.register(Manager(config), "heapwatch-leakcheck")


@pytest.fixture
def leakcheck(request: pytest.FixtureRequest) -> Callable[..., LeakResult]:
    """``leakcheck(fn, iterations=50, warmup=5, ignore=())`` fails the test when ``fn``
    leaks; returns the LeakResult otherwise."""
    manager = request.config.pluginmanager.get_plugin("heapwatch-leakcheck")
    assert isinstance(manager, Manager)

    def run(fn: Callable[[], Any], **kwargs: Any) -> LeakResult:
        iterations, warmup, ignore = manager.settings(kwargs)
        result = check(fn, iterations, warmup, ignore,
                       name=getattr(fn, "__qualname__", request.node.name))
        if result.leaked:
            pytest.fail(result.message, pytrace=False)
        return result

    return run
