"""The hall TV (/ui/display) in a real browser against the demo hall: it shows who is
called to which window, the latest calls with the newest one standing out, and the
waiting per service; it finds its way back by itself after the daemon restarts; and
weeks of calls do not make it grow."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from browser import (running_hall, TV, DemoHall, axe_violations, chromium, open_page,  # noqa: F401 (fixtures)
                     overflowing, shot)
from daemon import Daemon


@pytest.fixture(scope="module")
def hall(tmp_path_factory) -> DemoHall:
    """The demo hall, its voice switched off: the display says nothing, and hundreds of
    calls in a few seconds would only keep the synthesiser busy; nor are those hundreds
    of tickets from one address limited."""
    yield from running_hall(tmp_path_factory, "display-hall", edits={
        r'^(\[devices\.voice\].*\ndriver = "voice".*)$': r"\1\nenabled = false",
        r"^issue_per_address = 60": "issue_per_address = 0"})


def issue(hall: DemoHall, service: str = "property") -> dict:
    return hall.api("POST", "/tickets", {"service": service}, expect=201)


def call(hall: DemoHall, window: str) -> dict:
    return hall.api("POST", f"/windows/{window}/call-next", expect=200)


def display(open_page, hall: DemoHall, query: str = ""):
    page = open_page(f"{hall.url}/ui/display{query}", viewport=TV)
    expect(page.locator("#hall")).to_have_text("银川市民大厅（演示）")
    # A predicate is written as a function: Playwright evaluates a function's text once,
    # but an expression's at every poll, which the pages' CSP (no unsafe-eval) refuses.
    page.wait_for_function("() => window.kioskdDisplay && window.kioskdDisplay.stream.live")
    return page


def clean(page) -> None:
    assert axe_violations(page) == []
    assert overflowing(page) == []


def waiting_counts(hall: DemoHall) -> list[str]:
    return [str(s["waiting"]) for s in hall.api("GET", "/queue", expect=200)["services"]]


def test_calls_per_window_the_latest_and_the_waiting(hall, open_page):
    page = display(open_page, hall)
    a = issue(hall)
    f = issue(hall, "fund")
    for _ in range(3):
        issue(hall, "social")
    at_3 = call(hall, "3")
    at_4 = call(hall, "4")                        # window 4 prefers property: none left, so fund
    assert (at_3["number"], at_4["number"]) == (a["number"], f["number"])

    # Calling now, one card per window, the newest first.
    cards = page.locator("#now-list li:visible")
    expect(cards.nth(0)).to_contain_text(f"{at_4['number']}→4号窗口")
    expect(cards.nth(1)).to_contain_text(f"{at_3['number']}→3号窗口")
    expect(cards.nth(0)).to_have_class(re.compile(r"\bfresh\b"))
    # The latest calls, newest first, the newest highlighted.
    rows = page.locator("#latest-list li")
    expect(rows).to_have_count(8)                 # fixed rows, filled from the top
    expect(rows.nth(0).locator(".call-number")).to_have_text(at_4["number"])
    expect(rows.nth(0).locator(".call-window")).to_have_text("4号窗口")
    expect(rows.nth(1).locator(".call-number")).to_have_text(at_3["number"])
    expect(rows.nth(1).locator(".call-window")).to_have_text("3号窗口")
    expect(rows.nth(0)).to_have_class(re.compile(r"\bfresh\b"))
    # Waiting per service: what GET /queue says, in its order.
    expect(page.locator("#queue-list .q-count")).to_have_text(waiting_counts(hall))
    expect(page.locator("#queue-list li").nth(4)).to_contain_text("社会保障卡申领、补换")
    shot(page, "display-calls")
    clean(page)

    # A new page starts from GET /calls: the same list, nothing flashing.
    again = display(open_page, hall, "?flash=1")
    numbers = [c["number"] for c in hall.api("GET", "/calls?limit=8")]
    assert numbers == [at_4["number"], at_3["number"]]
    rows = again.locator("#latest-list li")
    expect(rows.locator(".call-number")).to_have_text(numbers + [""] * 6)
    expect(again.locator("#latest-list li.fresh")).to_have_count(0)
    # A recall goes back to the top and flashes again; the flash ends by itself (after
    # 1 s on this page, 10 s by default).
    hall.api("POST", "/windows/3/recall", expect=200)
    expect(rows.nth(0).locator(".call-number")).to_have_text(at_3["number"])
    expect(rows.nth(0).locator(".call-tag")).to_have_text("重呼")
    expect(rows.nth(0)).to_have_class(re.compile(r"\bfresh\b"))
    expect(rows.nth(1).locator(".call-number")).to_have_text(at_4["number"])
    expect(again.locator("#now-list li:visible").first).to_contain_text(at_3["number"])
    expect(rows.nth(0)).not_to_have_class(re.compile(r"\bfresh\b"), timeout=5_000)
    expect(again.locator(".fresh")).to_have_count(0)
    # Live: an issue changes the waiting counts, a completion takes the card away.
    issue(hall, "medical")
    expect(again.locator("#queue-list .q-count")).to_have_text(waiting_counts(hall))
    hall.api("POST", "/windows/3/complete", expect=200)
    expect(again.locator("#now-list li:visible", has_text=at_4["number"])).to_have_count(1)
    expect(again.locator("#now-list li:visible", has_text=at_3["number"])).to_have_count(0)


def test_it_comes_back_by_itself_after_the_daemon_restarts(hall, open_page):
    page = display(open_page, hall)
    issue(hall)
    before = call(hall, "3")
    rows = page.locator("#latest-list li")
    expect(rows.nth(0).locator(".call-number")).to_have_text(before["number"])
    seen = page.evaluate("window.kioskdDisplay.stream.lastId")
    assert seen is not None

    hall.daemon.stop()
    link = page.locator("#link")
    expect(link).to_have_text("连接中断，正在重连…")
    expect(link).to_have_class(re.compile(r"\blost\b"))
    shot(page, "display-lost")
    clean(page)                                    # a discreet mark, the board stays readable
    expect(rows.nth(0).locator(".call-number")).to_have_text(before["number"])

    # Keep the page away from the event stream while the daemon comes back and a call
    # is made, so that the page can learn of it only by resuming where it stopped.
    page.route("**/api/v1/events*", lambda route: route.abort())
    hall.daemon = Daemon(hall.config, port=hall.daemon.port).start()
    issue(hall)
    missed = call(hall, "3")
    missed_id = hall.api("GET", "/calls?limit=1")[0]["event_id"]
    assert missed_id > seen
    assert page.evaluate("window.kioskdDisplay.stream.live") is False
    page.unroute("**/api/v1/events*")

    expect(link).to_have_text("", timeout=20_000)
    expect(link).not_to_have_class(re.compile(r"\blost\b"))
    expect(rows.nth(0).locator(".call-number")).to_have_text(missed["number"])
    expect(rows.nth(0)).to_have_class(re.compile(r"\bfresh\b"))
    expect(page.locator("#now-list li:visible").first).to_contain_text(f"{missed['number']}→3号窗口")
    # The stream resumed from where it was: the missed call's event came through it.
    page.wait_for_function("(id) => window.kioskdDisplay.stream.lastId >= id", arg=missed_id)
    expect(page.locator("#queue-list .q-count")).to_have_text(waiting_counts(hall))
    shot(page, "display-after-restart")
    clean(page)


def census(page, cdp) -> dict:
    """What the page holds after a full garbage collection: its V8 heap, its JavaScript
    objects (every object whose prototype chain reaches Object.prototype, DOM wrappers
    included — an exact count, where the heap also moves with compiled code), and its
    elements."""
    cdp.send("HeapProfiler.collectGarbage")
    cdp.send("HeapProfiler.collectGarbage")
    heap = cdp.send("Runtime.getHeapUsage")["usedSize"]
    proto = cdp.send("Runtime.evaluate", {"expression": "Object.prototype",
                                          "objectGroup": "census"})["result"]["objectId"]
    found = cdp.send("Runtime.queryObjects", {"prototypeObjectId": proto,
                                              "objectGroup": "census"})["objects"]["objectId"]
    objects = cdp.send("Runtime.callFunctionOn", {
        "objectId": found, "functionDeclaration": "function () { return this.length; }",
        "returnByValue": True})["result"]["value"]
    cdp.send("Runtime.releaseObjectGroup", {"objectGroup": "census"})
    nodes = page.evaluate("document.getElementsByTagName('*').length")
    return {"heap": heap, "objects": objects, "nodes": nodes}


def test_hundreds_of_calls_do_not_make_it_grow(hall, open_page):
    page = display(open_page, hall)
    cdp = page.context.new_cdp_session(page)
    windows = ["3", "4", "1", "2", "5", "6"]
    services = ["property", "fund", "business", "social", "investment", "medical"]

    with httpx.Client(base_url=hall.url + "/api/v1", timeout=10) as http:
        def calls(n: int) -> str:
            """n issues and calls, round the windows, as fast as the daemon answers."""
            number = ""
            for i in range(n):
                w, s = windows[i % len(windows)], services[i % len(services)]
                assert http.post("/tickets", json={"service": s}).status_code == 201
                r = http.post(f"/windows/{w}/call-next")
                assert r.status_code == 200, r.text
                number = r.json()["number"]
            return number

        def settled(last: str) -> dict:
            """Once the page shows the last call and the hall's waiting counts. Polled
            with page.evaluate, not expect(): Playwright's own injected script lives in
            the same heap and would be counted."""
            counts = [str(s["waiting"]) for s in http.get("/queue").json()["services"]]
            hall.until(lambda: page.evaluate("""([last, counts]) =>
                document.querySelector('#latest-list .call-number').textContent === last &&
                [...document.querySelectorAll('#queue-list .q-count')]
                    .map((n) => n.textContent).join() === counts.join() &&
                window.kioskdDisplay.held.calls === 8""", [last, counts]),
                f"the display shows {last} and the waiting counts {counts}")
            return census(page, cdp)

        warm = settled(calls(150))                # code compiled, caches and tables filled
        after = settled(calls(300))

    # The rows and cards are made once and reused: not one element more.
    assert after["nodes"] == warm["nodes"], (warm, after)
    # Keeping one thing per call — a call record, a Map entry's object, a detached row
    # (its wrapper) — adds 300 objects; a settled page moves by a few dozen at most
    # (measured: +25 once, within the first 800 calls, then ±3).
    assert after["objects"] - warm["objects"] < 100, (warm, after)
    # And the heap: a few compiled-code pages of ~24 KB come and go (measured ≤ 48 KB);
    # keeping each call's event (≈ 0.7 KB) would add ≥ 200 KB.
    assert after["heap"] - warm["heap"] < 128 * 1024, (warm, after)
    shot(page, "display-after-500-calls")
    clean(page)
