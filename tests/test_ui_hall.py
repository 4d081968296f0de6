"""One citizen through the whole hall, in real browsers against the real daemon and
the demo hall's emulated devices: a priority number taken at the touch kiosk is
printed by the printer, called from window 3's console with its key, highlighted
on the hall display, shown by the board over window 3 and the hall's main board,
and said by the voice."""

from __future__ import annotations

import json
import re
import sys

import pytest
from playwright.sync_api import expect

from drivers.voice.speaker import read_log

from browser import (running_hall, DESKTOP, PORTRAIT, TV, axe_violations,  # noqa: F401
                     chromium, open_page, shot)


@pytest.fixture(scope="module")
def hall(tmp_path_factory):
    """The demo hall, its printer in this process and its voice played through the
    loudspeaker emulator (a player that logs each WAV it plays), 20 times real time."""
    folder = tmp_path_factory.mktemp("speaker")
    player = json.dumps([sys.executable, "-m", "drivers.voice.speaker",
                         "--log", str(folder / "speaker.jsonl"), "--speed", "20"])
    for hall in running_hall(tmp_path_factory, "whole-hall", own_printer=True,
                             edits={r"^player = \[\]": f"player = {player}"}):
        hall.speaker_log = folder / "speaker.jsonl"
        yield hall


def test_a_priority_number_from_the_kiosk_to_the_window_board_display_and_voice(hall, open_page):
    display = open_page(f"{hall.url}/ui/display", viewport=TV)
    console = open_page(f"{hall.url}/ui/window?window=3", viewport=DESKTOP)
    kiosk = open_page(f"{hall.url}/ui/kiosk?terminal=kiosk_1", viewport=PORTRAIT, touch=True)
    kiosk.wait_for_selector("body[data-ready]")
    hall.api("POST", "/tickets", {"service": "property"}, expect=201)   # someone already waits

    # The citizen: category, service, guide, the priority button.
    kiosk.locator(".tile", has_text="不动产").tap()
    kiosk.locator("#service-list .service", has_text="不动产登记").tap()
    expect(kiosk.locator("#screen-guide")).to_be_visible()
    kiosk.locator("#take-priority").tap()
    expect(kiosk.locator("#screen-result")).to_be_visible()
    number = kiosk.locator("#result-number").inner_text()
    expect(kiosk.locator("#print-ok")).to_be_visible()
    slip = hall.printer.wait_for_tickets(1, timeout=10)[0]
    assert number in slip.text() and "不动产登记" in slip.text()
    shot(kiosk, "hall-1-kiosk")

    # The clerk at window 3 sees the priority number first and calls it with the key.
    expect(console.locator("#waiting-list li .w-number").first).to_have_text(number)
    console.keyboard.press("Space")
    expect(console.locator("#number")).to_have_text(number)
    expect(console.locator("#toast")).to_have_text(f"已呼叫 {number}")
    shot(console, "hall-2-console")

    # The hall display highlights the new call; the boards show it; the voice says it.
    newest = display.locator("#latest-list li").first
    expect(newest.locator(".call-number")).to_have_text(number)
    expect(newest.locator(".call-window")).to_have_text("3号窗口")
    expect(newest).to_have_class(re.compile(r"\bfresh\b"))
    expect(display.locator("#now-list li:visible", has_text=number)).to_have_count(1)
    shot(display, "hall-3-display")

    hall.until(lambda: (hall.device("board_3")["detail"]["emulator"]["shows"] or "").strip()
               == number, f"board_3 shows {number}")
    hall.until(lambda: number in hall.device("hall_board")["detail"]["shows"][0],
               f"the hall board's first line names {number}")
    said = hall.until(lambda: (a := hall.device("voice")["detail"].get("last_announcement"))
                      and a.get("number") == number and a.get("played") and a,
                      f"the voice said {number}", timeout=30)
    assert said["text"] == f"请{number}号到3号窗口办理" and said["duration_s"] > 2
    played = [p for p in read_log(hall.speaker_log) if p.wav == said["wav"]]
    assert played and played[-1].duration_s == pytest.approx(said["duration_s"], abs=0.05)
    assert played[-1].rms > 0.01                  # of full scale: a voice, not silence
    for page in (kiosk, console, display):
        assert axe_violations(page) == []
