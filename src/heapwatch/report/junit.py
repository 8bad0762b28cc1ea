"""JUnit XML for CI: one test case per check (the leak verdict, each budget in each
scope), failures carrying the finding's title and evidence."""

from __future__ import annotations

import io
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from heapwatch.rundir import write_file


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
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buf = io.BytesIO()
    ET.ElementTree(root).write(buf, encoding="utf-8", xml_declaration=True)
    return write_file(path, buf.getvalue())
