"""Who holds it: the chain from a module global (or a thread's stack) to a growing container,
and what the container holds, as a picture.

The chain is the one the owner walk already followed forward from the module globals
(the finding's owner path), so drawing it needs no live objects and never searches for
referrers inside the target. With graphviz's ``dot`` on PATH the picture is an SVG; without
it, the same chain as indented text. (objgraph draws chains too, but only from live
objects, which a report rendered after the run does not have.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from heapwatch.model import Finding

_ROOT = re.compile(r"<thread [^>]*>|[^.\[]+")
_STEP = re.compile(
    r"\.<closure>\.(?P<cell>[^.\[]+)"
    r"|\.(?P<lru><lru_cache>)"
    r"|\.(?P<attr>[^.\[]+)"
    r"|\[(?P<key>'(?:[^'\\]|\\.)*'|…|-?\d+)\]"
)


@dataclass(frozen=True)
class Link:
    """One step of the chain: the text shown and what kind of step it is."""

    text: str
    kind: str  # module | thread | attribute | key | closure cell | lru_cache | container | items


def chain(f: Finding) -> list[Link]:
    """The links from the root to the container and its items; empty when the finding has
    no owner path (a type or a site, or a container reached from nowhere)."""
    path = f.path or ""
    if f.kind != "container" or not path or path.startswith("<unreachable"):
        return []
    m = _ROOT.match(path)
    if m is None:
        return []
    root = m.group(0)
    links = [Link(root, "thread" if root.startswith("<thread") else "module")]
    pos = m.end()
    while pos < len(path):
        s = _STEP.match(path, pos)
        if s is None:  # a path this parser does not know: show the rest as one step
            links.append(Link(path[pos:], "attribute"))
            break
        if s.group("cell"):
            links.append(Link(f".<closure>.{s.group('cell')}", "closure cell"))
        elif s.group("lru"):
            links.append(Link(".<lru_cache>", "lru_cache"))
        elif s.group("attr"):
            links.append(Link(f".{s.group('attr')}", "attribute"))
        else:
            links.append(Link(f"[{s.group('key')}]", "key"))
        pos = s.end()
    last = links[-1]
    grown = f"{f.type or 'container'}, {f.growth.first:,.0f} → {f.growth.last:,.0f} items"
    links[-1] = Link(f"{last.text}  ({grown})", "container")
    if f.items:
        first = f.items[0]
        where = f", allocated at {first['site']}" if first.get("site") else ""
        links.append(Link(f"{first['type']} items{where}", "items"))
    return links


def as_text(links: list[Link]) -> str:
    """The chain as indented lines (what a terminal or Markdown shows)."""
    out = []
    for depth, link in enumerate(links):
        lead = "" if depth == 0 else "   " * (depth - 1) + "└─ "
        note = f"   [{link.kind}]" if link.kind in ("module", "thread", "closure cell",
                                                    "lru_cache") else ""
        out.append(f"{lead}{link.text}{note}")
    return "\n".join(out)


def _dot_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


_FILL = {"module": "#e0e7ff", "thread": "#e0e7ff", "container": "#fee2e2", "items": "#fef3c7"}


def as_dot(links: list[Link]) -> str:
    """The chain as a graphviz digraph, left to right."""
    lines = ["digraph holders {", '  rankdir=LR; bgcolor="transparent";',
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11, '
             'fillcolor="#f0f4f8", color="#9aa5b1"];', '  edge [color="#7b8794"];']
    for i, link in enumerate(links):
        label = _dot_label(link.text)
        if link.kind in ("module", "thread", "closure cell", "lru_cache"):
            label += f"\\n({_dot_label(link.kind)})"
        fill = _FILL.get(link.kind, "#f0f4f8")
        lines.append(f'  n{i} [label="{label}", fillcolor="{fill}"];')
    for i in range(len(links) - 1):
        verb = "holds" if links[i + 1].kind == "items" else ""
        lines.append(f'  n{i} -> n{i + 1}' + (f' [label="{verb}", fontsize=9]' if verb else "")
                     + ";")
    lines.append("}")
    return "\n".join(lines) + "\n"


def svg(links: list[Link], timeout: float = 10.0) -> str | None:
    """The picture as SVG text, or None when ``dot`` is missing or fails."""
    exe = shutil.which("dot")
    if exe is None or not links:
        return None
    try:
        proc = subprocess.run([exe, "-Tsvg"], input=as_dot(links), capture_output=True,
                              text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0 or "<svg" not in proc.stdout:
        return None
    return proc.stdout[proc.stdout.index("<svg"):]  # no XML prolog or doctype inside HTML
