"""The rating pad (/ui/rate) in a real browser against the demo hall: a tablet at
window 3 rests until the clerk completes a ticket, then shows its number, five big
buttons and the time left; one tap rates it — and the hall (the API, the alerts)
agrees; a second tap, a second rating, a rating too late are refused; the pad finds
its way back after the daemon restarts."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from browser import (running_hall, DemoHall, axe_violations, chromium, open_page,  # noqa: F401 (fixtures)
                     overflowing, shot, small_targets)
from daemon import Daemon

WINDOW = "3"                                  # serves 不动产登记 only
LANDSCAPE = {"width": 1280, "height": 800}    # a 10-inch pad
PORTRAIT = {"width": 800, "height": 1280}
PAD_TARGET_PX = 64                            # a pad for all ages: bigger than a desk's 48
NAMES = ["非常满意", "满意", "基本满意", "不满意", "非常不满意"]
NAMES_EN = ["Very satisfied", "Satisfied", "Fairly satisfied", "Dissatisfied", "Very dissatisfied"]
RATED = "已评价，每次服务只能评价一次"
PAD_TOKEN, BOSS_TOKEN = "pad-token", "boss-token"
BRIEF_S = 5


@pytest.fixture(scope="module")
def hall(tmp_path_factory) -> DemoHall:
    yield from running_hall(tmp_path_factory, "rate-hall")


@pytest.fixture(scope="module")
def brief(tmp_path_factory) -> DemoHall:
    """The demo hall with a short rating time, and tokens for the evaluator and the
    supervisor (both: a role without a token is open to anyone, and either may rate)."""
    yield from running_hall(tmp_path_factory, "rate-brief-hall", edits={
        r"^within_s = 120\b": f"within_s = {BRIEF_S}",
        r"^evaluator = \[\]": f'evaluator = ["{PAD_TOKEN}"]',
        r"^supervisor = \[\]": f'supervisor = ["{BOSS_TOKEN}"]'})


def clear(hall: DemoHall, token: str | None = None) -> None:
    """Window 3 free, nobody waiting for it, nothing left to rate there: each test sets
    its own scene on the shared daemon."""
    if hall.api("GET", f"/windows/{WINDOW}", expect=200)["current"]:
        hall.api("POST", f"/windows/{WINDOW}/no-show", expect=200)
    for ticket in hall.api("GET", f"/windows/{WINDOW}/waiting?limit=200", expect=200)["tickets"]:
        hall.api("POST", f"/tickets/{ticket['id']}/cancel", token=token, expect=200)
    left = hall.api("GET", f"/windows/{WINDOW}/rating", token=token, expect=200)["ticket"]
    if left:
        hall.api("POST", f"/windows/{WINDOW}/rating", {"ticket": left["id"], "level": 3},
                 token=token, expect=201)


def complete(hall: DemoHall, token: str | None = None) -> dict:
    """A 不动产登记 ticket taken, called, served and completed at window 3."""
    ticket = hall.api("POST", "/tickets", {"service": "property"}, token=token, expect=201)
    called = hall.api("POST", f"/windows/{WINDOW}/call-next", expect=200)
    assert called["id"] == ticket["id"]
    hall.api("POST", f"/windows/{WINDOW}/start", expect=200)
    return hall.api("POST", f"/windows/{WINDOW}/complete", expect=200)


def pad(open_page, hall: DemoHall, viewport=LANDSCAPE, fragment: str = ""):
    return open_page(f"{hall.url}/ui/rate?window={WINDOW}{fragment}", viewport=viewport, touch=True)


def clean(page) -> None:
    """What every screenshot state must be: no axe violation, nothing cut off, nothing
    a finger could miss."""
    assert axe_violations(page) == []
    assert overflowing(page) == []
    assert small_targets(page, PAD_TARGET_PX) == []


def posts(page) -> int:
    """How many ratings the pad has sent (it counts them)."""
    return page.evaluate("window.kioskdRate.state.posts")


def bad_ratings(hall: DemoHall, ticket_id: str) -> list[dict]:
    return [a for a in hall.api("GET", "/alerts", expect=200)
            if a["kind"] == "bad_rating" and a["ticket"] == ticket_id]


def boxes(page) -> list[dict]:
    return [b.bounding_box() for b in page.locator("#levels .level").all()]


# ------------------------------------------------------------------ rating


def test_a_completed_ticket_is_rated_with_one_tap(hall, open_page):
    clear(hall)
    page = pad(open_page, hall)
    expect(page.locator("#idle")).to_be_visible()
    expect(page.locator("#idle-window")).to_have_text("3号窗口")
    expect(page.locator("#title")).to_have_text("3号窗口 · 服务评价")
    expect(page.locator("#idle .idle-ask")).to_have_text("请对本次服务进行评价")
    shot(page, "rate-idle")
    clean(page)

    done = complete(hall)                       # the ticket.done event brings it
    expect(page.locator("#rate")).to_be_visible()
    expect(page.locator("#idle")).to_be_hidden()
    expect(page.locator("#rate-number")).to_have_text(done["number"])
    expect(page.locator("#rate-service")).to_have_text("不动产登记")
    expect(page.locator("#levels .level-name")).to_have_text(NAMES)
    expect(page.locator("#levels .stars")).to_have_text(["★★★★★", "★★★★☆", "★★★☆☆", "★★☆☆☆", "★☆☆☆☆"])
    expect(page.locator("#countdown")).to_have_text(re.compile(r"^剩余 1[01]\d 秒$"))
    for box in boxes(page):                     # five very large buttons side by side
        assert box["width"] >= 200 and box["height"] >= 300, box
    shot(page, "rate-landscape")
    clean(page)

    page.get_by_role("button", name="满意", exact=True).tap()      # stars are not read out
    expect(page.locator("#thanks")).to_be_visible()
    expect(page.locator("#thanks .message-big")).to_have_text("感谢您的评价")
    expect(page.locator("#thanks-level")).to_have_text("您的评价：满意")
    shot(page, "rate-thanks")
    clean(page)
    assert posts(page) == 1

    # The hall agrees: nothing more to rate, and a second rating is refused.
    assert hall.api("GET", f"/windows/{WINDOW}/rating", expect=200)["ticket"] is None
    again = hall.http.post(f"/windows/{WINDOW}/rating", json={"ticket": done["id"], "level": 5})
    assert again.status_code == 409
    assert again.json() == {"detail": RATED, "reason": "rated"}
    assert bad_ratings(hall, done["id"]) == []
    expect(page.locator("#idle")).to_be_visible(timeout=10_000)   # a few seconds later: at rest
    assert posts(page) == 1


def test_a_second_tap_sends_nothing(hall, open_page):
    clear(hall)
    page = pad(open_page, hall)
    expect(page.locator("#idle")).to_be_visible()
    done = complete(hall)
    expect(page.locator("#rate-number")).to_have_text(done["number"])
    # Two taps in one instant (a shaky finger, a second thought): 非常满意, then
    # 非常不满意 before the first is answered. Only the first is sent.
    page.evaluate("""() => {
        document.querySelector('#levels .level-5').click();
        document.querySelector('#levels .level-1').click();
        document.querySelector('#levels .level-5').click();
    }""")
    expect(page.locator("#thanks-level")).to_have_text("您的评价：非常满意")
    assert posts(page) == 1
    assert bad_ratings(hall, done["id"]) == []           # 非常不满意 never reached the hall
    again = hall.http.post(f"/windows/{WINDOW}/rating", json={"ticket": done["id"], "level": 1})
    assert again.json()["reason"] == "rated"


def test_portrait_english_and_a_bad_rating_raises_an_alert(hall, open_page):
    clear(hall)
    done = complete(hall)
    page = pad(open_page, hall, viewport=PORTRAIT)       # opened after: GET finds it
    expect(page.locator("#rate-number")).to_have_text(done["number"])
    expect(page.locator("#levels .level-name")).to_have_text(NAMES)
    for box in boxes(page):                              # stacked, full width
        assert box["width"] >= 700 and box["height"] >= 150, box
    shot(page, "rate-portrait")
    clean(page)

    page.locator("#lang").tap()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#levels .level-name")).to_have_text(NAMES_EN)
    expect(page.locator("#rate .rate-ask")).to_have_text("Please rate the service you just received")
    expect(page.locator("#rate-service")).to_have_text("Real estate registration")
    expect(page.locator("#countdown")).to_have_text(re.compile(r"^\d+ s left$"))
    shot(page, "rate-portrait-english")
    clean(page)
    page.set_viewport_size(LANDSCAPE)
    expect(page.locator("#levels .level-name")).to_have_text(NAMES_EN)
    shot(page, "rate-landscape-english")
    clean(page)
    page.set_viewport_size(PORTRAIT)

    page.locator("#levels .level-2").tap()
    expect(page.locator("#thanks .message-big")).to_have_text("Thank you for your rating")
    expect(page.locator("#thanks-level")).to_have_text("Your rating: Dissatisfied")
    [alert] = hall.until(lambda: bad_ratings(hall, done["id"]), "a bad_rating alert")
    assert alert["window"] == WINDOW
    assert alert["message"] == f"3号窗口 {done['number']}（不动产登记）评价：不满意"
    expect(page.locator("#idle")).to_be_visible(timeout=10_000)
    expect(page.locator("#idle .idle-ask")).to_have_text("Please rate our service")
    shot(page, "rate-idle-portrait-english")
    clean(page)


def test_a_refusal_says_why_then_the_pad_rests(hall, open_page):
    clear(hall)
    done = complete(hall)
    page = open_page(f"{hall.url}/livez", viewport=LANDSCAPE, touch=True)
    # No stream: the pad learns nothing after it has loaded, so it still asks about
    # a ticket that someone else has rated meanwhile.
    page.route("**/api/v1/events*", lambda route: route.abort())
    page.goto(f"{hall.url}/ui/rate?window={WINDOW}")
    expect(page.locator("#rate-number")).to_have_text(done["number"])
    hall.api("POST", f"/windows/{WINDOW}/rating", {"ticket": done["id"], "level": 3}, expect=201)

    page.locator("#levels .level-4").tap()
    expect(page.locator("#refused")).to_be_visible()
    expect(page.locator("#refused .message-big")).to_have_text("未能评价")
    expect(page.locator("#refused-why")).to_have_text(RATED)
    shot(page, "rate-refused")
    clean(page)
    page.locator("#lang").tap()
    expect(page.locator("#refused-why")).to_have_text("Already rated: each service is rated once.")
    page.locator("#lang").tap()
    expect(page.locator("#idle")).to_be_visible(timeout=10_000)   # a few seconds later: at rest
    assert posts(page) == 1


def test_without_a_window_it_lists_them(hall, open_page):
    page = open_page(f"{hall.url}/ui/rate", viewport=LANDSCAPE, touch=True)
    links = page.locator("#windows a")
    expect(links).to_have_count(len(hall.api("GET", "/windows")))
    expect(links.nth(2)).to_have_text("3号窗口")
    assert small_targets(page, PAD_TARGET_PX) == []
    links.nth(2).tap()
    expect(page.locator("#idle-window")).to_have_text("3号窗口")
    assert page.url.endswith("/ui/rate?window=3")
    page.goto(f"{hall.url}/ui/rate?window=99")
    expect(page.locator("#pick-why")).to_have_text("没有窗口“99”，请从下面选择。")


def test_the_pad_finds_its_way_back_after_the_daemon_restarts(hall, open_page):
    clear(hall)
    page = pad(open_page, hall)
    expect(page.locator("#idle")).to_be_visible()
    hall.daemon.stop()
    expect(page.locator("#link")).to_have_text("连接中断，正在重连…")
    hall.daemon = Daemon(hall.config, port=hall.daemon.port).start()
    expect(page.locator("#link")).to_have_text("", timeout=20_000)
    done = complete(hall)
    expect(page.locator("#rate-number")).to_have_text(done["number"])
    page.locator("#levels .level-5").tap()
    expect(page.locator("#thanks-level")).to_have_text("您的评价：非常满意")


# ------------------------------------------------------------------ tokens, time


def test_the_token_then_the_time_running_out(brief, open_page):
    clear(brief, token=BOSS_TOKEN)
    page = pad(open_page, brief)
    expect(page.locator("#token-form")).to_be_visible()
    expect(page.locator("#title")).to_have_text("3号窗口 · 服务评价")
    expect(page.locator("#token-why")).to_have_text(
        "这个评价器需要评价器（evaluator）的令牌。请输入令牌，或用带 #token=… 的地址打开。")
    expect(page.locator("#idle")).to_be_hidden()
    shot(page, "rate-token")
    clean(page)
    page.locator("#token-input").fill(PAD_TOKEN)
    page.keyboard.press("Enter")
    expect(page.locator("#idle")).to_be_visible()
    assert page.evaluate("localStorage.getItem('kioskd.token.evaluator')") == PAD_TOKEN

    done = complete(brief)
    expect(page.locator("#rate-number")).to_have_text(done["number"])
    expect(page.locator("#countdown")).to_have_text(re.compile(rf"^剩余 [1-{BRIEF_S}] 秒$"))
    # Nobody taps: when the time is over the pad rests by itself, having sent nothing.
    expect(page.locator("#idle")).to_be_visible(timeout=(BRIEF_S + 5) * 1000)
    expect(page.locator("#rate")).to_be_hidden()
    assert posts(page) == 0
    late = brief.http.post(f"/windows/{WINDOW}/rating", json={"ticket": done["id"], "level": 4},
                           headers={"Authorization": f"Bearer {PAD_TOKEN}"})
    assert late.status_code == 409
    assert late.json() == {"detail": f"评价时间已过（办结后 {BRIEF_S} 秒内可评价）", "reason": "late"}
    assert brief.api("GET", f"/windows/{WINDOW}/rating", token=PAD_TOKEN, expect=200)["ticket"] is None
