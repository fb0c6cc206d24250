"""A real browser on a real HTTP server: Debian's Chromium driven by Playwright, axe-core.

Started once, and only when a test asks for them:

* ``chromium`` (module-scoped): a headless Chromium (Playwright's ``Browser``) launched
  from ``DSAR_TEST_CHROMIUM`` (a path), else ``chromium`` on PATH, else
  /usr/bin/chromium. Playwright's own browser downloads are never used (``playwright
  install`` is not needed, and its hosts are not reachable from the test machines).
  Once per module, not per session: while Playwright's sync API is started, the main
  thread has a running asyncio loop between its calls (its greenlet design), so
  ``asyncio.run()`` in any later test would raise; launching takes about a second.
* ``live_server`` (session-scoped): a werkzeug server thread on 127.0.0.1 (a free
  port) serving whichever app a test hands it (each test builds its app on its own
  database).

Per test:

* ``serve(app) -> base_url``: ``live_server`` answers with ``app`` for this test; at
  its end the server stops serving it, and the test fails if the app raised (with
  ``TESTING`` on, Flask propagates exceptions: the browser would only see a 500).
* ``viewport``: ``{"width": 1280, "height": 800}``; override the fixture (or
  parametrise it, ``indirect=True``) for other sizes, e.g. ``MOBILE`` (390 px wide).
* ``page``: a fresh browser context (no cookies) and page on ``viewport``, its
  ``base_url`` the live server's (``page.goto("/")``), with bounded timeouts.

Helpers (plain functions):

* ``assert_accessible(page, ignore=())``: inject axe-core into the page and fail,
  listing rule id, impact, target nodes and help URL, on any violation of impact
  "serious" or "critical" (rules in ``ignore`` aside). axe-core is the npm package
  pinned in scripts/ensure-test-deps.sh, which fetches it into
  .venv/axe-core/axe.min.js (``DSAR_TEST_AXE`` names another file).
* ``tab_to(page, selector)``: press Tab until the focused element matches.
* ``screenshot(page, name)``: with ``DSAR_SCREENSHOTS=<dir>`` set (``make
  screenshots``), write ``<dir>/<name>.png`` of the viewport; else nothing.

What is missing ends the run with exit code 3 and what to install (never a skip).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from tests.support.servers import add_report_line, exit_tests

if TYPE_CHECKING:
    from flask import Flask
    from playwright.sync_api import Browser, Page

__all__ = ["chromium", "live_server", "page", "serve", "viewport"]

ROOT = Path(__file__).resolve().parents[2]
INSTALL = "scripts/ensure-test-deps.sh browser (as root; or: apt-get install -y chromium)"
#: the default viewport, and a phone's (the portal must work at 390 px)
DESKTOP = {"width": 1280, "height": 800}
MOBILE = {"width": 390, "height": 844}
LAUNCH_TIMEOUT_MS = 30_000
ACTION_TIMEOUT_MS = 10_000  # clicks, fills, waits for an element
NAVIGATION_TIMEOUT_MS = 15_000
AXE_TIMEOUT_MS = 15_000
FAILING_IMPACTS = ("serious", "critical")


def chromium_path() -> str:
    """Where Chromium is, or exit 3 saying how to install it."""
    named = os.environ.get("DSAR_TEST_CHROMIUM", "").strip()
    if named:
        if not os.access(named, os.X_OK):
            exit_tests(f"DSAR_TEST_CHROMIUM={named}: not an executable file")
        return named
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    exit_tests(f"the browser tests need Debian's chromium, not found: run {INSTALL}")


def axe_path() -> Path:
    named = os.environ.get("DSAR_TEST_AXE", "").strip()
    return Path(named) if named else ROOT / ".venv" / "axe-core" / "axe.min.js"


_axe: dict[str, str] = {}


def axe_source() -> str:
    """axe.min.js, read once; exit 3 saying how to fetch it when missing."""
    if "source" not in _axe:
        path = axe_path()
        if not path.is_file():
            exit_tests(f"axe-core not found at {path}: run scripts/ensure-test-deps.sh browser "
                       "(fetches the pinned axe-core from the npm registry)")
        _axe["source"] = path.read_text(encoding="utf-8")
    return _axe["source"]


def axe_version() -> str:
    found = re.match(r"/\*! axe v(\S+)", axe_source())
    return found.group(1) if found else "unknown version"


_chosen: dict[str, str] = {}


def _report_line() -> str:
    if "chromium" not in _chosen:
        return "browser: started if a test needs it (Chromium and axe-core)"
    return f"browser: Chromium {_chosen['chromium']}, axe-core {axe_version()}"


add_report_line(_report_line)


# --------------------------------------------------------------------- Chromium


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """A headless Chromium for the module's tests (Debian's, launched by its path)."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        exit_tests("the browser tests need Playwright for Python: "
                   ".venv/bin/pip install -e '.[test]'")
    executable = chromium_path()
    axe_source()  # missing axe-core stops the run now, not in the middle of a test
    driver = sync_playwright().start()
    try:
        browser = driver.chromium.launch(executable_path=executable, headless=True,
                                         timeout=LAUNCH_TIMEOUT_MS)
    except PlaywrightError as exc:
        driver.stop()
        exit_tests(f"could not launch {executable}: {exc}\nHint: {INSTALL}")
    _chosen["chromium"] = f"{browser.version} ({executable})"
    try:
        yield browser
    finally:
        browser.close()
        driver.stop()


@pytest.fixture
def viewport() -> dict[str, int]:
    return dict(DESKTOP)


@pytest.fixture
def page(chromium: Browser, live_server: LiveServer,
         viewport: dict[str, int]) -> Iterator[Page]:
    """A fresh context (no cookies, no cache) and page on the live server."""
    context = chromium.new_context(base_url=live_server.url, viewport=viewport,
                                   accept_downloads=True, locale="en-GB")
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


# ----------------------------------------------------------------- live server


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr (the requests are the test's own)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class LiveServer:
    """A threaded werkzeug server on 127.0.0.1; answers with the app it is given."""

    def __init__(self) -> None:
        self.app: Flask | None = None
        self.errors: list[BaseException] = []
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="live-server", daemon=True)

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        app = self.app
        if app is None:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"no app is being served (use the serve fixture)"]
        try:
            return app.wsgi_app(environ, start_response)
        except BaseException as exc:
            self.errors.append(exc)
            raise

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    server = LiveServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def serve(live_server: LiveServer) -> Iterator[Callable[[Flask], str]]:
    """``serve(app)``: the live server answers with ``app`` during this test; returns
    its base URL. Fails the test if the app raised while serving it."""

    def start(app: Flask) -> str:
        live_server.app, live_server.errors = app, []
        return live_server.url

    yield start
    errors, live_server.app, live_server.errors = live_server.errors, None, []
    if errors:
        raise AssertionError(f"the app raised while serving the browser: {errors!r}") \
            from errors[0]


# ----------------------------------------------------------------- helpers


class AccessibilityViolation(AssertionError):
    """axe-core found serious or critical violations; ``rules`` has their ids."""

    def __init__(self, message: str, rules: set[str]) -> None:
        super().__init__(message)
        self.rules = rules


_AXE_RUN = """async timeout => {
  const timer = new Promise((_, reject) =>
      setTimeout(() => reject(new Error('axe-core did not finish in ' + timeout + ' ms')),
                 timeout));
  const result = await Promise.race([
      window.axe.run(document, {resultTypes: ['violations']}), timer]);
  return result.violations.map(v => ({
      id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
      nodes: v.nodes.map(n => ({target: n.target, html: n.html,
                                summary: n.failureSummary}))}));
}"""


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Every axe-core violation on the page as it is now (any impact)."""
    if not page.evaluate("() => !!window.axe"):
        # evaluated through the driver, which the page's Content-Security-Policy does not
        # govern (an injected <script> or an eval() in the page would be refused)
        page.evaluate(axe_source() + "\n;0")
    found: list[dict[str, Any]] = page.evaluate(_AXE_RUN, AXE_TIMEOUT_MS)
    return found


def assert_accessible(page: Page, ignore: tuple[str, ...] = ()) -> None:
    """Fail on axe-core violations of impact serious or critical (rules in ``ignore``
    aside: for a strict xfail that checks the rest of the page first)."""
    failing = [v for v in axe_violations(page)
               if v["impact"] in FAILING_IMPACTS and v["id"] not in ignore]
    if not failing:
        return
    lines = [f"axe-core {axe_version()}: {len(failing)} serious/critical violation(s) "
             f"on {page.url}"]
    for v in failing:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} <{v['helpUrl']}>")
        for node in v["nodes"]:
            lines.append(f"    {json.dumps(node['target'])}: {node['html'][:200]}")
            if node.get("summary"):
                lines += [f"      {line}" for line in node["summary"].splitlines()]
    raise AccessibilityViolation("\n".join(lines), {v["id"] for v in failing})


def focused(page: Page, selector: str) -> bool:
    """Whether the focused element matches ``selector``."""
    return bool(page.evaluate(
        "s => !!document.activeElement && document.activeElement.matches(s)", selector))


def tab_to(page: Page, selector: str, limit: int = 30) -> None:
    """Press Tab until the focused element matches ``selector`` (at most ``limit``)."""
    for _ in range(limit):
        if focused(page, selector):
            return
        page.keyboard.press("Tab")
    if not focused(page, selector):
        raise AssertionError(f"{limit} presses of Tab never reached {selector}")


def screenshot(page: Page, name: str) -> None:
    """``$DSAR_SCREENSHOTS/<name>.png`` of the viewport, when the variable is set."""
    target = os.environ.get("DSAR_SCREENSHOTS", "").strip()
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"{name}.png"), animations="disabled",
                        caret="hide")
