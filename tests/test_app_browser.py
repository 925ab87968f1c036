"""The app in headless Chromium against the real default model (Gemma 3 270M): a deep link to a
page of a fresh server; the main flow (pick a fact, find its neurons, apply a MEMLA edit) with
reloads on the way that must bring back the fact, the settings and, from the disk cache, the
neurons; a benchmark found again after a reload and stopped from there. Full-page screenshots of
every step go to ``test-artifacts/``.

One server for the module (the model loads once); the deep-link test runs first, on the fresh
server. Uses the ``MEMLA_CACHE`` the test run was started with (where the converted default model
lives), not the per-test cache the autouse fixture sets up; the benchmark's results file gets a
name of its own there and is removed afterwards.
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
IG_STEPS = "4"  # the paper's 20 would take minutes on a CPU
LONG = 15 * 60 * 1000  # ms: a first run converts the default model (about two minutes) and computes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MEMLA_CACHE", "MEMLA_APP_MODEL")}
    if USER_CACHE:
        env["MEMLA_CACHE"] = USER_CACHE
    return env


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    log_path = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    port = _free_port()
    log = open(log_path, "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=_server_env(), stdout=log, stderr=subprocess.STDOUT,
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
                pytest.fail(f"streamlit did not start: {log_path.read_text()[-2000:]}")
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
def _browser_page(height: int = 1400, **options) -> Iterator:
    """A page of headless Chromium, 1400 px wide; the browser is closed afterwards, even on failure."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": height}, **options)
        finally:
            browser.close()


def _screenshot(page, name: str) -> None:
    """The whole page in ``test-artifacts/browser-<name>.png``. Streamlit scrolls its main area
    inside the window, so a plain full-page screenshot stops at the window's height: the window is
    made as tall as the content for the shot."""
    viewport = page.viewport_size
    height = page.evaluate(
        "() => Math.max(document.body.scrollHeight, ...Array.from(document.querySelectorAll("
        "'[data-testid=stMain], [data-testid=stAppViewContainer], [data-testid=stSidebarContent]'),"
        " e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": viewport["width"], "height": min(max(height, viewport["height"]), 12000)})
    page.wait_for_timeout(700)  # charts re-layout to the new size
    page.screenshot(path=str(ARTIFACTS / f"browser-{name}.png"), full_page=True)
    page.set_viewport_size(viewport)


def _go(page, link: str) -> None:
    page.get_by_role("link", name=link).click()
    _wait_idle(page)


def _set_number(page, label: str, value: str) -> None:
    box = page.get_by_role("spinbutton", name=label)
    box.fill(value)
    box.press("Enter")
    _wait_idle(page)


def _metric(page, label: str) -> str:
    return page.locator("[data-testid=stMetric]").filter(has_text=label).locator("[data-testid=stMetricValue]").inner_text()


def test_deep_link_to_a_page_on_a_fresh_server(app_url):
    """The first request of a fresh server may be a page's own URL (a bookmark, a shared link).
    First in this module: the server is fresh only for it."""
    from playwright.sync_api import expect

    with _browser_page() as page:
        page.goto(f"{app_url}/run-benchmark")
        _wait_idle(page)
        expect(page.get_by_role("heading", name="Benchmark", exact=True)).to_be_visible()
        assert page.get_by_text("Page not found").count() == 0
        page.get_by_role("tab", name="Paper tables").click()
        expect(page.get_by_text("ES, edits made in en: method × target language")).to_be_visible()
        _screenshot(page, "benchmark")


def test_main_flow_survives_reloads(app_url):
    """Pick a fact, find its neurons, apply a MEMLA edit; a reload on the way (or the same link in a
    new tab) brings back the fact and source language, the IG and edit settings from the URL, and
    the neurons from the disk cache. The edit itself is this session's: a reload asks for it again."""
    from playwright.sync_api import expect

    with _browser_page(accept_downloads=True) as page:
        # The default model loads by itself; the fact and source language go into the URL.
        page.goto(f"{app_url}/choose-fact")
        _wait_idle(page)
        expect(page.get_by_text(re.compile("gemma3-270m.? on "))).to_be_visible(timeout=LONG)  # sidebar: loaded
        box = page.get_by_role("combobox", name=re.compile("Fact to work on"))
        box.click()
        box.fill("France")
        page.get_by_role("option", name=re.compile(FACT)).click()
        _wait_idle(page)
        assert f"fact={FACT}" in page.url and "source=en" in page.url
        _screenshot(page, "facts")
        page.reload()
        _wait_idle(page)
        expect(page.get_by_role("heading", name=re.compile(f"{FACT}: France"))).to_be_visible(timeout=LONG)
        expect(page.get_by_text(re.compile("knows this fact in \\d+ of 12 shown languages"))).to_be_visible()
        expect(page.get_by_text(re.compile("gemma3-270m.? on "))).to_be_visible()
        _screenshot(page, "reload-facts")
        # CJK and Thai side by side (a missing font shows boxes in the screenshot).
        _multiselect_only(page, "Languages", "Japanese (ja)", "Korean (ko)", "Thai (th)")
        _wait_idle(page)
        expect(page.get_by_text(re.compile("knows this fact in \\d+ of 3 shown languages"))).to_be_visible()
        _screenshot(page, "facts-cjk-thai")

        # Neurons with few IG steps (written to the URL, and used by the edit below).
        _go(page, "3 · Neurons")
        _set_number(page, "IG steps m", IG_STEPS)
        page.get_by_role("button", name="Find neurons").click()
        _wait_idle(page)
        expect(page.locator("[data-testid=stMetric]").first).to_be_visible(timeout=LONG)
        found = (_metric(page, "Language-specific neurons"), _metric(page, "Language-independent neurons"))
        assert f"ig_steps={IG_STEPS}" in page.url
        _screenshot(page, "neurons")

        _go(page, "4 · Edit")
        page.get_by_role("button", name="Apply edit").click()
        _wait_idle(page)
        expect(page.get_by_role("heading", name="Before and after the edit")).to_be_visible(timeout=LONG)
        expect(page.locator("[data-testid=stDataFrame]").first).to_be_visible()
        _screenshot(page, "edit")
        # The table is drawn on a canvas; its CSV download carries the same rows.
        with page.expect_download() as download:
            page.get_by_role("button", name="Download MEMLA before and after (CSV)").click()
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
        assert [row["target language"] for row in rows] == ["en", "zh", "fr", "de"]
        assert all(row["answer after"] for row in rows)
        assert float(rows[0]["P(new) after"]) > float(rows[0]["P(new) before"])

        # The edit goes onto the session's edit stack (issue 14): the table of which stacked edits
        # still hold lists it, scored on the stacked model; revert all empties the stack again.
        page.get_by_role("button", name="Add to stack").click()
        _wait_idle(page)
        expect(page.get_by_role("heading", name="Which stacked edits still hold")).to_be_visible(timeout=LONG)
        expect(page.get_by_role("button", name="Revert all stacked edits")).to_be_visible()
        expect(page.get_by_text(re.compile(r"Edit stack: 1 edit"))).to_be_visible()
        _screenshot(page, "edit-stack")
        page.get_by_role("button", name="Revert all stacked edits").click()
        _wait_idle(page)
        expect(page.get_by_role("button", name="Revert all stacked edits")).to_have_count(0, timeout=LONG)

        # Where MEMLA has tuned values, its preset set the shared threshold: the Neurons page shows the
        # sets at it now (their attributions came from the cache), and a reload must bring those back.
        _go(page, "3 · Neurons")
        expect(page.locator("[data-testid=stMetric]").first).to_be_visible(timeout=LONG)
        found = (_metric(page, "Language-specific neurons"), _metric(page, "Language-independent neurons"))
        _go(page, "4 · Edit")
        expect(page.get_by_role("heading", name="Edit the fact")).to_be_visible(timeout=LONG)

        # Reload on the Edit page: the fact, the method and the IG steps are back; the edit is not.
        page.reload()
        _wait_idle(page)
        expect(page.get_by_role("heading", name="Edit the fact")).to_be_visible(timeout=LONG)
        expect(page.get_by_text(re.compile("The edit: “The capital of France is”"))).to_be_visible()
        expect(_chosen(page, "Methods (several = compared side by side on this fact)")).to_have_text(["MEMLA"])
        page.get_by_text("Settings", exact=True).click()
        expect(page.get_by_role("spinbutton", name="IG steps m")).to_have_value(IG_STEPS)
        expect(page.get_by_role("button", name="Apply edit")).to_be_enabled()
        _screenshot(page, "reload-edit")

        # The neurons come back from the disk cache, without pressing Find neurons.
        _go(page, "3 · Neurons")
        expect(page.get_by_text("Taken from the on-disk cache")).to_be_visible(timeout=LONG)
        assert (_metric(page, "Language-specific neurons"), _metric(page, "Language-independent neurons")) == found
        expect(page.get_by_role("spinbutton", name="IG steps m")).to_have_value(IG_STEPS)
        assert f"fact={FACT}" in page.url and f"ig_steps={IG_STEPS}" in page.url
        _screenshot(page, "reload-neurons")


def _chosen(page, label: str):
    """The options chosen in a multiselect (its tags)."""
    box = page.get_by_role("combobox", name=label, exact=True)
    return page.get_by_test_id("stMultiSelect").filter(has=box).locator("[data-tag]")


def _multiselect_only(page, label: str, *options: str) -> None:
    """Replace a multiselect's choices by these options (each typed, then picked from the list)."""
    from playwright.sync_api import expect

    box = page.get_by_role("combobox", name=label, exact=True)
    if _chosen(page, label).count():
        page.get_by_test_id("stMultiSelect").filter(has=box).get_by_role("button", name="Clear all").click()
    for option in options:
        box.click()
        box.fill(option)
        page.get_by_role("option", name=option).first.click()
    box.press("Escape")
    expect(_chosen(page, label)).to_have_text(list(options))


def test_benchmark_found_again_after_a_reload_and_stopped(app_url, monkeypatch):
    """A small benchmark (FT-L, English only) keeps running through a reload: the page finds it
    again by its results file (the URL's bench=), shows its progress and stops it."""
    from playwright.sync_api import expect

    from memla_core.bench import results_dir

    name = f"browser-test-{os.getpid()}-{int(time.time())}"
    try:
        with _browser_page() as page:
            page.goto(f"{app_url}/run-benchmark")
            _wait_idle(page)
            expect(page.get_by_role("button", name="Start the benchmark")).to_be_visible(timeout=LONG)
            _multiselect_only(page, "Methods", "FT-L")
            _multiselect_only(page, "Evaluated in (target languages)", "English (en)")
            # More facts than the run gets through before Stop: it must still be running after the reload.
            page.get_by_role("spinbutton", name="Number of facts (the first N)").fill("20")
            page.get_by_role("spinbutton", name="Edit steps").fill("3")
            page.get_by_role("textbox", name="Results file").fill(name)
            _screenshot(page, "bench-form")
            page.get_by_role("button", name="Start the benchmark").click()
            expect(page.get_by_role("button", name="Stop the benchmark")).to_be_visible(timeout=LONG)
            expect(page.get_by_text(re.compile("^Running: "))).to_be_visible()
            assert f"bench={name}" in page.url
            _screenshot(page, "bench-running")

            page.reload()
            expect(page.get_by_role("button", name="Stop the benchmark")).to_be_visible(timeout=LONG)
            expect(page.get_by_text(re.compile("^Running: "))).to_be_visible()
            expect(page.get_by_text(re.compile(rf"\d+/20 facts, .*{name}\.csv"))).to_be_visible()
            _screenshot(page, "bench-reattached")
            page.get_by_role("button", name="Stop the benchmark").click()
            expect(page.get_by_text("The last run was stopped")).to_be_visible(timeout=LONG)
            expect(page.get_by_role("button", name="Stop the benchmark")).to_have_count(0)
            # The form is back with the run's values, ready to resume it.
            expect(page.get_by_role("textbox", name="Results file")).to_have_value(name)
            _screenshot(page, "bench-stopped")
    finally:  # only this test's own files (its results file, parts, lock), where the server wrote them
        if USER_CACHE:
            monkeypatch.setenv("MEMLA_CACHE", USER_CACHE)
        else:
            monkeypatch.delenv("MEMLA_CACHE", raising=False)
        for path in results_dir().glob(f"{name}*"):
            path.unlink()
