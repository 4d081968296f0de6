"""The touch-query terminal (/ui/kiosk) and the ticket's status page (/ui/ticket/{id})
in a real browser against the real demo hall: a citizen walks category → service →
guide, takes a (priority) number that the emulated printer prints, reads it huge with
the people ahead; a printer out of paper leaves the number and a QR code on screen;
elder mode, English, the idle reset, the terminal's heartbeat and reload; the ticket's
page on a phone follows the ticket until a window calls it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from drivers.escpos.codec import PrinterStatus
from pgserver import PgServer
from browser import (running_hall, LANDSCAPE, PHONE, PORTRAIT, axe_violations,  # noqa: F401
                     chromium, open_page, overflowing, shot, small_targets)

KIOSK_TOKEN = "kiosk-token-for-tests"   # the hall's kiosk role needs it: the page must send it
OFFLINE_AFTER_S = 8       # kiosk_1 goes offline this long after its page's last report
                          # (the page reports every 5 s; the shipped hall says 15)


@pytest.fixture(scope="module")
def hall(tmp_path_factory):
    """One demo hall for the module, its printer in this process (paper can run out)."""
    yield from running_hall(tmp_path_factory, "kiosk-hall", own_printer=True, edits={
        r"^offline_after_s = 15\b": f"offline_after_s = {OFFLINE_AFTER_S}",
        r"^kiosk = \[\]": f'kiosk = ["{KIOSK_TOKEN}"]'})


def open_kiosk(open_page, hall, viewport=PORTRAIT, idle=None):
    url = f"{hall.url}/ui/kiosk?terminal=kiosk_1" + (f"&idle={idle}" if idle else "")
    page = open_page(url + f"#token={KIOSK_TOKEN}", viewport=viewport, touch=True)
    page.wait_for_selector("body[data-ready]")
    expect(page.locator("#hall-name")).to_have_text("银川市民大厅（演示）")
    return page


def assert_clean(page):
    """What every screen a citizen sees must pass: axe (contrast included), finger-sized
    targets, nothing cut off or spilling."""
    assert axe_violations(page) == []
    assert small_targets(page) == []
    assert overflowing(page) == []


def look(page, name):
    shot(page, name)
    assert_clean(page)


def walk_to_guide(page, category, service):
    page.locator(".tile", has_text=category).tap()
    expect(page.locator("#screen-services")).to_be_visible()
    page.locator("#service-list .service", has_text=service).tap()
    expect(page.locator("#screen-guide")).to_be_visible()
    expect(page.locator("#guide-title")).to_have_text(service)


def result_ticket(page, hall):
    expect(page.locator("#screen-result")).to_be_visible()
    ticket_id = page.locator("#screen-result").get_attribute("data-ticket")
    return hall.api("GET", f"/tickets/{ticket_id}", expect=200)


def device_state(hall, device_id):
    return hall.device(device_id)["state"]


# ------------------------------------------------------------------ the terminal's life

def test_the_page_keeps_its_terminal_alive_and_reloads_when_asked(hall, open_page):
    hall.until(lambda: device_state(hall, "kiosk_1") == "offline", "kiosk_1 offline before its page",
               timeout=OFFLINE_AFTER_S + 5)
    page = open_kiosk(open_page, hall)
    hall.until(lambda: device_state(hall, "kiosk_1") == "ready", "kiosk_1 ready once its page runs")
    report = hall.device("kiosk_1")["detail"]["page"]
    assert report["page"] == "kiosk" and report["screen"] == "1080x1920"
    assert report["lang"] == "zh" and report["elder"] is False

    page.evaluate("window.beforeReload = true")
    with page.expect_event("load", timeout=15_000):
        hall.api("POST", "/devices/kiosk_1/reload", expect=200)
    assert page.evaluate("window.beforeReload") is None
    page.wait_for_selector("body[data-ready]")
    expect(page.locator("#screen-start")).to_be_visible()

    page.context.close()
    hall.until(lambda: device_state(hall, "kiosk_1") == "offline", "kiosk_1 offline once closed",
               timeout=OFFLINE_AFTER_S + 5)


def test_without_a_terminal_the_page_says_how_to_set_it_up(hall, open_page):
    page = open_page(f"{hall.url}/ui/kiosk", viewport=PORTRAIT, touch=True)
    expect(page.locator("#screen-setup")).to_be_visible()
    expect(page.locator("#setup-text")).to_contain_text("terminal")
    expect(page.locator("#setup-example")).to_contain_text("?terminal=")
    expect(page.locator("#screen-start")).to_be_hidden()
    shot(page, "kiosk-setup")
    assert_clean(page)


def test_a_long_press_or_right_click_opens_no_browser_menu(hall, open_page):
    """No Chromium flag disables the context menu (kioskd-kiosk@.service): the page
    refuses it. A real right click, through Chromium's input, on a service tile."""
    page = open_kiosk(open_page, hall)
    page.evaluate("() => { window.menus = []; addEventListener('contextmenu',"
                  " (event) => window.menus.push(event.defaultPrevented)); }")
    page.locator(".tile").first.click(button="right")
    page.wait_for_function("() => window.menus.length === 1")
    assert page.evaluate("() => window.menus") == [True]


def test_a_refused_token_asks_the_technician_for_one(hall, open_page):
    page = open_page(f"{hall.url}/ui/kiosk?terminal=kiosk_1#token=stale", viewport=PORTRAIT, touch=True)
    form = page.locator("#token-form")
    expect(form).to_be_visible()                                # the heartbeat heard 401
    expect(page.locator("#link")).to_have_class(re.compile(r"\blost\b"))
    expect(page.locator("#screen-start")).to_be_visible()       # the citizen's screen stays
    shot(page, "kiosk-token-form")
    assert_clean(page)
    page.locator("#token-input").fill(KIOSK_TOKEN)
    with page.expect_response(lambda r: r.url.endswith("/devices/kiosk_1/heartbeat")) as answer:
        page.locator("#token-form button").tap()
    assert answer.value.status == 200
    assert answer.value.request.headers["authorization"] == f"Bearer {KIOSK_TOKEN}"
    expect(form).to_be_hidden()
    expect(page.locator("#link")).not_to_have_class(re.compile(r"\blost\b"))
    assert page.evaluate("localStorage.getItem('kioskd.token.kiosk')") == KIOSK_TOKEN


# ------------------------------------------------------------------ taking a number

def test_portrait_category_service_guide_and_a_priority_number_that_prints(hall, open_page):
    printed_before = len(hall.printer.tickets)
    page = open_kiosk(open_page, hall, PORTRAIT)
    expect(page.locator(".tile")).to_have_count(4)
    assert "token" not in page.url                     # kept by the page, not left in the address
    look(page, "kiosk-portrait-start")

    walk_to_guide(page, "不动产", "不动产登记")
    expect(page.locator("#materials li")).to_have_count(6)
    expect(page.locator("#materials li").first).to_have_text("不动产登记申请书（窗口免费提供，可现场填写）")
    facts = page.locator("#facts")
    expect(facts).to_contain_text("5个工作日")                       # time limit
    expect(facts).to_contain_text("住宅每件80元")                     # fee
    expect(facts).to_contain_text("一楼东侧 3号、4号窗口")             # where
    expect(facts).to_contain_text("《不动产登记暂行条例》")             # basis
    look(page, "kiosk-portrait-guide")

    page.locator("#take-priority").tap()
    ticket = result_ticket(page, hall)
    assert ticket["priority"] is True and ticket["service"] == "property"
    assert ticket["print"]["status"] == "printed"
    expect(page.locator("#result-number")).to_have_text(ticket["number"])
    expect(page.locator("#result-priority")).to_be_visible()
    expect(page.locator("#result-ahead")).to_have_text(f"{ticket['waiting_ahead']} 人")
    expect(page.locator("#result-where")).to_have_text("一楼东侧 3号、4号窗口")
    expect(page.locator("#print-ok")).to_be_visible()
    expect(page.locator("#print-failed")).to_be_hidden()
    slip = hall.printer.wait_for_tickets(printed_before + 1, timeout=10)[-1]
    assert ticket["number"] in slip.text()
    look(page, "kiosk-portrait-result")

    page.locator("#done").tap()
    expect(page.locator("#screen-start")).to_be_visible()


def test_landscape_the_same_walk_fits_the_screen_and_one_press_is_one_number(hall, open_page):
    page = open_kiosk(open_page, hall, LANDSCAPE)
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and r.url.endswith("/tickets") else None)
    look(page, "kiosk-landscape-start")
    walk_to_guide(page, "企业服务", "企业开办（设立登记）")
    expect(page.locator("#materials li")).to_have_count(5)
    look(page, "kiosk-landscape-guide")

    waiting_before = {s["id"]: s["waiting"] for s in hall.api("GET", "/services")}["business"]
    page.locator("#take").evaluate("button => { button.click(); button.click(); }")   # an impatient double tap
    ticket = result_ticket(page, hall)
    assert ticket["priority"] is False and ticket["service"] == "business"
    expect(page.locator("#result-number")).to_have_text(ticket["number"])
    assert len(posts) == 1
    assert {s["id"]: s["waiting"] for s in hall.api("GET", "/services")}["business"] == waiting_before + 1
    look(page, "kiosk-landscape-result")


def test_a_printer_out_of_paper_leaves_the_number_and_a_qr_code_on_screen(hall, open_page):
    hall.printer.status = PrinterStatus(paper="out")
    try:
        page = open_kiosk(open_page, hall, PORTRAIT)
        walk_to_guide(page, "社保医保", "社会保障卡申领、补换")
        page.locator("#take").tap()
        ticket = result_ticket(page, hall)
        assert ticket["print"]["status"] == "failed"
        expect(page.locator("#result-number")).to_have_text(ticket["number"])
        expect(page.locator("#print-ok")).to_be_hidden()
        failed = page.locator("#print-failed")
        expect(failed).to_be_visible()
        expect(failed).to_contain_text("打印失败")
        expect(failed).to_contain_text("请记住您的号码")
        expect(failed).to_contain_text("扫描二维码")
        qr = page.locator("#result-qr")
        expect(qr).to_have_attribute("src", f"/api/v1/tickets/{ticket['id']}/qr.svg")
        page.wait_for_function("() => { const img = document.querySelector('#result-qr');"
                               " return img.complete && img.naturalWidth > 0; }")
        look(page, "kiosk-print-failed")
    finally:
        hall.printer.status = PrinterStatus()
        hall.api("POST", "/devices/printer_1/reconnect")
        hall.until(lambda: device_state(hall, "printer_1") == "ready", "printer_1 ready with paper",
                   timeout=15)


def test_a_failed_issue_says_so_in_plain_words_and_keeps_the_guide(hall, open_page):
    page = open_kiosk(open_page, hall, PORTRAIT)
    walk_to_guide(page, "住房公积金", "住房公积金提取")
    # the daemon answers 503 (its store is busy): the citizen reads plain words and keeps the guide
    page.route("**/api/v1/tickets", lambda route: route.fulfill(
        status=503, content_type="application/json",
        body='{"detail": "the store is not available"}'))
    page.locator("#take").tap()
    problem = page.locator("#issue-problem")
    expect(problem).to_be_visible()
    expect(problem).to_contain_text("请稍后再按一次")
    expect(page.locator("#guide-title")).to_have_text("住房公积金提取")
    expect(page.locator("#take")).to_be_enabled()
    shot(page, "kiosk-issue-failed")
    assert_clean(page)
    page.unroute("**/api/v1/tickets")
    page.locator("#take").tap()
    ticket = result_ticket(page, hall)
    assert ticket["service"] == "fund"
    expect(page.locator("#result-number")).to_have_text(ticket["number"])


def test_a_stuck_button_is_told_to_wait_in_plain_words(tmp_path_factory, open_page):
    """The daemon's [limits] for real: a hall allowing one ticket a minute per terminal."""
    for hall in running_hall(tmp_path_factory, "kiosk-limited", edits={
            r"^issue_per_terminal = 10\b": "issue_per_terminal = 1"}):
        page = open_page(f"{hall.url}/ui/kiosk?terminal=kiosk_1", viewport=PORTRAIT, touch=True)
        page.wait_for_selector("body[data-ready]")
        walk_to_guide(page, "住房公积金", "住房公积金提取")
        page.locator("#take").tap()
        first = result_ticket(page, hall)
        page.locator("#done").tap()
        walk_to_guide(page, "住房公积金", "住房公积金提取")
        page.locator("#take").tap()
        problem = page.locator("#issue-problem")
        expect(problem).to_be_visible()
        expect(problem).to_contain_text("请稍等片刻再按一次")
        assert "too many tickets from terminal kiosk_1" in \
            page.locator("#issue-problem-text").get_attribute("title")
        expect(page.locator("#take")).to_be_enabled()
        shot(page, "kiosk-rate-limited")
        waiting = hall.api("GET", "/queue", expect=200)["services"]
        assert sum(s["waiting"] for s in waiting) == 1 and first["number"]


def test_the_queue_database_away_is_said_plainly(tmp_path_factory, open_page):
    """The demo hall on a shared PostgreSQL store whose server stops: the kiosk says
    no number can be taken here for now, and where to go; back, it issues again."""
    server = PgServer()
    server.start()
    try:
        url = server.create_database()
        for hall in running_hall(tmp_path_factory, "kiosk-store-down", edits={
                r"^# \[store\]\n# url = .*$": f'[store]\nurl = "{url}"'}):
            page = open_page(f"{hall.url}/ui/kiosk?terminal=kiosk_1", viewport=PORTRAIT,
                             touch=True)
            page.wait_for_selector("body[data-ready]")
            server.stop("fast")
            walk_to_guide(page, "住房公积金", "住房公积金提取")
            page.locator("#take").tap()
            problem = page.locator("#issue-problem")
            expect(problem).to_be_visible()
            expect(problem).to_contain_text("取号系统暂时中断")
            expect(problem).to_contain_text("请到服务台取号")
            assert "database" in page.locator("#issue-problem-text").get_attribute("title")
            shot(page, "kiosk-store-down")
            server.start()
            hall.until(lambda: hall.http.get("/queue").status_code == 200,
                       "the daemon back on its database", timeout=30)
            page.locator("#take").tap()
            assert result_ticket(page, hall)["number"]
    finally:
        server.destroy()


# ------------------------------------------------------------------ for whoever stands there

def test_elder_mode_makes_everything_larger_and_starker(hall, open_page):
    page = open_kiosk(open_page, hall, PORTRAIT)
    page.locator(".tile", has_text="企业服务").tap()
    service = page.locator("#service-list .service").first
    size = lambda: service.evaluate("node => parseFloat(getComputedStyle(node).fontSize)")  # noqa: E731
    normal = size()
    page.locator("#elder").tap()
    expect(page.locator("body")).to_have_class(re.compile(r"\belder\b"))
    expect(page.locator("#elder")).to_have_attribute("aria-pressed", "true")
    assert size() > normal * 1.2
    look(page, "kiosk-elder")
    service.tap()
    expect(page.locator("#screen-guide")).to_be_visible()
    look(page, "kiosk-elder-guide")
    page.locator("#elder").tap()
    expect(page.locator("body")).not_to_have_class(re.compile(r"\belder\b"))


def test_english_switch(hall, open_page):
    page = open_kiosk(open_page, hall, PORTRAIT)
    page.locator("#lang").tap()
    expect(page.locator("#start-title")).to_have_text("What do you need to do?")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator(".tile").first).to_contain_text("Real estate")
    look(page, "kiosk-english-start")
    page.locator(".tile", has_text="Business").tap()
    page.locator("#service-list .service", has_text="Starting a business").tap()
    expect(page.locator("#take .take-main")).to_have_text("Take a number")
    expect(page.locator("#take-priority .take-sub")).to_have_text("Elderly, disabled, pregnant")
    expect(page.locator("#materials-title")).to_have_text("Documents to bring (5)")
    look(page, "kiosk-english-guide")
    page.locator("#lang").tap()
    expect(page.locator("#take .take-main")).to_have_text("取号")


def test_idle_returns_to_the_start_and_resets_elder_mode_and_language(hall, open_page):
    page = open_kiosk(open_page, hall, PORTRAIT, idle=2)
    page.locator("#elder").tap()
    page.locator("#lang").tap()
    walk_to_guide(page, "Real estate", "Real estate registration")
    page.locator("#take").tap()
    expect(page.locator("#screen-result")).to_be_visible()
    expect(page.locator("body")).to_have_class(re.compile(r"\belder\b"))
    expect(page.locator("#screen-start")).to_be_visible(timeout=6_000)
    expect(page.locator("#screen-result")).to_be_hidden()
    expect(page.locator("body")).not_to_have_class(re.compile(r"\belder\b"))
    expect(page.locator("#start-title")).to_have_text("请选择要办理的事项")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")


def test_live_waiting_counts(hall, open_page):
    page = open_kiosk(open_page, hall, PORTRAIT)
    walk_to_guide(page, "企业服务", "建筑工程施工许可证核发")
    waiting = {s["id"]: s["waiting"] for s in hall.api("GET", "/services")}["construction"]
    hall.api("POST", "/tickets", {"service": "construction"}, token=KIOSK_TOKEN, expect=201)
    expect(page.locator("#guide-load")).to_contain_text(f"现在等候 {waiting + 1} 人", timeout=5_000)


# ------------------------------------------------------------------ the ticket on a phone

def test_the_ticket_page_on_a_phone_follows_the_ticket_until_it_is_called(hall, open_page):
    ticket = hall.api("POST", "/tickets", {"service": "property"}, token=KIOSK_TOKEN, expect=201)
    page = open_page(f"{hall.url}/ui/ticket/{ticket['id']}", viewport=PHONE, touch=True)
    expect(page.locator("#number")).to_have_text(ticket["number"])
    expect(page.locator("#hall-name")).to_have_text("银川市民大厅（演示）")
    expect(page.locator("#status-word")).to_have_text("等待中")
    expect(page.locator("#ahead")).to_have_text(f"{ticket['waiting_ahead']} 人")
    look(page, "ticket-phone-waiting")

    for _ in range(ticket["waiting_ahead"] + 1):       # window 3 serves property only
        called = hall.api("POST", "/windows/3/call-next", expect=200)
        if called["id"] == ticket["id"]:
            break
    assert called["id"] == ticket["id"]
    expect(page.locator("#status-word")).to_have_text("请到 3号窗口 办理", timeout=5_000)
    expect(page.locator("#waiting-facts")).to_be_hidden()
    look(page, "ticket-phone-called")

    page.locator("#lang").tap()
    expect(page.locator("#status-word")).to_have_text("Please go to 3号窗口")
    shot(page, "ticket-phone-called-english")
    assert_clean(page)

    # Another ticket's page keeps the phone's language choice.
    page.goto(f"{hall.url}/ui/ticket/AAAAnot-a-ticket-at-all")
    expect(page.locator("#unknown")).to_be_visible()
    expect(page.locator("#unknown h2")).to_have_text("This ticket was not found")
    page.locator("#lang").tap()
    expect(page.locator("#unknown h2")).to_have_text("没有找到这张号票")
    expect(page.locator("#ticket")).to_be_hidden()
    look(page, "ticket-phone-unknown")


# ------------------------------------------------------------------ appointment check-in

def book(hall, code, service="property"):
    """An appointment whose slot is now on the daemon's clock: inside its check-in window."""
    slot = hall.api("GET", "/hall", expect=200)["now"]
    return hall.api("POST", "/appointments", {"service": service, "slot": slot, "code": code},
                    expect=201)


def tap_code(page, code):
    for char in code:
        key = page.locator(f'#keypad [data-key="{char}"]')
        if not key.count():                                   # on the other half of the keypad
            page.locator("#keypad .key-mode").tap()
        key.tap()


def test_check_in_on_the_keypad_gives_the_appointment_its_number(hall, open_page):
    printed_before = len(hall.printer.tickets)
    booked = book(hall, "24681357")
    page = open_kiosk(open_page, hall, PORTRAIT)
    entry = page.locator("#checkin-open")
    expect(entry).to_be_visible()
    expect(entry).to_contain_text("预约签到")
    look(page, "kiosk-checkin-start")
    page.locator("#checkin-open").tap()
    expect(page.locator("#screen-checkin")).to_be_visible()
    expect(page.locator("#checkin-code")).to_be_focused()      # a scanner types straight in
    expect(page.locator("#checkin-submit")).to_be_disabled()
    tap_code(page, "2468135")
    page.locator('#keypad [data-key="9"]').tap()               # a slip of the finger ...
    page.locator('#keypad [data-key="back"]').tap()            # ... taken back
    tap_code(page, "7")
    expect(page.locator("#checkin-code")).to_have_value("24681357")
    look(page, "kiosk-checkin-keypad")

    page.locator("#checkin-submit").tap()
    ticket = result_ticket(page, hall)
    assert ticket["appointment"] == booked["id"] and ticket["priority"] is True
    assert ticket["print"]["status"] == "printed"
    expect(page.locator("#result-number")).to_have_text(ticket["number"])
    expect(page.locator("#result-priority")).to_have_text("预约优先")
    note = page.locator("#result-appointment")
    expect(note).to_be_visible()
    expect(note).to_contain_text("签到成功")
    expect(page.locator("#result-where")).to_have_text("一楼东侧 3号、4号窗口")
    slip = hall.printer.wait_for_tickets(printed_before + 1, timeout=10)[-1]
    assert ticket["number"] in slip.text()
    look(page, "kiosk-checkin-result")
    appointment = hall.api("GET", f"/appointments/{booked['id']}", expect=200)
    assert appointment["status"] == "checked_in" and appointment["number"] == ticket["number"]

    page.locator("#done").tap()
    expect(page.locator("#screen-start")).to_be_visible()
    page.locator("#checkin-open").tap()
    expect(page.locator("#checkin-code")).to_have_value("")     # the next citizen starts afresh


def test_a_wrong_code_is_refused_in_plain_words_and_a_scanner_checks_in(hall, open_page):
    booked = book(hall, "SCAN-7Q2K")
    page = open_kiosk(open_page, hall, PORTRAIT)
    # A scanner on the start screen: the code and Enter, as keystrokes.
    page.keyboard.type("scan-0000")
    page.keyboard.press("Enter")
    expect(page.locator("#screen-checkin")).to_be_visible()
    problem = page.locator("#checkin-problem")
    expect(problem).to_be_visible()
    expect(problem).to_contain_text("没有找到这个签到码的预约")
    expect(page.locator("#checkin-code")).to_have_value("SCAN-0000")
    look(page, "kiosk-checkin-refused")

    page.keyboard.type("scan-7q2k")                            # the right code, scanned again
    expect(problem).to_be_hidden()
    page.keyboard.press("Enter")
    ticket = result_ticket(page, hall)
    assert ticket["appointment"] == booked["id"]
    expect(page.locator("#result-number")).to_have_text(ticket["number"])

    page.locator("#done").tap()
    page.locator("#checkin-open").tap()
    tap_code(page, "SCAN-7Q2K")
    page.locator("#checkin-submit").tap()
    expect(problem).to_contain_text(f"号码是 {ticket['number']}，请勿重复签到")
    page.locator("#checkin-problem [data-go=start]").tap()
    expect(page.locator("#screen-start")).to_be_visible()


def test_check_in_in_english_and_elder_mode_with_the_letter_keys(hall, open_page):
    booked = book(hall, "ELDER-42")
    page = open_kiosk(open_page, hall, LANDSCAPE)
    page.locator("#elder").tap()
    page.locator("#lang").tap()
    expect(page.locator("#checkin-open")).to_contain_text("Appointment check-in")
    look(page, "kiosk-checkin-elder-english-start")
    page.locator("#checkin-open").tap()
    expect(page.locator("#checkin-title")).to_have_text("Appointment check-in")
    page.locator("#keypad .key-mode").tap()
    expect(page.locator('#keypad [data-key="E"]')).to_be_visible()
    look(page, "kiosk-checkin-elder-english-letters")
    tap_code(page, "ELDER-42")
    expect(page.locator("#checkin-code")).to_have_value("ELDER-42")
    page.locator("#checkin-submit").tap()
    ticket = result_ticket(page, hall)
    assert ticket["appointment"] == booked["id"]
    expect(page.locator("#result-appointment")).to_contain_text("served ahead of walk-ins")
    expect(page.locator("#result-priority")).to_have_text("Appointment")
    page.locator("#lang").tap()
    expect(page.locator("#result-appointment")).to_contain_text("将优先为您办理")
    look(page, "kiosk-checkin-elder-result")


def test_idle_leaves_the_check_in_screen_and_forgets_the_code(hall, open_page):
    page = open_kiosk(open_page, hall, PORTRAIT, idle=2)
    page.locator("#checkin-open").tap()
    tap_code(page, "1234")
    expect(page.locator("#checkin-code")).to_have_value("1234")
    expect(page.locator("#screen-start")).to_be_visible(timeout=6_000)
    page.locator("#checkin-open").tap()
    expect(page.locator("#checkin-code")).to_have_value("")
