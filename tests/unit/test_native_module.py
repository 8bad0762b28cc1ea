"""heapwatch._native, the module itself: it loads where it was built, and says what it holds."""

from __future__ import annotations

import os
import sys

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("HEAPWATCH_NO_NATIVE", "") not in ("", "0"),
    reason="HEAPWATCH_NO_NATIVE is set: the extension is neither built nor loaded",
)


def test_the_extension_loads_and_lists_its_jobs() -> None:
    from heapwatch import _native  # built by `pip install -e .` on a machine with gcc

    assert f"{sys.version_info[0]}.{sys.version_info[1]}" == _native.BUILT_FOR
    assert "census" in _native.JOBS
    assert _native.CENSUS_UNAVAILABLE is None
    assert callable(_native._after_fork_child)


def test_the_native_census_counts_and_lists_containers() -> None:
    from heapwatch import _native

    held = [[i] for i in range(300)]
    counts, big, wanted, total = _native.census(200, [], [id(held)])
    by_type = dict(counts)
    assert by_type[list] >= 301
    assert total == sum(by_type.values())
    assert (id(held), list, 300) in big
    assert wanted == [held]
