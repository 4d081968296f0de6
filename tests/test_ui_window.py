"""The clerk's console (/ui/window) in a real browser against the demo hall: a clerk
at window 3 (which serves 不动产登记 only, under the Modbus display board_3) calls,
recalls, starts, completes, marks no-shows, transfers and pauses with the keyboard,
and the hall — the API, the board over the window, the voice — agrees."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from browser import (running_hall, DESKTOP, DemoHall, axe_violations, chromium, open_page,  # noqa: F401 (fixtures)
                     overflowing, shot)

SMALL = {"width": 1280, "height": 720}


@pytest.fixture(scope="module")
def hall(tmp_path_factory) -> DemoHall:
    yield from running_hall(tmp_path_factory, "window-hall")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> DemoHall:
    """The demo hall with clerk tokens for windows 3 and 4 and a supervisor token.
    Window 4 and the supervisor need theirs too: a role with no token is open to
    anyone, so window 3's token would pass at an open window 4."""
    yield from running_hall(tmp_path_factory, "guarded-hall", edits={
        r'^# "1" = \["\$\{KIOSKD_WINDOW_1_TOKEN\}"\]$': '"3" = ["clerk-3-token"]\n"4" = ["clerk-4-token"]',
        r"^supervisor = \[\]": 'supervisor = ["boss-token"]'})


def issue(hall: DemoHall, service: str = "property", **more) -> dict:
    return hall.api("POST", "/tickets", {"service": service, **more}, expect=201)


def clear(hall: DemoHall) -> None:
    """Window 3 open and free, nobody waiting for it or for window 4: each test sets
    its own scene on the shared daemon."""
    hall.api("POST", "/windows/3/resume", expect=200)
    for w in ("3", "4"):
        if hall.api("GET", f"/windows/{w}", expect=200)["current"]:
            hall.api("POST", f"/windows/{w}/complete", expect=200)
        for ticket in hall.api("GET", f"/windows/{w}/waiting?limit=200", expect=200)["tickets"]:
            hall.api("POST", f"/tickets/{ticket['id']}/cancel", expect=200)


def console(open_page, hall: DemoHall, window: str = "3", viewport=DESKTOP, fragment: str = ""):
    page = open_page(f"{hall.url}/ui/window?window={window}{fragment}", viewport=viewport)
    return page


def clean(page) -> None:
    """What every screenshot state must be: no axe violation, nothing cut off."""
    assert axe_violations(page) == []
    assert overflowing(page) == []


def current(hall: DemoHall, window: str = "3") -> dict | None:
    return hall.api("GET", f"/windows/{window}", expect=200)["current"]


def presses(page) -> int:
    """How many presses the console has sent to the daemon (it counts them)."""
    return page.evaluate("window.kioskdWindow.state.generation")


# ------------------------------------------------------------------ calling


def test_the_call_key_calls_the_next_ticket_onto_the_board_and_the_voice(hall, open_page):
    clear(hall)
    first, second = issue(hall), issue(hall)
    page = console(open_page, hall)
    expect(page.locator("#title")).to_have_text("3号窗口")
    expect(page.locator("#waiting-count")).to_have_text("2")
    expect(page.locator("#waiting-list li .w-number")).to_have_text([first["number"], second["number"]])
    expect(page.locator("#number")).to_have_text("—")

    page.keyboard.press("Space")

    number = first["number"]
    expect(page.locator("#number")).to_have_text(number)
    expect(page.locator("#last")).to_have_text(f"已呼叫 {number}")
    expect(page.locator("#toast")).to_have_text(f"已呼叫 {number}")
    expect(page.locator("#status")).to_have_text("已呼叫，等候到窗")
    expect(page.locator("#service")).to_have_text("不动产登记")
    expect(page.locator("#waiting-count")).to_have_text("1")
    expect(page.locator("#since-called")).to_have_text(re.compile(r"^0:0\d$"))
    assert current(hall)["number"] == number
    assert current(hall)["status"] == "called"
    # The Modbus display over window 3, as its emulator decoded the registers.
    hall.until(lambda: (hall.device("board_3")["detail"]["emulator"]["shows"] or "").strip() == number,
               f"board_3 shows {number}")
    # The caller made and "played" (the demo has no player) the announcement.
    said = hall.until(lambda: (a := hall.device("voice")["detail"].get("last_announcement"))
                      and a.get("number") == number and a.get("ended_at") and a,
                      f"the voice announced {number}", timeout=30)
    assert said["kind"] == "call" and said["window"] == "3" and said["problem"] is None
    assert Path(said["wav"]).stat().st_size > 1000
    # The clocks tick: a second later the called-for time reads 0:01 or more.
    expect(page.locator("#since-called")).not_to_have_text("0:00", timeout=3000)
    shot(page, "window-calling")
    clean(page)


def test_every_action_by_its_key(hall, open_page):
    clear(hall)
    tickets = [issue(hall) for _ in range(4)]
    numbers = [t["number"] for t in tickets]
    page = console(open_page, hall)
    expect(page.locator("#waiting-count")).to_have_text("4")

    # call (N), recall (R), start (S), complete (C)
    page.keyboard.press("n")
    expect(page.locator("#number")).to_have_text(numbers[0])
    page.keyboard.press("r")
    expect(page.locator("#last")).to_have_text(f"已重呼 {numbers[0]}（第 1 次）")
    expect(page.locator("#recalls")).to_have_text("1")
    assert current(hall)["recalls"] == 1
    page.keyboard.press("r")
    expect(page.locator("#recalls")).to_have_text("2")
    assert current(hall)["recalls"] == 2
    page.keyboard.press("s")
    expect(page.locator("#status")).to_have_text("办理中")
    expect(page.locator("#last")).to_have_text(f"开始办理 {numbers[0]}")
    assert current(hall)["status"] == "serving"
    expect(page.locator("#since-started")).not_to_have_text("—")
    expect(page.locator("#do-recall")).to_be_disabled()       # a served ticket is not recalled
    page.keyboard.press("c")
    expect(page.locator("#number")).to_have_text("—")
    expect(page.locator("#last")).to_have_text(f"已办结 {numbers[0]}")
    assert current(hall) is None
    assert hall.api("GET", f"/tickets/{tickets[0]['id']}")["status"] == "done"

    # no-show (X)
    page.keyboard.press("Space")
    expect(page.locator("#number")).to_have_text(numbers[1])
    page.keyboard.press("x")
    expect(page.locator("#last")).to_have_text(f"{numbers[1]} 已记为未到")
    expect(page.locator("#number")).to_have_text("—")
    assert hall.api("GET", f"/tickets/{tickets[1]['id']}")["status"] == "no_show"

    # transfer (T) to a service: filter, Enter
    page.keyboard.press("Space")
    expect(page.locator("#number")).to_have_text(numbers[2])
    page.keyboard.press("t")
    dialog = page.locator("#transfer")
    expect(dialog).to_be_visible()
    expect(page.locator("#transfer-number")).to_have_text(numbers[2])
    expect(page.locator("#transfer-filter")).to_be_focused()
    page.keyboard.type("公积金")                    # typing T or C here transfers nothing
    expect(page.locator("#transfer .choice:visible")).to_have_count(1)
    expect(page.locator("#transfer .choice.chosen")).to_contain_text("住房公积金提取")
    shot(page, "window-transfer")
    clean(page)
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator("#last")).to_have_text(f"{numbers[2]} 已转到 住房公积金提取")
    moved = hall.api("GET", f"/tickets/{tickets[2]['id']}")
    assert (moved["status"], moved["service"], moved["number"]) == ("waiting", "fund", numbers[2])
    assert numbers[2] in [t["number"] for t in hall.api("GET", "/windows/4/waiting")["tickets"]]
    assert current(hall) is None

    # Esc cancels the chooser and changes nothing
    page.keyboard.press("Space")
    expect(page.locator("#number")).to_have_text(numbers[3])
    page.keyboard.press("t")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert current(hall)["number"] == numbers[3]

    # transfer to a window: filter, Enter
    expect(page.locator("#do-transfer")).to_be_enabled()
    page.keyboard.press("t")
    expect(dialog).to_be_visible()
    expect(page.locator("#transfer-filter")).to_be_focused()
    page.keyboard.type("4号")
    expect(page.locator("#transfer .choice:visible")).to_have_count(1)
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator("#last")).to_have_text(f"{numbers[3]} 已转到 4号窗口")
    moved = hall.api("GET", f"/tickets/{tickets[3]['id']}")
    assert (moved["status"], moved["target_window"]) == ("waiting", "4")
    waiting_4 = hall.api("GET", "/windows/4/waiting")["tickets"]
    assert [t["target_window"] for t in waiting_4 if t["id"] == tickets[3]["id"]] == ["4"]

    # pause (P): the daemon refuses a call and the console says why; resume (P)
    page.keyboard.press("p")
    expect(page.locator("#state")).to_have_text("暂停")
    expect(page.locator("#pause-label")).to_have_text("恢复")
    expect(page.locator("#status")).to_have_text("暂停中，恢复后才能叫号")
    assert hall.api("GET", "/windows/3")["state"] == "paused"
    issue(hall)
    expect(page.locator("#waiting-count")).to_have_text("1")       # live: the issue event
    page.keyboard.press("Space")
    refused = hall.http.post("/windows/3/call-next")            # what the daemon says
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    expect(page.locator("#last")).to_have_text(f"未能叫号：本窗口已暂停，请先恢复（P）再叫号（{detail}）")
    expect(page.locator("#toast")).to_contain_text(detail)
    assert current(hall) is None
    shot(page, "window-paused")
    clean(page)
    page.keyboard.press("p")
    expect(page.locator("#state")).to_have_text("开放")
    expect(page.locator("#last")).to_have_text("窗口已恢复，可以叫号")
    assert hall.api("GET", "/windows/3")["state"] == "open"


def test_a_held_key_or_a_double_press_calls_once(hall, open_page):
    clear(hall)
    first, second, third = issue(hall), issue(hall), issue(hall)
    page = console(open_page, hall)
    expect(page.locator("#waiting-count")).to_have_text("3")

    # Held: the first key-down calls, the auto-repeats that follow do nothing.
    page.keyboard.down("n")
    expect(page.locator("#number")).to_have_text(first["number"])
    expect(page.locator("#do-call")).to_be_enabled()           # the answer is in
    sent = presses(page)
    page.keyboard.down("n")                                    # repeat: true
    page.keyboard.down("n")
    page.keyboard.up("n")
    assert presses(page) == sent
    assert current(hall)["number"] == first["number"]

    # Two presses in one instant (a bouncing key, a double click): the second comes
    # while the first is in flight and is not sent.
    page.evaluate("""() => { for (let i = 0; i < 2; i++) document.dispatchEvent(
        new KeyboardEvent('keydown', {code: 'KeyN', key: 'n', bubbles: true})); }""")
    assert presses(page) == sent + 1
    expect(page.locator("#number")).to_have_text(second["number"])
    expect(page.locator("#do-call")).to_be_enabled()
    assert current(hall)["number"] == second["number"]
    waiting = hall.api("GET", "/windows/3/waiting")["tickets"]
    assert [t["number"] for t in waiting] == [third["number"]]


def test_keys_do_nothing_while_typing(hall, open_page):
    clear(hall)
    issue(hall)
    page = console(open_page, hall)
    expect(page.locator("#waiting-count")).to_have_text("1")
    page.keyboard.press("Space")
    expect(page.locator("#number")).not_to_have_text("—")
    page.keyboard.press("t")
    expect(page.locator("#transfer-filter")).to_be_focused()
    sent = presses(page)
    page.keyboard.type("n c x s r p ")                       # every shortcut, typed as a filter
    assert presses(page) == sent
    assert page.locator("#transfer-filter").input_value() == "n c x s r p "
    page.keyboard.press("Escape")
    assert current(hall)["status"] == "called"


def test_nobody_waiting_says_so(hall, open_page):
    clear(hall)
    page = console(open_page, hall)
    expect(page.locator("#waiting-count")).to_have_text("0")
    expect(page.locator("#waiting-list")).to_have_text("暂无等候")
    page.keyboard.press("F1")
    expect(page.locator("#last")).to_have_text("当前无人等候")
    expect(page.locator("#toast")).to_have_text("当前无人等候")
    assert current(hall) is None
    shot(page, "window-nobody")
    clean(page)


def test_english_and_a_small_screen(hall, open_page):
    clear(hall)
    issue(hall)
    first = issue(hall, priority=True)
    page = console(open_page, hall, viewport=SMALL)
    expect(page.locator("#waiting-count")).to_have_text("2")
    expect(page.locator("#waiting-list li").first).to_contain_text("优先")
    expect(page.locator("#priority")).to_be_hidden()
    page.keyboard.press("Space")
    expect(page.locator("#number")).to_have_text(first["number"])     # priority first
    expect(page.locator("#priority")).to_be_visible()
    expect(page.locator("#do-call")).to_be_enabled()
    shot(page, "window-small")
    clean(page)
    page.locator("#lang").click()
    expect(page.locator("#do-call")).to_contain_text("Call next")
    expect(page.locator("#status")).to_have_text("Called, not yet at the window")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.keyboard.press("r")
    expect(page.locator("#last")).to_have_text(re.compile(r"^Recalled \w+ \(time 1\)$"))
    page.set_viewport_size(DESKTOP)
    shot(page, "window-english")
    clean(page)


def test_without_a_window_it_lists_them(hall, open_page):
    page = open_page(f"{hall.url}/ui/window", viewport=DESKTOP)
    links = page.locator("#windows a")
    expect(links).to_have_count(len(hall.api("GET", "/windows")))
    expect(links.nth(2)).to_contain_text("3号窗口")
    expect(links.nth(2)).to_contain_text("不动产登记")
    links.nth(2).click()
    expect(page.locator("#title")).to_have_text("3号窗口")
    assert page.url.endswith("/ui/window?window=3")


def test_a_window_of_another_floor_says_where_its_console_is(tmp_path_factory, open_page):
    """A hall of several daemons: window 2 is managed by the daemon `west`; its
    console opened on this one (`east`) says so instead of offering buttons."""
    for hall in running_hall(tmp_path_factory, "window-elsewhere", edits={
            r'^# instance = "east-wing" .*$': 'instance = "east"',
            r'^(id = "2"\nname = "2号窗口"\n)': '\\1instance = "west"\n'}):
        page = open_page(f"{hall.url}/ui/window?window=2", viewport=DESKTOP)
        expect(page.locator("#elsewhere")).to_contain_text("窗口 2 由 west 楼层的服务程序管理")
        expect(page.locator("#console")).to_be_hidden()
        expect(page.locator("#windows a")).to_have_count(len(hall.api("GET", "/windows")))
        shot(page, "window-elsewhere")
        hall.api("POST", "/windows/2/call-next", expect=409)


# ------------------------------------------------------------------ tokens


def test_a_token_is_asked_for_kept_and_checked_by_the_daemon(guarded, open_page):
    issue(guarded)
    # No token: the form, before anything can be pressed.
    page = console(open_page, guarded)
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#console")).to_be_hidden()
    expect(page.locator("#login-why")).to_have_text("请输入本窗口的令牌。")
    expect(page.locator("#login-token")).to_be_focused()
    shot(page, "window-token")
    clean(page)
    page.keyboard.type("clerk-3-token")
    page.keyboard.press("Enter")
    expect(page.locator("#console")).to_be_visible()
    page.keyboard.press("Space")
    expect(page.locator("#last")).to_have_text(re.compile(r"^已呼叫 A\d{3}$"))
    assert current(guarded)["status"] == "called"
    # Kept for tomorrow: a reload asks for nothing.
    page.reload()
    expect(page.locator("#console")).to_be_visible()
    expect(page.locator("#number")).to_have_text(current(guarded)["number"])
    assert page.evaluate("localStorage.getItem('kioskd.token.window.3')") == "clerk-3-token"

    # From the address's fragment, which the page then takes out of the address bar.
    page = console(open_page, guarded, fragment="#token=clerk-3-token")
    expect(page.locator("#console")).to_be_visible()
    assert "token" not in page.url
    page.keyboard.press("c")
    expect(page.locator("#last")).to_have_text(re.compile(r"^已办结 A\d{3}$"))
    assert current(guarded) is None

    # Window 3's token at window 4: the daemon's 403, in its own words.
    refused = guarded.http.post("/windows/4/call-next",
                                headers={"Authorization": "Bearer clerk-3-token"})
    assert refused.status_code == 403
    page = console(open_page, guarded, window="4", fragment="#token=clerk-3-token")
    expect(page.locator("#login-why")).to_have_text(
        f"这个令牌不能操作本窗口：{refused.json()['detail']}")
    expect(page.locator("#console")).to_be_hidden()
    # A wrong token: the daemon's 401.
    page.locator("#login-token").fill("not-a-token")
    page.keyboard.press("Enter")
    expect(page.locator("#login-why")).to_have_text("令牌无效：unknown token")
    page.locator("#login-token").fill("clerk-4-token")
    page.keyboard.press("Enter")
    expect(page.locator("#console")).to_be_visible()
    expect(page.locator("#title")).to_have_text("4号窗口")
