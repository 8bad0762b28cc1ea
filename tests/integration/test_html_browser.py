"""report.html of a real leaking run, opened in headless Chromium: every chart loads, the
console stays clean, nothing is fetched, and target strings show as text."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from typing import Any

import pytest
from helpers import SCENARIOS, heapwatch

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ODD_ARG = '<b>&"x"</b>'
SHOT_COPY = "/tmp/heapwatch-report.png"


def leaking_run(tmp_path: Any) -> str:
    """``heapwatch run`` of the event_bus scenario for 8 s, through a wrapper so that the
    recorded command carries an argument full of markup."""
    wrapper = tmp_path / "event_bus_svc.py"
    scenario = os.path.join(SCENARIOS, "event_bus", "event_bus.py")
    wrapper.write_text(textwrap.dedent(f"""
        import runpy, sys
        sys.path.insert(0, {os.path.dirname(scenario)!r})
        sys.argv = [{scenario!r}]
        runpy.run_path({scenario!r}, run_name="__main__")
    """))
    out = str(tmp_path / "run")
    proc = heapwatch("run", "--interval", "0.5", "--duration", "8s", "--out", out, "--",
                     sys.executable, str(wrapper), ODD_ARG)
    assert proc.returncode == 0, proc.stderr
    assert os.path.exists(os.path.join(out, "report.html")), proc.stderr
    return out


@pytest.mark.slow
def test_report_html_in_headless_chromium(tmp_path: Any) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    out = leaking_run(tmp_path)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.get("file://" + os.path.join(out, "report.html"))
        assert driver.execute_script("return document.readyState") == "complete"
        images = driver.execute_script(
            "return Array.from(document.images, i => [i.complete, i.naturalWidth, i.alt])")
        assert len(images) >= 3  # memory, growth, a finding (a short unmarked run: no phases)
        broken = [alt for complete, width, alt in images if not complete or width <= 0]
        assert not broken, f"charts that did not load: {broken}"
        fetched = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        assert not [u for u in fetched if not u.startswith("data:")], fetched
        logs = driver.get_log("browser")  # type: ignore[no-untyped-call]  # selenium: no hints
        severe = [e for e in logs if e.get("level") == "SEVERE"]
        assert not severe, severe

        text = driver.find_element("tag name", "body").text
        assert ODD_ARG in text
        assert driver.find_elements("css selector", "script, b") == []
        assert text.lstrip().startswith("HEAPWATCH VERDICT\nLeak")
        assert "bus.BUS._listeners" in text

        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1100, int(height) + 120)
        shot = str(tmp_path / "report.png")
        assert driver.save_screenshot(shot)
    finally:
        driver.quit()
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    try:
        shutil.copyfile(shot, SHOT_COPY)
    except OSError:
        pass  # a convenience copy for a person; the test's own copy is in tmp_path
