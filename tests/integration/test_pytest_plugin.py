"""The pytest plugin, tested with pytester in a fresh pytest run per case."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

LEAKY = '''
import pytest

_REGISTRY = []

class Subscriber:
    def __init__(self, n):
        self.n = n

@pytest.mark.leakcheck(iterations=30, warmup=3)
def test_subscribe():
    _REGISTRY.append(Subscriber(len(_REGISTRY)))  # ALLOC
'''

STEADY = '''
import pytest

_CACHE = {}

@pytest.mark.leakcheck(iterations=30, warmup=3)
def test_cache(tmp_path):
    for i in range(20):
        _CACHE[i % 10] = [i] * 5
    assert len(_CACHE) == 10
'''

STDLIB_HEAVY = '''
import logging, re, typing, functools, linecache, json, dataclasses
import pytest

counter = {"n": 0}

@pytest.mark.leakcheck(iterations=30, warmup=3)
def test_uses_stdlib_caches():
    counter["n"] += 1
    n = counter["n"]
    assert re.compile(f"item-{n}-[a-z]+").match(f"item-{n}-abc")
    typing.get_type_hints(json.JSONDecoder.__init__)
    alias = typing.List[typing.Tuple[int, str]]
    logging.getLogger(f"app.module{n % 7}").debug("x %s", n)
    linecache.getline(json.__file__, n % 50 + 1)
    dataclasses.make_dataclass(f"D{n % 5}", [("a", int)])
    assert alias
'''

FIXTURE = '''
_SEEN = set()

def test_with_fixture(leakcheck):
    def handler():
        _SEEN.add(object())
    leakcheck(handler, iterations=25, warmup=2)
'''


def test_a_leaking_body_fails_naming_the_container(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leaky=LEAKY)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "test_leaky._REGISTRY" in text, text
    assert "items/iteration" in text and "test_leaky.Subscriber" in text


def test_a_steady_body_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_steady=STEADY)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_stdlib_caches_do_not_fail_a_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_stdlib=STDLIB_HEAVY)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fixture=FIXTURE)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "test_fixture._SEEN" in result.stdout.str()


def test_disabled_and_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leaky=LEAKY, test_steady=STEADY)
    off = pytester.runpytest_subprocess("-q", "--no-leakcheck", "-p", "no:cacheprovider")
    off.assert_outcomes(passed=2)
    xdist = pytester.runpytest_subprocess("-q", "-n", "2", "-p", "no:cacheprovider")
    xdist.assert_outcomes(passed=1, failed=1)
