"""The technician's page (/ui/diagnostics) in a real browser against the demo hall:
every device with its state, a test print that the daemon's emulated printer really
prints (and whose ticket the page then shows), what board_3 shows after a call at
window 3, the voice's last announcement with its recording, the live device log,
and the token form of a hall whose technicians have tokens."""

from __future__ import annotations

import re
import pytest
from playwright.sync_api import expect

from browser import (running_hall, DESKTOP, DemoHall, axe_violations, chromium, open_page,  # noqa: F401 (fixtures)
                     overflowing, shot)
from drivers.escpos.codec import PrinterStatus

STATE_WORDS = {"ready": "正常", "degraded": "需要注意", "offline": "离线", "disabled": "已停用"}


@pytest.fixture(scope="module")
def hall(tmp_path_factory) -> DemoHall:
    yield from running_hall(tmp_path_factory, "diagnostics-hall")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> DemoHall:
    """The demo hall with a technician token: the page must ask for it. The
    supervisor needs one too: the devices are open to a role without tokens.
    printer_1 is the test's own emulated printer, so the test can take its paper."""
    yield from running_hall(tmp_path_factory, "diagnostics-guarded", own_printer=True, edits={
        r"^technician = \[\]": 'technician = ["tech-token"]',
        r"^supervisor = \[\]": 'supervisor = ["boss-token"]'})


def diagnostics(open_page, hall: DemoHall, fragment: str = "", token: str | None = None):
    page = open_page(f"{hall.url}/ui/diagnostics{fragment}", viewport=DESKTOP)
    count = len(hall.api("GET", "/devices", token=token, expect=200))
    expect(page.locator("article[data-device]")).to_have_count(count)
    return page


def card(page, device_id: str):
    return page.locator(f'article[data-device="{device_id}"]')


def clean(page) -> None:
    """What every screenshot state must be: no axe violation, nothing cut off."""
    assert axe_violations(page) == []
    assert overflowing(page) == []


def call_at_3(hall: DemoHall) -> dict:
    """Someone takes a 不动产登记 number and window 3 calls: the ticket it called."""
    hall.api("POST", "/tickets", {"service": "property"}, expect=201)
    return hall.api("POST", "/windows/3/call-next", expect=200)


def watch_busy(page, selector: str) -> None:
    """Record every aria-busy value the button takes, however briefly."""
    page.evaluate("""(selector) => {
        const button = document.querySelector(selector);
        window.busySeen = [];
        new MutationObserver(() => window.busySeen.push(button.getAttribute('aria-busy') + ':' +
                                                        button.textContent))
            .observe(button, {attributes: true, childList: true, characterData: true, subtree: true});
    }""", selector)


# ------------------------------------------------------------------ devices and the printer

def test_every_device_is_listed_with_its_state_and_a_test_print_shows_the_ticket(open_page, hall):
    page = diagnostics(open_page, hall)
    devices = hall.api("GET", "/devices", expect=200)
    for device in devices:
        box = card(page, device["id"])
        expect(box.locator(".device-id")).to_have_text(device["id"])
        expect(box.locator(".badge-box .badge")).to_have_text(STATE_WORDS[device["state"]])
        expect(box.locator(".driver")).to_contain_text(device["driver"])
        if device["driver"] == "terminal":           # test and reconnect make no sense there
            expect(box.get_by_role("button", name="重新加载页面")).to_be_visible()
            expect(box.get_by_role("button", name="测试")).to_have_count(0)
        else:
            expect(box.get_by_role("button", name="测试")).to_be_visible()
            expect(box.get_by_role("button", name="重连")).to_be_visible()
    printer = card(page, "printer_1")
    expect(printer.locator(".facts dd").first).to_have_text("正常")      # paper, from detail
    expect(printer).to_contain_text("已关闭")                           # the cover
    shot(page, "diagnostics-devices", full_page=True)
    clean(page)

    jobs = hall.device("printer_1")["detail"]["emulator"]["jobs"]
    before = printer.locator("img.ticket-image").get_attribute("src")
    watch_busy(page, 'article[data-device="printer_1"] button[data-action="test"]')
    printer.get_by_role("button", name="测试").click()
    expect(printer.locator(".outcome")).to_contain_text("测试页已打印", timeout=15_000)
    assert page.evaluate("window.busySeen").count("true:测试中…") >= 1, "no progress was shown"
    assert hall.device("printer_1")["detail"]["emulator"]["jobs"] == jobs + 1
    page.wait_for_function("""(before) => {
        const image = document.querySelector('article[data-device="printer_1"] img.ticket-image');
        return image && !image.hidden && image.src.startsWith('blob:') && image.src !== before &&
               image.complete && image.naturalWidth > 0;
    }""", arg=before)
    printer.scroll_into_view_if_needed()
    shot(page, "diagnostics-printer-test")
    clean(page)

    # a ticket issued at the kiosk prints on printer_1: the page shows that ticket next
    shown = printer.locator("img.ticket-image").get_attribute("src")
    ticket = hall.api("POST", "/tickets", {"service": "fund", "terminal": "kiosk_1"}, expect=201)
    assert ticket["print"] == {"device": "printer_1", "status": "printed", "error": None}
    page.wait_for_function("""(before) => {
        const image = document.querySelector('article[data-device="printer_1"] img.ticket-image');
        return image.src !== before && image.src.startsWith('blob:') && image.complete &&
               image.naturalWidth > 0;
    }""", arg=shown)
    expect(printer).to_contain_text(f"{jobs + 2} 张")


# ------------------------------------------------------------------ boards and the voice

def test_board_3_shows_the_number_called_at_window_3_and_reconnects_from_the_page(open_page, hall):
    page = diagnostics(open_page, hall)
    ticket = call_at_3(hall)
    board = card(page, "board_3")
    rows = board.locator(".board-row")
    expect(rows.nth(0)).to_contain_text(ticket["number"], timeout=10_000)     # should show
    expect(rows.nth(1)).to_contain_text(ticket["number"], timeout=10_000)     # written
    expect(rows.nth(2)).to_contain_text(ticket["number"], timeout=10_000)     # the emulator read
    assert hall.device("board_3")["detail"]["emulator"]["shows"].strip() == ticket["number"]

    board.get_by_role("button", name="重连").click()
    expect(board.locator(".outcome")).to_contain_text("已重连，现在：正常", timeout=15_000)
    expect(board.get_by_role("button", name="重连")).to_be_enabled()


def test_the_keypads_card_lists_the_keypads_and_its_test_shows_on_every_display(open_page, hall):
    page = diagnostics(open_page, hall)
    keypads = card(page, "keypads")
    expect(keypads).to_contain_text("呼叫器与评价器")
    expect(keypads).to_contain_text("3→3  4→4  5→5")             # callers: address → window
    expect(keypads).to_contain_text("103→3  104→4  105→5")       # raters
    expect(keypads).to_contain_text("还没有按键")
    keypads.get_by_role("button", name="测试").click()
    expect(keypads.locator(".outcome")).to_contain_text("各键盘显示了“测试”", timeout=15_000)
    expect(keypads).to_contain_text("103号：测试（鸣响 1 次）", timeout=10_000)   # the emulator read
    displays = hall.device("keypads")["detail"]["emulator"]["keypads"]
    assert {address: k["shows"] for address, k in displays.items()} == {
        a: "测试" for a in ("3", "4", "5", "103", "104", "105")}
    keypads.scroll_into_view_if_needed()
    shot(page, "diagnostics-keypads")
    clean(page)


def test_the_voice_card_shows_the_last_announcement_and_plays_its_recording(open_page, hall):
    page = diagnostics(open_page, hall)
    voice = card(page, "voice")
    before = voice.locator("audio").get_attribute("src")
    ticket = call_at_3(hall)
    words = f"请{ticket['number']}号到3号窗口办理"
    expect(voice.locator(".said")).to_have_text(words, timeout=30_000)
    page.wait_for_function("""(before) => {
        const audio = document.querySelector('article[data-device="voice"] audio');
        return audio && !audio.hidden && audio.src.startsWith('blob:') && audio.src !== before &&
               audio.duration > 1;
    }""", arg=before, timeout=20_000)
    last = hall.device("voice")["detail"]["last_announcement"]
    assert last["text"] == words
    duration = page.evaluate("document.querySelector('article[data-device=\"voice\"] audio').duration")
    assert abs(duration - last["duration_s"]) < 0.5, (duration, last["duration_s"])
    expect(voice).to_contain_text(f"{last['duration_s']:.1f} 秒")
    voice.scroll_into_view_if_needed()
    shot(page, "diagnostics-voice")
    clean(page)


# ------------------------------------------------------------------ the live log

def test_a_device_event_appears_in_the_log_and_its_card_follows(open_page, hall):
    assert hall.device("kiosk_1")["state"] == "offline", "kiosk_1 is offline until a page reports"
    page = diagnostics(open_page, hall)
    expect(page.locator("#link-state")).to_have_text("● 实时连接")
    expect(page.locator("#log-empty")).to_be_visible()
    kiosk = card(page, "kiosk_1")
    expect(kiosk.locator(".badge-box .badge")).to_have_text("离线")

    hall.api("POST", "/devices/kiosk_1/heartbeat", {"page": "kiosk", "screen": "1080x1920"},
             expect=200)
    line = page.locator('#log li[data-device="kiosk_1"][data-type="device.changed"]').first
    expect(line).to_contain_text("状态 → 正常")
    expect(line.locator("time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
    expect(page.locator("#log-empty")).to_be_hidden()
    expect(kiosk.locator(".badge-box .badge")).to_have_text("正常")
    expect(kiosk).to_contain_text("1080x1920")                   # what its page reported
    shot(page, "diagnostics-log")
    clean(page)

    kiosk.get_by_role("button", name="重新加载页面").click()
    expect(kiosk.locator(".outcome")).to_contain_text("已要求终端页面重新加载")
    assert hall.device("kiosk_1")["detail"]["reloads_asked"] == 1

    page.get_by_role("button", name="English").click()
    expect(page.locator("h1")).to_have_text("Device diagnostics")
    expect(line).to_contain_text("state → ready")
    expect(kiosk.locator(".badge-box .badge")).to_have_text(re.compile("ready|offline"))
    shot(page, "diagnostics-english")
    clean(page)


# ------------------------------------------------------------------ the token

def test_a_hall_with_technician_tokens_asks_for_one(open_page, guarded):
    page = open_page(f"{guarded.url}/ui/diagnostics", viewport=DESKTOP)
    form = page.locator("#token-form")
    expect(form).to_be_visible()
    expect(page.locator("#main")).to_be_hidden()
    expect(form).to_contain_text("需要技术人员令牌")
    shot(page, "diagnostics-token-form")
    clean(page)

    page.get_by_label("令牌").fill("wrong-token")
    page.get_by_role("button", name="确定").click()
    expect(form).to_be_visible()
    expect(page.locator("article[data-device]")).to_have_count(0)

    page.get_by_label("令牌").fill("tech-token")
    page.get_by_role("button", name="确定").click()
    expect(form).to_be_hidden()
    expect(page.locator('article[data-device="printer_1"]')).to_be_visible()

    fresh = open_page(f"{guarded.url}/ui/diagnostics#token=tech-token", viewport=DESKTOP)
    expect(fresh.locator('article[data-device="board_3"]')).to_be_visible()
    assert "tech-token" not in fresh.url


def test_a_failed_test_shows_the_daemons_reason(open_page, guarded):
    page = diagnostics(open_page, guarded, "#token=tech-token", token="tech-token")
    printer = card(page, "printer_1")
    expect(printer.locator(".badge-box .badge")).to_have_text("正常")
    guarded.printer.status = PrinterStatus(paper="out")
    try:
        printer.get_by_role("button", name="测试").click()
        refused = guarded.http.post("/devices/printer_1/test",
                                    headers={"Authorization": "Bearer tech-token"})
        assert refused.status_code == 503
        expect(printer.locator(".outcome")).to_contain_text(f"失败：{refused.json()['detail']}",
                                                            timeout=15_000)
        expect(printer.locator(".badge-box .badge")).to_have_text("离线")
        expect(printer.locator(".last-error")).to_contain_text("paper out")
        shot(page, "diagnostics-test-failed")
        clean(page)
    finally:
        guarded.printer.status = PrinterStatus()
    printer.get_by_role("button", name="重连").click()               # paper loaded: back at once
    expect(printer.locator(".outcome")).to_contain_text("已重连，现在：正常", timeout=15_000)
    expect(printer.locator(".badge-box .badge")).to_have_text("正常")
    expect(printer.locator(".last-error")).to_contain_text("上次的问题（已恢复）：paper out")
