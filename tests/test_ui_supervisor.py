"""The supervisor's page (/ui/supervisor) in a real browser against the demo hall: how
many wait for each service, each window's load, opening and closing the temporary
window (and a window that refuses to close), today's waits as a chart, an alert
raised live when the printer's paper runs low (printer_1 is the test's own emulated
printer here, so the test can take its paper away), acknowledging an alert with one
press, and a crowd's alert opening the temporary window it suggests."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from browser import (running_hall, DESKTOP, TV, DemoHall, axe_violations, chromium, open_page,  # noqa: F401
                     overflowing, shot)
from drivers.escpos.codec import PrinterStatus


# The kiosk page never runs in these halls: its terminal would warn after a minute.
QUIET_TERMINAL = {r"^device_offline_s = 60": "device_offline_s = 0"}


@pytest.fixture(scope="module")
def hall(tmp_path_factory) -> DemoHall:
    yield from running_hall(tmp_path_factory, "supervisor-hall", own_printer=True,
                            edits=QUIET_TERMINAL)


@pytest.fixture(scope="module")
def alerting(tmp_path_factory) -> DemoHall:
    """The demo hall quick to warn: a pause of 2 s, more than one waiting per open
    window, looked at every 0.2 s."""
    yield from running_hall(tmp_path_factory, "supervisor-alerting", edits={
        **QUIET_TERMINAL, r"^check_every_s = 5": "check_every_s = 0.2",
        r"^pause_min = 15": "pause_min = 0.03", r"^waiting_per_window = 10": "waiting_per_window = 1"})


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> DemoHall:
    """The demo hall with a supervisor token: the page must ask for it."""
    yield from running_hall(tmp_path_factory, "supervisor-guarded",
                            edits={r"^supervisor = \[\]": 'supervisor = ["boss-token"]'})


def supervisor(open_page, hall: DemoHall, viewport=DESKTOP, fragment: str = ""):
    page = open_page(f"{hall.url}/ui/supervisor{fragment}", viewport=viewport)
    expect(page.locator("#main")).to_be_visible()
    expect(page.locator("#services tr")).to_have_count(len(hall.api("GET", "/queue", expect=200)["services"]))
    expect(page.locator("#link-state")).to_have_text("● 实时连接")
    return page


def clean(page) -> None:
    """What every screenshot state must be: no axe violation, nothing cut off."""
    assert axe_violations(page) == []
    assert overflowing(page) == []


def issue(hall: DemoHall, service: str) -> dict:
    return hall.api("POST", "/tickets", {"service": service}, expect=201)


def row(page, window: str):
    return page.locator(f'#windows tr[data-window="{window}"]')


def matches_the_queue(page, hall: DemoHall) -> None:
    """Every service's row says what GET /queue says: how many wait, how many of its
    windows are open now, the estimate."""
    queue = hall.api("GET", "/queue", expect=200)
    for service in queue["services"]:
        line = page.locator(f'#services tr[data-service="{service["id"]}"]')
        open_now = sum(1 for w in queue["windows"]
                       if w["state"] == "open" and service["id"] in w["services"])
        expect(line.locator(".waiting")).to_have_text(str(service["waiting"]))
        expect(line.locator(".open")).to_have_text(str(open_now))
        expect(line.locator(".est")).to_have_text(f"{service['est_wait_min']} 分钟")
    expect(page.locator("#tile-waiting")).to_have_text(str(queue["waiting"]))


# ------------------------------------------------------------------ the queue

def test_a_fresh_day_then_waiting_per_service_follows_the_queue(open_page, hall):
    assert hall.api("GET", "/stats", expect=200)["hours"] == [], "this module's hall starts fresh"
    page = supervisor(open_page, hall)
    expect(page.locator("#chart")).to_contain_text("今天还没有数据")
    expect(page.locator("#chart svg")).to_have_count(0)
    expect(page.locator("#alerts")).to_contain_text("没有未处理的告警")
    matches_the_queue(page, hall)
    clean(page)

    for service in ["property", "property", "property", "social", "social", "business", "fund"]:
        issue(hall, service)
    expect(page.locator('#services tr[data-service="property"] .waiting')).to_have_text("3")
    matches_the_queue(page, hall)
    expect(page.locator("#tile-issued")).to_have_text("7", timeout=10_000)   # statistics: every 3 s at most
    shot(page, "supervisor-overview")
    clean(page)

    wide = supervisor(open_page, hall, viewport=TV)
    matches_the_queue(wide, hall)
    shot(wide, "supervisor-overview-1920")
    clean(wide)


def test_a_service_nobody_can_serve_or_that_waits_long_is_flagged(open_page, hall):
    page = supervisor(open_page, hall)
    # 企业开办 is served at window 1 and T1 only: with window 1 closed, nobody serves it
    issue(hall, "business")
    hall.api("POST", "/windows/1/close", expect=200)
    try:
        line = page.locator('#services tr[data-service="business"]')
        expect(line.locator(".open")).to_have_text("0")
        expect(line.locator(".note")).to_have_text("⚠ 没有开放的窗口")
        expect(line).to_have_class("long bad")
        expect(row(page, "1").locator(".badge")).to_have_text("关闭")
        clean(page)
    finally:
        hall.api("POST", "/windows/1/open", expect=200)

    # open again, but 企业开办 takes 20 minutes a ticket at one window: a long wait
    def business() -> dict:
        return next(s for s in hall.api("GET", "/queue", expect=200)["services"] if s["id"] == "business")
    while business()["est_wait_min"] < 30:
        issue(hall, "business")
    est = business()["est_wait_min"]
    expect(line.locator(".est")).to_have_text(f"{est} 分钟")
    expect(line.locator(".note")).to_have_text("⚠ 等候很长，考虑开临时窗口" if est >= 60 else "⚠ 等候较长")
    expect(line).to_have_class("long bad" if est >= 60 else "long warn")
    quiet = page.locator('#services tr[data-service="investment"]')     # nobody waits for it
    expect(quiet.locator(".note")).to_have_text("")
    expect(quiet).not_to_have_class("long")


# ------------------------------------------------------------------ windows

def test_the_temporary_window_opens_and_closes_from_the_page_and_a_busy_window_refuses(
        open_page, hall):
    page = supervisor(open_page, hall)
    assert hall.api("GET", "/windows/T1", expect=200)["state"] == "closed"   # temporary: starts closed
    t1 = row(page, "T1")
    expect(t1.locator(".badge")).to_have_text("关闭")
    expect(t1).to_contain_text("临时")

    t1.get_by_role("button", name="开启").click()
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("开启临时窗口？")
    shot(page, "supervisor-confirm-open")
    clean(page)
    dialog.get_by_role("button", name="取消").click()           # changing one's mind changes nothing
    expect(dialog).to_be_hidden()
    assert hall.api("GET", "/windows/T1", expect=200)["state"] == "closed"

    t1.get_by_role("button", name="开启").click()
    dialog.get_by_role("button", name="确定开启").click()
    hall.until(lambda: hall.api("GET", "/windows/T1")["state"] == "open", "T1 opened")
    expect(t1.locator(".badge")).to_have_text("开放")
    expect(page.locator("#tile-windows")).to_have_text("7 / 7")

    t1.get_by_role("button", name="关闭").click()
    expect(dialog).to_contain_text("关闭临时窗口？")
    dialog.get_by_role("button", name="确定关闭").click()
    hall.until(lambda: hall.api("GET", "/windows/T1")["state"] == "closed", "T1 closed")
    expect(t1.locator(".badge")).to_have_text("关闭")

    # window 3 with someone at it cannot close: the daemon says why, the page shows it
    issue(hall, "property")
    ticket = hall.api("POST", "/windows/3/call-next", expect=200)
    w3 = row(page, "3")
    expect(w3.locator(".current")).to_contain_text(f"{ticket['number']} 已呼叫")
    w3.get_by_role("button", name="关闭").click()
    dialog.get_by_role("button", name="确定关闭").click()
    problem = page.locator("#window-problem")
    expect(problem).to_be_visible()
    refused = hall.http.post("/windows/3/close")
    assert refused.status_code == 409
    expect(problem).to_contain_text(refused.json()["detail"])
    expect(problem).to_contain_text("没能关闭3号窗口")
    assert hall.api("GET", "/windows/3", expect=200)["state"] == "open"
    expect(w3.locator(".badge")).to_have_text("开放")
    shot(page, "supervisor-close-refused")
    clean(page)
    problem.get_by_role("button", name="知道了").click()
    expect(problem).to_be_hidden()


# ------------------------------------------------------------------ the chart

def test_the_chart_draws_this_hours_waits(open_page, hall):
    page = supervisor(open_page, hall)
    for service in ["social", "medical", "social"]:
        issue(hall, service)
    for window in ["2", "6", "2"]:
        hall.api("POST", f"/windows/{window}/call-next", expect=200)
    stats = hall.api("GET", "/stats", expect=200)
    hour = max(stats["hours"], key=lambda h: h["hour"])
    assert hour["called"] >= 3 and hour["wait_max_min"] is not None

    chart = page.locator("#chart svg")
    expect(chart).to_be_visible(timeout=10_000)               # statistics: every 3 s at most
    for what, minutes in (("p50", hour["wait_p50_min"]), ("max", hour["wait_max_min"])):
        bar = chart.locator(f'rect.bar.{what}[data-hour="{hour["hour"]}"]')
        expect(bar).to_have_count(1, timeout=10_000)
        hall.until(lambda: float(bar.get_attribute("data-minutes")) == minutes,   # this test's calls
                   f"the {what} bar at {hour['hour']}h shows {minutes} min")
        assert float(bar.get_attribute("height")) > 0
    expect(chart.locator(".tick").filter(has_text=re.compile(rf"^{hour['hour']}时$"))).to_have_count(1)
    expect(chart.locator(".axis-title")).to_have_text("分钟")
    longest = max((h for h in stats["hours"] if h["wait_max_min"] is not None),
                  key=lambda h: h["wait_max_min"])              # an earlier hour's, maybe
    expect(page.locator(".chart-summary")).to_contain_text(f"在 {longest['hour']}时")
    page.locator(".chart").scroll_into_view_if_needed()
    shot(page, "supervisor-chart")
    clean(page)


# ------------------------------------------------------------------ alerts

def test_an_alert_raised_while_the_page_is_open_shows_and_clears(open_page, hall):
    assert hall.api("GET", "/alerts", expect=200) == []
    page = supervisor(open_page, hall)
    alerts = page.locator("#alerts")
    expect(alerts).to_contain_text("没有未处理的告警")
    expect(page.locator("#tile-alerts")).to_have_text("0")

    hall.printer.status = PrinterStatus(paper="near_end")
    hall.api("POST", "/devices/printer_1/reconnect", expect=200)    # reads it now, not at the next poll
    try:
        item = alerts.locator('li.alert-item[data-kind="paper_near_end"]')
        expect(item).to_be_visible(timeout=15_000)                  # live: the `alert` event
        expect(item).to_contain_text("打印纸将尽")
        expect(item).to_contain_text("设备 printer_1")
        expect(item.locator(".alert-state")).to_have_text("未确认")
        expect(item).to_contain_text("已持续 0 分钟")
        listed = hall.api("GET", "/alerts", expect=200)
        assert [(a["kind"], a["device"]) for a in listed] == [("paper_near_end", "printer_1")]
        expect(item).to_contain_text(listed[0]["message"])
        expect(page.locator("#tile-alerts")).to_have_text("1")
        page.locator(".alerts").scroll_into_view_if_needed()
        shot(page, "supervisor-alert")
        clean(page)

        again = supervisor(open_page, hall)                        # and from GET /alerts
        expect(again.locator('#alerts li[data-kind="paper_near_end"]')).to_be_visible()
    finally:
        hall.printer.status = PrinterStatus()
        hall.api("POST", "/devices/printer_1/reconnect")
    expect(alerts).to_contain_text("没有未处理的告警", timeout=15_000)
    expect(page.locator("#tile-alerts")).to_have_text("0")


def alert_item(page, kind: str):
    return page.locator(f'#alerts li.alert-item[data-kind="{kind}"]')


def test_an_alert_is_acknowledged_with_one_press_and_closes_when_its_condition_ends(
        open_page, alerting):
    page = supervisor(open_page, alerting)
    alerting.api("POST", "/windows/6/pause", expect=200)
    try:
        item = alert_item(page, "paused")
        expect(item).to_be_visible(timeout=10_000)          # 2 s paused, then the watch's look
        expect(item).to_contain_text("暂停过长")
        expect(item).to_contain_text("6号窗口：暂停已超过 0.03 分钟")
        expect(item.locator(".alert-state")).to_have_text("未确认")
        expect(page.locator("#tile-alerts")).to_have_class(re.compile(r"\bbad\b"))
        page.locator(".alerts").scroll_into_view_if_needed()
        shot(page, "supervisor-alert-paused")
        clean(page)

        item.get_by_role("button", name="确认告警：暂停过长").click()   # one press, no dialog
        expect(page.locator("#confirm")).to_be_hidden()
        expect(item.locator(".alert-state")).to_have_text("已确认")
        expect(item).to_contain_text("supervisor 已于")
        expect(item.get_by_role("button", name="确认告警：暂停过长")).to_have_count(0)
        [listed] = [a for a in alerting.api("GET", "/alerts", expect=200) if a["kind"] == "paused"]
        assert (listed["state"], listed["acked_by"]) == ("acknowledged", "supervisor")
        expect(item).to_contain_text(f"supervisor 已于 {listed['acked_at'][11:16]} 确认")
        expect(page.locator("#tile-alerts")).not_to_have_class(re.compile(r"\bbad\b"))
        shot(page, "supervisor-alert-acknowledged")
        clean(page)

        other = supervisor(open_page, alerting)             # another supervisor's page, live
        expect(alert_item(other, "paused").locator(".alert-state")).to_have_text("已确认")
    finally:
        alerting.api("POST", "/windows/6/resume", expect=200)
    expect(item).to_have_count(0, timeout=10_000)            # resumed: closed by itself
    closed = [a for a in alerting.api("GET", "/alerts?state=all", expect=200)
              if a["id"] == listed["id"]]
    assert closed[0]["closed_by"] == "system"


def test_a_crowds_alert_opens_the_temporary_window_it_suggests(open_page, alerting):
    page = supervisor(open_page, alerting)
    assert alerting.api("GET", "/windows/T1", expect=200)["state"] == "closed"
    for _ in range(3):                                      # 不动产: windows 3 and 4, 1.5 each
        issue(alerting, "property")
    item = alert_item(page, "load")
    expect(item).to_be_visible(timeout=10_000)
    expect(item).to_contain_text("不动产登记：每个开放窗口平均 1.5 人等候，建议开放 临时窗口（临时）")
    expect(item.locator(".alert-suggest")).to_have_text("➜ 建议开放 临时窗口（临时）")
    page.locator(".alerts").scroll_into_view_if_needed()
    shot(page, "supervisor-alert-suggestion")
    clean(page)
    page.get_by_role("button", name="English").click()       # said again from its figures
    expect(item).to_contain_text("Real estate registration: 1.5 waiting per open window")
    expect(item.locator(".alert-suggest")).to_have_text("➜ Suggested: open 临时窗口 (temporary)")
    shot(page, "supervisor-alert-suggestion-english")
    clean(page)
    page.get_by_role("button", name="中文").click()

    item.get_by_role("button", name="开放临时窗口").click()
    dialog = page.locator("#confirm")
    expect(dialog).to_contain_text("开启临时窗口？")            # the page's own confirmation
    dialog.get_by_role("button", name="确定开启").click()
    alerting.until(lambda: alerting.api("GET", "/windows/T1")["state"] == "open", "T1 opened")
    expect(row(page, "T1").locator(".badge")).to_have_text("开放")
    expect(item).to_have_count(0, timeout=10_000)            # 3 for 3 windows: over
    assert [a for a in alerting.api("GET", "/alerts", expect=200) if a["kind"] == "load"] == []
    clean(page)


# ------------------------------------------------------------------ English

def test_the_page_in_english(open_page, hall):
    page = supervisor(open_page, hall)
    page.get_by_role("button", name="English").click()
    expect(page.locator("h1")).to_have_text("Hall supervision")
    expect(page.locator('#services tr[data-service="property"] th')).to_have_text("Real estate registration")
    expect(row(page, "T1").locator(".badge")).to_have_text("closed")
    expect(page.get_by_role("button", name="中文")).to_be_visible()
    shot(page, "supervisor-english")
    clean(page)
    page.get_by_role("button", name="中文").click()
    expect(page.locator("h1")).to_have_text("大厅管理")


# ------------------------------------------------------------------ the token

def test_a_hall_with_a_supervisor_token_asks_for_it_and_acts_with_it(open_page, guarded):
    page = open_page(f"{guarded.url}/ui/supervisor", viewport=DESKTOP)
    form = page.locator("#token-form")
    expect(form).to_be_visible()
    expect(form).to_contain_text("需要管理员令牌")
    expect(page.locator("#main")).to_be_hidden()
    shot(page, "supervisor-token-form")
    clean(page)

    page.get_by_label("令牌").fill("boss-token")
    page.get_by_role("button", name="确定").click()
    expect(form).to_be_hidden()
    expect(page.locator("#chart")).to_contain_text("今天还没有数据")

    fresh = supervisor(open_page, guarded, fragment="#token=boss-token")
    assert "boss-token" not in fresh.url
    row(fresh, "T1").get_by_role("button", name="开启").click()
    fresh.locator("#confirm").get_by_role("button", name="确定开启").click()
    guarded.until(lambda: guarded.api("GET", "/windows/T1")["state"] == "open", "T1 opened")
    expect(row(fresh, "T1").locator(".badge")).to_have_text("开放")


def test_the_statistics_download_as_a_csv_file_with_the_pages_token(open_page, guarded):
    """The export goes through the API with the supervisor's token (a plain link could
    not carry it): this month so far by default, a file Excel opens, the same
    figures as GET /stats."""
    issue(guarded, "property")
    issue(guarded, "social")
    page = supervisor(open_page, guarded, fragment="#token=boss-token")
    day = guarded.api("GET", "/hall", expect=200)["day"]
    first = f"{day[:8]}01"
    expect(page.locator("#export-to")).to_have_value(day)
    expect(page.locator("#export-from")).to_have_value(first)
    page.locator("#export-by").select_option("range")
    page.locator(".export").scroll_into_view_if_needed()
    shot(page, "supervisor-export")
    clean(page)
    with page.expect_download() as caught:
        page.get_by_role("button", name="下载").click()
    download = caught.value
    assert download.suggested_filename == f"kioskd-stats-{first}_{day}.csv"
    raw = Path(download.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")                   # Excel reads it as UTF-8
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    stats = guarded.api("GET", f"/stats?from={first}&to={day}", token="boss-token", expect=200)
    [hall_row] = [r for r in rows if r["scope"] == "hall"]
    assert hall_row["date"] == f"{first}/{day}"
    assert int(hall_row["issued"]) == stats["totals"]["issued"] >= 2
    services = {r["id"]: int(r["issued"]) for r in rows if r["scope"] == "service"}
    assert services == {s["id"]: s["issued"] for s in stats["services"]}
    expect(page.locator("#export-status")).to_contain_text("已下载")
