"""Open a built report in Debian's chromium (driven by Playwright from PyPI, no browser download) as
a reader would, 1280 px wide, and say what is wrong with it: the checks of tests/test_report_browser.py."""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from zagreus_utils.pipeline import paths
from zagreus_utils.results.report_page import FOLD_ROWS

WIDTH, HEIGHT = 1280, 800  # one screen
NARROW = 700  # a narrow window: the contents stay one click away
MAX_SCREENS = 8  # the folded first view is shorter than this many screens
# a path under one of these top folders is a machine path (what a reader of a shared page cannot open)
MACHINE_PATH = re.compile(r"(?<![\w.~$-])/(?:home|root|tmp|work|Users|mnt|scratch|srv|var|opt)/[\w.-]")
DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")


def chromium() -> str:
    """The system chromium, or a skip (a failure in CI, which installs it: .ci/run)."""
    found = os.environ.get("ZAGREUS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _absent("Playwright is not installed (pip install -e '.[dev]')")
    if not found:
        _absent("Debian's chromium is not installed (apt-get install chromium; ZAGREUS_CHROMIUM names another)")
    return found


def _absent(why: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why}: CI must have it (.ci/run installs it)")
    pytest.skip(why)


def machine_folders(runs: Path) -> list[str]:
    """The folders of this machine that must not appear in a shared page."""
    folders = {str(runs), str(runs.resolve()), str(paths.REPO_ROOT), str(Path.home()), sys.prefix,
               tempfile.gettempdir()}
    return sorted(f for f in folders if len(f) > 1)


def check_page(html_file: Path, runs: Path, screenshots: Path | None = None, section: str | None = None) -> dict:
    """Open ``html_file`` in chromium and measure it; returns the problems found (empty lists when
    none) and the measures. ``screenshots``: save the first screen and ``section`` opened there."""
    from playwright.sync_api import sync_playwright

    html = html_file.read_text(encoding="utf-8")
    text_outside_uris = DATA_URI.sub("", html)
    out: dict = {"requests_blocked": [], "page_errors": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})

            def offline(route):  # the page must open with no network: only itself and data: URIs
                url = route.request.url
                if url.startswith(("file:", "data:", "about:")):
                    return route.continue_()
                out["requests_blocked"].append(url)
                return route.abort()

            page.route("**/*", offline)
            page.on("pageerror", lambda exc: out["page_errors"].append(str(exc)))
            page.goto(html_file.resolve().as_uri(), wait_until="load")
            out["folded_height"] = page.evaluate("document.documentElement.scrollHeight")
            out["details_total"] = page.evaluate("document.querySelectorAll('details').length")
            out["details_open"] = page.evaluate("document.querySelectorAll('details[open]').length")
            out["toc_sticky"] = page.evaluate(
                "(document.querySelector('nav.toc') && getComputedStyle(document.querySelector('nav.toc')).position)")
            out["long_tables_open"] = page.evaluate(f"""() => [...document.querySelectorAll('table')]
                .filter(t => t.tBodies.length && [...t.tBodies].reduce((n, b) => n + b.rows.length, 0) > {FOLD_ROWS}
                             && !t.closest('details'))
                .map(t => (t.closest('section') || {{}}).id)""")
            if screenshots is not None:
                screenshots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshots / "first-screen.png"))
            out["missing_targets"] = page.evaluate("""() => [...document.querySelectorAll('a[href^="#"]')]
                .map(a => decodeURIComponent(a.getAttribute('href').slice(1)))
                .filter(id => !document.getElementById(id))""")
            out["file_links"] = page.evaluate("""() => [...document.querySelectorAll('a[href]')]
                .map(a => a.getAttribute('href')).filter(h => !h.startsWith('#'))""")
            if section is not None:  # what a reader sees after following a link of the first screen
                page.click(f'a[href="#{section}"] >> nth=0')
                page.wait_for_timeout(300)
                out["section_opened"] = page.evaluate(
                    f"document.querySelector('#{section} > details').open")
                if screenshots is not None:
                    page.locator(f"#{section}").screenshot(path=str(screenshots / "stage-section.png"))
            page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
            page.wait_for_timeout(200)
            out["broken_images"] = page.evaluate("""() => [...document.images]
                .filter(i => !i.complete || i.naturalWidth === 0 || !i.src.startsWith('data:')
                             || i.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
                .map(i => i.alt || i.src.slice(0, 40))""")
            out["images"] = page.evaluate("document.images.length")
            out["tables"] = page.evaluate("document.querySelectorAll('table').length")
            out["cut_tables"] = page.evaluate("""() => {
                const vw = document.documentElement.clientWidth;
                const scrolls = el => { for (let e = el.parentElement; e; e = e.parentElement) {
                    const o = getComputedStyle(e).overflowX;
                    if ((o === 'auto' || o === 'scroll') && e.getBoundingClientRect().right <= vw + 1) return true; }
                    return false; };
                return [...document.querySelectorAll('table')]
                    .filter(t => t.getBoundingClientRect().right > vw + 1 && !scrolls(t))
                    .map(t => (t.closest('details, section') || {}).id || t.outerHTML.slice(0, 80)); }""")
            out["page_scrolls_sideways"] = page.evaluate(
                "document.documentElement.scrollWidth > document.documentElement.clientWidth + 1")
            visible = page.evaluate("document.body.innerText")
            page.set_viewport_size({"width": NARROW, "height": HEIGHT})  # a phone or half a screen
            out["contents_narrow"] = page.evaluate("""() => {
                const toc = document.querySelector('nav.toc'), back = document.querySelector('a.to-contents');
                if (toc && getComputedStyle(toc).position === 'sticky') return 'sticky contents';
                if (back && getComputedStyle(back).position === 'fixed' && back.offsetWidth > 0
                    && document.getElementById(back.getAttribute('href').slice(1)) === toc) return 'fixed link';
                return null; }""")
        finally:
            browser.close()
    folders = machine_folders(runs)
    out["machine_paths_visible"] = sorted({m.group(0) for m in MACHINE_PATH.finditer(visible)}
                                          | {f for f in folders if f in visible})
    out["machine_paths_in_html"] = sorted({f for f in folders if f in text_outside_uris})
    return out


def problems(measured: dict) -> list[str]:
    """What a reader would trip over, one line each (empty: the page passes)."""
    found = []
    limit = MAX_SCREENS * HEIGHT
    if measured["folded_height"] >= limit:
        found.append(f"folded first view is {measured['folded_height']} px tall (limit {limit}: {MAX_SCREENS} screens)")
    for key, what in [("missing_targets", "in-page links without a target"),
                      ("broken_images", "images that do not load or run past the page"),
                      ("long_tables_open", f"tables longer than {FOLD_ROWS} rows not folded"),
                      ("cut_tables", "tables that run past the page without a scroll box"),
                      ("machine_paths_visible", "machine paths visible"),
                      ("machine_paths_in_html", "machine paths in the page's HTML"),
                      ("requests_blocked", "requests that need the network"),
                      ("page_errors", "script errors")]:
        if measured[key]:
            found.append(f"{what}: {measured[key][:8]}")
    if measured["page_scrolls_sideways"]:
        found.append("the page itself scrolls sideways")
    if measured["toc_sticky"] != "sticky":
        found.append(f"the table of contents is not sticky ({measured['toc_sticky']})")
    if measured["contents_narrow"] is None:
        found.append(f"at {NARROW} px the contents are neither sticky nor one fixed link away")
    return found
