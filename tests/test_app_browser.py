"""The app in headless Chromium against the real default model (Gemma 3 270M): pick a fact, apply
a MEMLA edit, read the before/after table. Takes about two minutes on a laptop CPU (IG steps set
to 4 in the UI); screenshots go to ``test-artifacts/``.

Uses the ``MEMLA_CACHE`` the test run was started with (where the converted default model lives),
not the per-test cache the autouse fixture sets up.
"""

from __future__ import annotations

import csv
import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
USER_CACHE = os.environ.get("MEMLA_CACHE")  # read at import, before the autouse fixture replaces it
FACT = "geo-capital-france"
LONG = 15 * 60 * 1000  # ms: a first run converts the default model (about two minutes) and computes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app_url(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    env = {k: v for k, v in os.environ.items() if k not in ("MEMLA_CACHE", "MEMLA_APP_MODEL")}
    if USER_CACHE:
        env["MEMLA_CACHE"] = USER_CACHE
    port = _free_port()
    log = open(tmp_path / "streamlit.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                pytest.fail(f"streamlit did not start: {(tmp_path / 'streamlit.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _wait_idle(page) -> None:
    """Until no script run has been going for 2 s (a run may start a moment after the click)."""
    quiet = 0
    for _ in range(LONG // 500):
        page.wait_for_timeout(500)
        quiet = quiet + 1 if page.locator("[data-testid=stStatusWidget]").count() == 0 else 0
        if quiet >= 4:
            return
    raise AssertionError("the app was still running after 15 minutes")


@contextmanager
def _browser_page(height: int, **options) -> Iterator:
    """A page of headless Chromium, 1400 px wide; the browser is closed afterwards, even on failure."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": height}, **options)
        finally:
            browser.close()


def test_pick_fact_and_apply_an_edit(app_url):
    from playwright.sync_api import expect

    with _browser_page(height=2000, accept_downloads=True) as page:
        page.goto(app_url)
        _wait_idle(page)
        page.get_by_role("button", name="Load model").click()
        _wait_idle(page)
        expect(page.get_by_text("Layers × MLP neurons")).to_be_visible(timeout=LONG)

        page.get_by_role("link", name="2 · Facts").click()
        _wait_idle(page)
        box = page.get_by_role("combobox", name=re.compile("Fact to work on"))
        box.click()
        box.fill("France")
        page.get_by_role("option", name=re.compile(FACT)).click()
        _wait_idle(page)
        expect(page.get_by_role("heading", name=re.compile(f"{FACT}: France"))).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "browser-facts.png"), full_page=True)

        page.get_by_role("link", name="4 · Edit").click()
        _wait_idle(page)
        page.get_by_text("Settings", exact=True).click()
        steps = page.get_by_role("spinbutton", name="IG steps m")
        steps.fill("4")
        steps.press("Enter")
        _wait_idle(page)
        page.get_by_role("button", name="Apply edit").click()
        _wait_idle(page)
        expect(page.get_by_role("heading", name="Before and after the edit")).to_be_visible(timeout=LONG)
        expect(page.locator("[data-testid=stDataFrame]").first).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "browser-edit.png"), full_page=True)

        # The table is drawn on a canvas; its CSV download carries the same rows.
        with page.expect_download() as download:
            page.get_by_role("button", name="Download MEMLA before and after (CSV)").click()
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
        assert [row["target language"] for row in rows] == ["en", "zh", "fr", "de"]
        assert all(row["answer after"] for row in rows)
        assert float(rows[0]["P(new) after"]) > float(rows[0]["P(new) before"])


def test_deep_link_to_a_page_on_a_fresh_server(app_url):
    """The first request of a fresh server may be a page's own URL (a bookmark, a shared link)."""
    from playwright.sync_api import expect

    with _browser_page(height=1400) as page:
        page.goto(f"{app_url}/run-benchmark")
        _wait_idle(page)
        expect(page.get_by_role("heading", name="Benchmark", exact=True)).to_be_visible()
        assert page.get_by_text("Page not found").count() == 0
        page.get_by_role("tab", name="Paper tables").click()
        expect(page.get_by_text("ES, edits made in en: method × target language")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "browser-benchmark.png"), full_page=True)


def test_reload_keeps_model_fact_and_source(app_url):
    """The default model loads by itself; a reload (or the same link in a new tab) restores the fact
    and source language from the URL, and marks what the unedited model knows."""
    from playwright.sync_api import expect

    with _browser_page(height=2000) as page:
        page.goto(f"{app_url}/choose-fact")
        _wait_idle(page)
        expect(page.get_by_text(re.compile("gemma3-270m.? on "))).to_be_visible(timeout=LONG)  # sidebar: loaded
        box = page.get_by_role("combobox", name=re.compile("Fact to work on"))
        box.click()
        box.fill("France")
        page.get_by_role("option", name=re.compile(FACT)).click()
        _wait_idle(page)
        assert f"fact={FACT}" in page.url and "source=en" in page.url

        page.reload()
        _wait_idle(page)
        expect(page.get_by_role("heading", name=re.compile(f"{FACT}: France"))).to_be_visible(timeout=LONG)
        expect(page.get_by_text(re.compile("knows this fact in \\d+ of 12 shown languages"))).to_be_visible()
        expect(page.get_by_text(re.compile("gemma3-270m.? on "))).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "browser-reload-facts.png"), full_page=True)
