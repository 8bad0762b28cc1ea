"""JUnit XML for CI: one test case per check (the leak verdict, each budget in each
scope), failures carrying the finding's title and evidence."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    classname: str
    failure: str | None = None  # one line
    details: str = ""
    skipped: str | None = None


def write_junit(path: str, suite: str, cases: list[Case], seconds: float) -> str:
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)),
                       failures=str(sum(c.failure is not None for c in cases)),
                       skipped=str(sum(c.skipped is not None for c in cases)),
                       errors="0", time=f"{seconds:.3f}")
    for c in cases:
        tc = ET.SubElement(ts, "testcase", name=c.name, classname=c.classname, time="0")
        if c.failure is not None:
            f = ET.SubElement(tc, "failure", message=c.failure, type="heapwatch")
            f.text = c.details
        elif c.skipped is not None:
            ET.SubElement(tc, "skipped", message=c.skipped)
    tmp = path + ".tmp"
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)
    return path
