"""Who holds it: the chain from a module global to a growing container, as text and SVG."""

from __future__ import annotations

import shutil

import pytest

from heapwatch.model import Finding, Growth
from heapwatch.report import holders


def finding(path: str, kind: str = "container") -> Finding:
    return Finding(id="F1", kind=kind, severity="high", title="t",
                   growth=Growth(10, 500, "items", 100.0, "9/9 intervals"), confidence=1.0,
                   evidence="", type="dict", path=path, site="app.py:38",
                   items=({"type": "app.Entry", "site": "app.py:38", "sampled": 8},))


def test_the_chain_follows_the_owner_path_forward_to_the_items() -> None:
    links = holders.chain(finding("app.REGISTRY.handlers['users'].<closure>.seen.<lru_cache>"))
    assert [(lk.text.split("  ")[0], lk.kind) for lk in links] == [
        ("app", "module"), (".REGISTRY", "attribute"), (".handlers", "attribute"),
        ("['users']", "key"), (".<closure>.seen", "closure cell"),
        (".<lru_cache>", "container"), ("app.Entry items, allocated at app.py:38", "items")]
    assert "dict, 10 → 500 items" in links[-2].text
    text = holders.as_text(links)
    assert text.splitlines()[0] == "app   [module]"
    assert text.splitlines()[-1].strip().startswith("└─ app.Entry items")


def test_threads_and_hidden_keys() -> None:
    links = holders.chain(finding("<thread poller>.poll_loop.seen[…]"))
    assert links[0] == holders.Link("<thread poller>", "thread")
    assert links[-2].text.startswith("[…]")


def test_no_chain_without_an_owner_path() -> None:
    assert holders.chain(finding("")) == []
    assert holders.chain(finding("<unreachable from module globals>")) == []
    assert holders.chain(finding("app.X", kind="type")) == []


def test_dot_escapes_what_it_is_given() -> None:
    dot = holders.as_dot(holders.chain(finding('app.X[\'a"b\']')))
    assert '\\"' in dot and "n0 -> n1" in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz dot is not installed")
def test_svg_with_graphviz() -> None:
    svg = holders.svg(holders.chain(finding("app.REGISTRY._items")))
    assert svg is not None and svg.startswith("<svg") and "REGISTRY" in svg
    assert "<script" not in svg


def test_without_dot_the_report_shows_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert holders.svg(holders.chain(finding("app.REGISTRY._items"))) is None
