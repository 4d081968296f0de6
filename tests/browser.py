"""Browser tests' equipment: Debian's Chromium driven by Playwright, the real
`kioskd run` daemon with the shipped demo hall, and screenshots kept as artifacts.

Playwright drives /usr/bin/chromium (`executable_path`); it never downloads a
browser. Screenshots go to `artifacts/screenshots/` at the top of the checkout
(override with KIOSKD_ARTIFACTS), to be looked at after a run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from drivers.escpos.emulator import EmulatedPrinter
from conftest import SHIPPED_HALL, until
from daemon import Daemon, PortTaken, free_ports

CHROMIUM = "/usr/bin/chromium"
# The flags a locked-down machine needs: no sandbox as root, no GPU, and no calls
# home (this machine's network is closed; a hall's may be too).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
ARTIFACTS = Path(os.environ.get("KIOSKD_ARTIFACTS",
                                Path(__file__).resolve().parent.parent / "artifacts"))
SCREENSHOTS = ARTIFACTS / "screenshots"

PORTRAIT = {"width": 1080, "height": 1920}
LANDSCAPE = {"width": 1920, "height": 1080}
TV = {"width": 1920, "height": 1080}
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium per test module (Playwright's own event loop ends with
    the module, before the asyncio tests of the next one); each test opens its own
    context."""
    from playwright.sync_api import sync_playwright
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/bootstrap.sh test installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                             headless=True)
        yield browser
        browser.close()


@pytest.fixture
def open_page(chromium) -> Iterator[Callable[..., Any]]:
    """open_page(url, viewport=PORTRAIT, touch=False) → a Playwright Page in a fresh
    context (its own localStorage). Console errors and failed requests to other
    hosts fail the test: a page must load nothing from outside the hall."""
    contexts = []
    problems: list[str] = []

    def opener(url: str, viewport: dict = DESKTOP, touch: bool = False, **context_args):
        context = chromium.new_context(viewport=viewport, has_touch=touch,
                                       is_mobile=False, locale="zh-CN",
                                       timezone_id="Asia/Shanghai", **context_args)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        base = re.match(r"https?://[^/]+", url).group(0)

        def outside(request):
            if not (request.url.startswith(base) or request.url.startswith(("data:", "blob:"))):
                problems.append(f"requested from outside the hall: {request.url}")
        page.on("request", outside)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.goto(url)
        return page

    yield opener
    for context in contexts:
        context.close()
    assert not problems, "\n".join(problems)


def shot(page: Any, name: str, full_page: bool = False) -> Path:
    """Save the page as artifacts/screenshots/NAME.png and return the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


class DemoHall:
    """The shipped demo hall run by a real `kioskd run` process in `folder`.

    With `own_printer`, printer_1 is not emulated inside the daemon but by an
    EmulatedPrinter in this test process on a loopback port (`self.printer`), so
    a test can pull its paper; otherwise the daemon's own emulator prints, as in
    `make run`, and its last ticket is a PNG at /devices/printer_1/last-ticket.png.
    The boards are emulated inside the daemon (their model is in each board's
    `detail.emulator`); the voice writes WAVs and plays nothing.

    `edits` changes the shipped file for a test: {regex (multi-line): replacement},
    each of which must match exactly once, so a test notices when the demo changes."""

    def __init__(self, folder: Path, own_printer: bool = False,
                 edits: dict[str, str] | None = None):
        self.folder = folder
        self.printer: EmulatedPrinter | None = None
        port, daemon_port = free_ports(2)
        text = SHIPPED_HALL.read_text(encoding="utf-8")
        if own_printer:
            self.printer = EmulatedPrinter(jobs_dir=folder / "printer-jobs",
                                           name="test's printer")
            self.printer.start()
            port = self.printer.listen_tcp("127.0.0.1", 0)
            text = re.sub(r"^emulate = true( +# demo only: kioskd runs an emulated printer)",
                          r"emulate = false\1", text, count=1, flags=re.M)
        text = text.replace("tcp://127.0.0.1:9100", f"tcp://127.0.0.1:{port}")
        for pattern, replacement in (edits or {}).items():
            text, found = re.subn(pattern, replacement, text, flags=re.M)
            assert found == 1, f"the shipped devices.toml has {found} matches of {pattern!r}"
        self.config = folder / "devices.toml"
        self.config.write_text(text, encoding="utf-8")
        self.daemon = Daemon(self.config, port=daemon_port)
        self.url = self.daemon.url
        self.http = httpx.Client(base_url=self.url + "/api/v1", timeout=10)

    def start(self) -> DemoHall:
        for attempt in range(3):
            try:
                self.daemon.start()
                return self
            except PortTaken:             # another process (a parallel run) took the port
                if attempt == 2:
                    raise
                self.daemon = Daemon(self.config)
                self.url = self.daemon.url
                self.http.close()
                self.http = httpx.Client(base_url=self.url + "/api/v1", timeout=10)
        return self

    def restart(self) -> None:
        self.daemon.stop()
        self.daemon = Daemon(self.config, port=self.daemon.port)
        self.daemon.start()

    def stop(self) -> None:
        self.http.close()
        if self.daemon.proc is not None and self.daemon.proc.poll() is None:
            self.daemon.stop()
        if self.printer is not None:
            self.printer.close()

    def api(self, method: str, path: str, json: Any = None, token: str | None = None,
            expect: int | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = self.http.request(method, path, json=json, headers=headers)
        if expect is not None:
            assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content and r.headers.get("content-type", "").startswith(
            "application/json") else None

    def device(self, device_id: str) -> dict:
        return self.api("GET", f"/devices/{device_id}", expect=200)

    def until(self, condition: Callable[[], Any], what: str, timeout: float = 10) -> Any:
        """Poll `condition()` until it returns something truthy; fail after `timeout` s."""
        return until(condition, what, timeout, every=0.05)


def running_hall(tmp_path_factory: Any, name: str, **options: Any) -> Iterator[DemoHall]:
    """A DemoHall (`options` as DemoHall takes them) started in a fresh folder, and
    stopped afterwards: `yield from` it in a module's fixture."""
    hall = DemoHall(tmp_path_factory.mktemp(name), **options).start()
    try:
        yield hall
    finally:
        hall.stop()


@pytest.fixture
def demo_hall_daemon(tmp_path_factory) -> Iterator[DemoHall]:
    yield from running_hall(tmp_path_factory, "demo-hall")


# --------------------------------------------------------------- accessibility

MIN_TARGET_PX = 48       # WCAG 2.5.5's 44 px, rounded up to Material's 48 for unsteady fingers


def axe_violations(page: Any, tags: tuple[str, ...] = ("wcag2a", "wcag2aa", "wcag21aa")) -> list[str]:
    """axe-core's rules (bundled by axe-playwright-python, injected by Playwright,
    no download) against the page as it stands: one line per violation and node."""
    from axe_playwright_python.sync_playwright import Axe
    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": list(tags)},
                                       "resultTypes": ["violations"]})
    found = []
    for violation in results.response["violations"]:
        for node in violation["nodes"]:
            found.append(f"{violation['id']}: {node['target']} {node.get('failureSummary', '')}"
                         .replace("\n", " "))
    return found


def small_targets(page: Any, min_px: int = MIN_TARGET_PX) -> list[str]:
    """Every visible button, link, or input that a finger could hit but that is
    smaller than min_px on either side."""
    return page.evaluate("""(min) => {
        const small = [];
        for (const node of document.querySelectorAll(
                'button, a[href], input, select, [role=button], [onclick]')) {
            const box = node.getBoundingClientRect();
            const style = getComputedStyle(node);
            if (box.width === 0 || box.height === 0 || style.visibility === 'hidden') continue;
            if (box.width < min || box.height < min)
                small.push(`${node.tagName.toLowerCase()}#${node.id}.${node.className} ` +
                           `"${node.textContent.trim().slice(0, 20)}" ` +
                           `${Math.round(box.width)}x${Math.round(box.height)}`);
        }
        return small;
    }""", min_px)


def overflowing(page: Any) -> list[str]:
    """Elements whose text runs out of their box (cut off or spilling), and a page
    wider than its screen: what a screenshot would show as overlap or overflow."""
    return page.evaluate("""() => {
        const found = [];
        if (document.documentElement.scrollWidth > window.innerWidth + 1)
            found.push(`the page is ${document.documentElement.scrollWidth}px wide ` +
                       `on a ${window.innerWidth}px screen`);
        for (const node of document.body.querySelectorAll('*')) {
            const style = getComputedStyle(node);
            if (style.display === 'none' || style.visibility === 'hidden') continue;
            if (!['hidden', 'clip'].includes(style.overflowX) || node.scrollWidth <= node.clientWidth + 1) continue;
            if (style.textOverflow === 'ellipsis') continue;     // cut on purpose, with …
            found.push(`${node.tagName.toLowerCase()}#${node.id}.${node.className}: ` +
                       `${node.scrollWidth}px of content in ${node.clientWidth}px`);
        }
        return found;
    }""")
