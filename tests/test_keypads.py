"""Window keypads in a running hall: the real keypad driver reads key frames from
emulated keypads on a pseudo-terminal (`drivers/keypad/emulator.py`), as it reads
an RS-485 bus or a wireless receiver's port; the tests press keys there and read
what followed: the queue through the API, the board over the window (an emulated
Modbus display on its own pty), the voice (the loudspeaker emulator's log), what
each keypad's display shows and how often it beeped.

The keyboard keypad (evdev) is the one path with no transport a test can own:
creating an input device needs /dev/uinput and root, which CI does not give. Its
tests put a fake input device in evdev's place (`FakeInputDevice`): a real pipe
for the driver to select on, real `evdev.InputEvent`s to read. They say so.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import evdev
import pytest
from evdev import ecodes

from drivers.voice.speaker import read_log
from kioskd.config import Config, ConfigError, loads_config
from conftest import HallClient, eventually, hall_toml, serving
from test_voice import speaker, voice_table

API = "/api/v1"
DEBOUNCE_S = 0.3

WINDOWS = """
[[services]]
id = "social"
name = "社保业务"
prefix = "C"
code = "640100-003-01"

[[windows]]
id = "3"
name = "3号窗口"
services = ["property"]
"""

BOARD = """
[devices.board_3]                   # the board over window 3
driver = "modbus_digits"
port = "tty-boards"
unit = 3
emulate = true
poll_interval = 0.2
timeout = 1
"""

KEY_FRAME = """
[devices.{id}.frame]                # AA | address | key | xor8 | 55
layout = ["header", "address", "key", "checksum", "trailer"]
header = "AA"
checksum = "xor8"
trailer = "55"
"""

ANSWER_FRAME = """
[devices.{id}.answer]               # AA | address | 31 show / 32 beep | length | text | xor8 | 55
layout = ["header", "address", "command", "length", "text", "checksum", "trailer"]
header = "AA"
command = "31"
beep = "32"
encoding = "gb18030"
checksum = "xor8"
trailer = "55"
"""

KEYPADS = """
[devices.{id}]
driver = "keypad"
port = "{port}"
baudrate = {baudrate}
emulate = {emulate}
debounce_s = {debounce_s}
poll_interval = 0.2
timeout = 1
""" + KEY_FRAME + ANSWER_FRAME + """
[devices.{id}.keypads]              # the clerks' caller keypads
1 = "1"
3 = "3"

[devices.{id}.keys]
"01" = "call-next"
"02" = "recall"
"03" = "start"
"04" = "complete"
"05" = "no-show"
"06" = "pause-resume"
"07" = "transfer:social"

[devices.{id}.raters]               # the citizens' rating keypads
103 = "3"

[devices.{id}.rater_keys]
"15" = "rate:5"
"14" = "rate:4"
"12" = "rate:2"
"""


def keypads_table(device_id: str = "keypads", *, port: str = "tty-keypads",
                  emulate: bool = True, debounce_s: float = DEBOUNCE_S,
                  baudrate: int = 9600) -> str:
    return KEYPADS.format(id=device_id, port=port, emulate=str(emulate).lower(),
                          debounce_s=debounce_s, baudrate=baudrate)


def hall_text(devices: str, *, board: bool = False) -> str:
    """The minimal hall, window 3 (with a board over it when `board`), and `devices`."""
    windows = WINDOWS + ('board = "board_3"\n' + BOARD if board else "")
    return hall_toml(windows + textwrap.dedent(devices))


def hall_config(tmp_path: Path, devices: str, *, board: bool = False) -> Config:
    return loads_config(hall_text(devices, board=board), base_dir=tmp_path)


class Hall(HallClient):
    """The daemon in-process, its keypads (emulated), board and loudspeaker."""

    def __init__(self, app, client, log: Path | None = None):
        super().__init__(app, client)
        self.log = log

    def emulated(self, device_id: str):
        return self.app.state.devices.get(device_id).emulator

    @property
    def pads(self):
        return self.emulated("keypads")

    async def press(self, address: int, action: str, *, times: int = 1) -> None:
        """A keypad's key, off the loop (the emulated wire takes its time)."""
        await asyncio.to_thread(self.pads.press_action, address, action, times=times)

    async def send(self, data: bytes) -> None:
        await asyncio.to_thread(self.pads.send, data)

    def counts(self) -> dict:
        return self.app.state.devices.get("keypads").driver.counts

    async def counted(self, key: str, count: int) -> None:
        await self.until(lambda: self.counts()[key] >= count,
                         f"{key} to reach {count} (counts: {dict(self.counts())})")

    async def window(self, window_id: str) -> dict:
        r = await self.client.get(f"{API}/windows/{window_id}")
        assert r.status_code == 200, r.text
        return r.json()

    async def until_window(self, window_id: str, condition, what: str) -> dict:
        return await eventually(lambda: self.window(window_id), condition,
                                f"window {window_id} to be {what}", self.wait, every=0.01)

    async def until_alerts_closed(self) -> None:
        async def alerts() -> list:
            return (await self.client.get(f"{API}/alerts")).json()
        await eventually(alerts, lambda listed: not listed, "the alerts to close", self.wait)

    async def current(self, window_id: str) -> str | None:
        ticket = (await self.window(window_id))["current"]
        return ticket["number"] if ticket else None

    async def current_is(self, window_id: str, number: str | None) -> None:
        await eventually(lambda: self.current(window_id), lambda now: now == number,
                         f"window {window_id} to have {number}", self.wait, every=0.01)

    async def shows(self, address: int, text: str) -> None:
        await self.until(lambda: self.pads.keypad(address).shows == text,
                         f"keypad {address} to show {text!r} "
                         f"(shows {self.pads.keypad(address).shows!r})")

    async def beeps(self, address: int, count: int) -> None:
        await self.until(lambda: self.pads.keypad(address).beeps >= count,
                         f"keypad {address} to beep {count} times "
                         f"(beeped {self.pads.keypad(address).beeps})")


@asynccontextmanager
async def hall(config: Config, log: Path | None = None,
               devices: tuple[str, ...] = ("keypads",)) -> AsyncIterator[Hall]:
    async with serving(config) as (app, client):
        h = Hall(app, client, log)
        for device_id in devices:
            await h.state(device_id, "ready")
            pads = h.emulated(device_id)
            if getattr(getattr(pads, "settings", None), "answer", None) is not None:   # displays written
                await h.until(lambda: all(pads.keypad(a).answers for a in pads.settings.keypads),
                              f"{device_id}'s displays to be written on connecting")
        yield h


# -- a keypad is the window's console ---------------------------------------------------

async def test_window_3s_keypad_calls_next_and_the_board_and_voice_follow(tmp_path):
    log = tmp_path / "speaker.jsonl"
    config = hall_config(tmp_path, keypads_table() + voice_table(player=speaker(log)),
                         board=True)
    async with hall(config, log, ("keypads", "board_3", "voice")) as h:
        await h.issue(2)
        await h.press(3, "call-next")
        await h.current_is("3", "A001")
        await h.shows(3, "A001")                                 # on the keypad's display
        board = h.emulated("board_3").unit
        await h.until(lambda: board.text.strip() == "A001", "board 3 to show A001")
        await h.until(lambda: log.exists() and any(p.ended_at for p in read_log(log)),
                      "the loudspeaker to play the call")
        voice = h.app.state.devices.get("voice").status.detail
        await h.until(lambda: voice.get("said") == 1, "the voice to have said one call")
        assert voice["last_announcement"]["text"] == "请A001号到3号窗口办理"
        assert await h.current("1") is None                        # keypad 3 acts for window 3 only

        r = await h.client.get(f"{API}/audit", params={"actor": "keypad:3"})
        assert r.status_code == 200, r.text
        entries = r.json()["entries"]
        called = [e for e in entries if e["action"] == "ticket.called"]
        assert len(called) == 1 and called[0]["ticket"] is not None
        assert called[0]["actor"]["role"] == "keypad"
        assert called[0]["actor"]["window"] == "3"
        assert called[0]["actor"]["device"] == "keypads"
        detail = (await h.device("keypads"))["detail"]
        assert detail["last_action"] == {"keypad": 3, "window": "3", "action": "call-next",
                                         "number": "A001"}
        assert detail["keypads"] == {"1": "1", "3": "3"} and detail["raters"] == {"103": "3"}


async def test_each_key_does_its_window_action(tmp_path):
    async with hall(hall_config(tmp_path, keypads_table())) as h:
        await h.issue(3)
        await h.press(3, "call-next")
        await h.current_is("3", "A001")
        await h.press(3, "recall")
        await h.press(3, "start")
        await h.until(lambda: h.counts()["presses"] >= 3, "three presses")
        await h.until_window("3", lambda w: (w["current"] or {}).get("status") == "serving",
                             "serving")
        await h.press(3, "transfer:social")                    # A001 goes to 社保业务
        await h.current_is("3", None)
        await h.press(3, "call-next")                          # not debounced: another key since
        await h.current_is("3", "A002")
        await h.press(3, "no-show")
        await h.current_is("3", None)
        await h.press(3, "pause-resume")
        await h.until_window("3", lambda w: w["state"] == "paused", "paused")
        r = await h.client.get(f"{API}/audit", params={"actor": "keypad:3"})
        actions = [e["action"] for e in r.json()["entries"]]
        for done in ("ticket.called", "ticket.recalled", "ticket.started", "ticket.transferred",
                     "ticket.no_show", "window.changed"):
            assert done in actions, (done, actions)


async def test_a_double_press_or_a_held_key_acts_once(tmp_path):
    async with hall(hall_config(tmp_path, keypads_table(debounce_s=1.0))) as h:
        await h.issue(4)
        await h.press(3, "call-next", times=2)                  # a bounce: two frames at once
        await h.counted("debounced", 1)
        await h.current_is("3", "A001")
        await h.press(3, "recall")                              # another key in between ...
        await h.counted("presses", 2)

        def hold() -> None:                                     # held 1.5 s: it repeats
            for _ in range(15):                                 # every 0.1 s, as keypads do
                h.pads.press_action(3, "call-next")
                time.sleep(0.1)
        await asyncio.to_thread(hold)
        await h.counted("debounced", 15)                         # ... so only its first acts
        await h.current_is("3", "A002")
        assert h.counts()["presses"] == 3
        r = await h.client.get(f"{API}/windows/3/waiting")
        assert r.json()["count"] == 2                           # A003 and A004 still wait
        # once the key has been quiet for the interval, it is a new press
        await asyncio.sleep(1.2)                               # the time under test
        await h.press(3, "call-next")
        await h.current_is("3", "A003")
        assert h.counts()["presses"] == 4


async def test_a_rating_after_completion_lands_in_the_statistics(tmp_path):
    async with hall(hall_config(tmp_path, keypads_table())) as h:
        await h.issue(1)
        await h.press(103, "rate:5")                            # nothing done at window 3 yet
        await h.beeps(103, 1)
        await h.press(3, "call-next")
        await h.current_is("3", "A001")
        await h.press(103, "rate:4")                            # A001 is still being served
        await h.beeps(103, 2)
        await h.press(3, "complete")
        await h.current_is("3", None)
        await h.press(103, "rate:2")
        await h.until(lambda: h.counts()["presses"] >= 5, "five presses")
        async def window_3() -> dict:
            r = await h.client.get(f"{API}/stats")
            assert r.status_code == 200, r.text
            return {w["id"]: w for w in r.json()["windows"]}["3"]
        window = await eventually(window_3, lambda w: w["ratings"]["rated"] >= 1,
                                  "window 3's rating in /stats", h.wait)
        assert window["ratings"]["by_level"]["2"] == 1 and window["ratings"]["bad"] == 1
        # a second rating of the same service is refused, as the API refuses it
        await h.press(103, "rate:5")                            # another key: not a repeat
        await h.beeps(103, 3)
        detail = (await h.device("keypads"))["detail"]
        assert "已评价" in detail["last_action"]["refused"]
        stats = (await h.client.get(f"{API}/stats")).json()
        assert {w["id"]: w for w in stats["windows"]}["3"]["ratings"]["rated"] == 1
        # the bad rating raised its alert; the rating says it came from a keypad
        alerts = (await h.client.get(f"{API}/alerts")).json()
        assert [a["kind"] for a in alerts] == ["bad_rating"]
        r = await h.client.get(f"{API}/audit", params={"actor": "keypad:3"})
        rated = [e for e in r.json()["entries"] if e["action"] == "ticket.rated"]
        assert len(rated) == 1 and rated[0]["actor"]["device"] == "keypads"
        rating = await h.app.state.queue.run(lambda tx, now: tx.rating(rated[0]["ticket"]))
        assert rating.source == "keypad" and rating.level == 2


async def test_a_rating_keypad_asks_after_a_completion_thanks_and_goes_blank(tmp_path):
    config = loads_config(hall_text(keypads_table()).replace(
        "[[services]]", "[evaluation]\nwithin_s = 1.5\n\n[[services]]", 1), base_dir=tmp_path)
    async with hall(config) as h:
        rater = h.pads.keypad(103)
        await h.issue(2)
        await h.press(3, "call-next")
        await h.press(3, "complete")
        await h.shows(103, "A001请评价")
        await h.press(103, "rate:5")
        await h.shows(103, "谢谢")
        await h.shows(103, "")                        # A001's rating time is over: blank
        # rated on the pad page instead: the keypad thanks all the same
        await h.press(3, "call-next")
        await h.current_is("3", "A002")
        await h.press(3, "complete")
        await h.shows(103, "A002请评价")
        r = await h.client.get(f"{API}/windows/3/rating")
        ticket = r.json()["ticket"]["id"]
        r = await h.client.post(f"{API}/windows/3/rating", json={"ticket": ticket, "level": 4})
        assert r.status_code == 201, r.text
        await h.shows(103, "谢谢")
        assert [text for text, _ in rater.answers] == ["", "A001请评价", "谢谢", "", "A002请评价",
                                                       "谢谢"]      # blank from the start
        assert h.pads.keypad(3).answers[-1][0] == "A002"   # the caller keeps its number


async def test_call_next_with_nothing_waiting_or_paused_beeps(tmp_path):
    async with hall(hall_config(tmp_path, keypads_table())) as h:
        await h.press(3, "call-next")
        await h.beeps(3, 1)
        detail = (await h.device("keypads"))["detail"]
        assert detail["last_action"]["result"] == "nothing waiting"
        await h.issue(1)
        await h.press(3, "pause-resume")
        await h.until_window("3", lambda w: w["state"] == "paused", "paused")
        await h.press(3, "call-next")                           # a paused window does not call
        await h.beeps(3, 2)
        assert await h.current("3") is None
        await h.press(3, "pause-resume")
        await h.until_window("3", lambda w: w["state"] == "open", "open again")
        await h.press(3, "call-next")
        await h.shows(3, "A001")


async def test_an_unmapped_address_is_ignored_with_one_log_line(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    async with hall(hall_config(tmp_path, keypads_table())) as h:
        await h.issue(1)
        for _ in range(3):
            await asyncio.to_thread(h.pads.press, 9, "01")
        await h.counted("unmapped", 3)
        await h.press(3, "call-next")                           # the bus goes on
        await h.current_is("3", "A001")
        lines = [r for r in caplog.records if "keypad address 9" in r.getMessage()]
        assert len(lines) == 1, [r.getMessage() for r in lines]
        assert lines[0].levelno == logging.WARNING
        assert "not mapped to any window" in lines[0].getMessage()
        assert h.counts()["presses"] == 1


async def test_garbage_and_truncated_frames_are_skipped(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    async with hall(hall_config(tmp_path, keypads_table())) as h:
        await h.issue(2)
        good = h.pads.frame(3, h.pads.key_of(3, "call-next"))
        bad_checksum = good[:3] + bytes([good[3] ^ 0xFF]) + good[4:]
        await h.send(b"\x00\x13\x37 hello \xff\xfe" + bad_checksum + good[:2])   # truncated
        await h.counted("rejected", 3)
        await h.send(good)
        await h.current_is("3", "A001")
        skipped = [r for r in caplog.records if "malformed" in r.getMessage()]
        assert len(skipped) == 1, [r.getMessage() for r in skipped]     # not one a frame


async def test_a_flood_of_garbage_never_blocks_the_bus_or_the_daemon(tmp_path):
    """At 115200 baud, 2 s of noise, a third of it frame headers (AA) and the rest
    random: the API answers while it pours in, and the next good frame acts."""
    async with hall(hall_config(tmp_path, keypads_table(baudrate=115200))) as h:
        await h.issue(2)
        rng = random.Random(8)
        noise = bytes(0xAA if i % 3 == 0 else rng.randrange(256) for i in range(23040))
        flood = asyncio.create_task(asyncio.to_thread(
            lambda: [h.pads.send(noise[at:at + 256]) for at in range(0, len(noise), 256)]))
        await h.counted("rejected", 100)                     # it is pouring in ...
        r = await h.client.post(f"{API}/windows/1/call-next")
        assert r.status_code == 200 and r.json()["number"] == "A001"
        assert not flood.done()                              # ... and answered meanwhile
        await flood
        await h.send(h.pads.frame(3, h.pads.key_of(3, "call-next")))
        await h.current_is("3", "A002")
        assert (await h.device("keypads"))["state"] == "ready"


async def test_an_unplugged_receiver_goes_offline_and_comes_back_by_itself(tmp_path):
    async with hall(hall_config(tmp_path, keypads_table())) as h:
        await h.issue(2)
        h.pads.pull()
        offline = await h.state("keypads", "offline")
        assert "unplugged" in offline["last_error"]
        r = await h.client.post(f"{API}/windows/3/call-next")    # the hall goes on
        assert r.status_code == 200
        h.pads.plug()
        await h.state("keypads", "ready")
        await h.shows(3, "A001")              # the call made while it was down: the present
        await h.press(3, "call-next")
        await h.current_is("3", "A002")
        await h.shows(3, "A002")


async def test_the_self_test_shows_a_test_on_every_keypad(tmp_path):
    async with hall(hall_config(tmp_path, keypads_table())) as h:
        r = await h.client.post(f"{API}/devices/keypads/test")
        assert r.status_code == 200, r.text
        for address in (1, 3, 103):
            await h.shows(address, "测试")
            await h.beeps(address, 1)


# A receiver that acknowledges nothing on its own: kioskd answers 06 to each key frame.
# Its keypads have no display: AA 55 | address:2 | 20 (a key) | key | sum8 | 0D.
ACKED = """
[devices.receiver]
driver = "keypad"
port = "tty-receiver"
emulate = true
debounce_s = 0.3
poll_interval = 0.2
timeout = 1

[devices.receiver.frame]
layout = ["header", "address", "command", "key", "checksum", "trailer"]
header = "AA 55"
address_bytes = 2
command = "20"
checksum = "sum8"
trailer = "0D"
ack = "06"

[devices.receiver.keypads]
1003 = "3"

[devices.receiver.keys]
"0A" = "call-next"
"""


async def test_a_receiver_gets_its_ack_and_frames_of_another_command_are_not_keys(tmp_path):
    async with hall(hall_config(tmp_path, ACKED), devices=("receiver",)) as h:
        pads = h.emulated("receiver")
        driver = h.app.state.devices.get("receiver").driver
        await h.issue(1)
        await asyncio.to_thread(pads.press, 1003, "0A")
        await h.current_is("3", "A001")
        await asyncio.to_thread(pads.wait_until, lambda: pads.acks == 1, 10, "the ack")
        other = pads.settings.frame.encode(1003, command=b"\x21", key=b"\x0a")
        await asyncio.to_thread(pads.send, other)
        await h.until(lambda: driver.counts["not_keys"] == 1, "the other command")
        assert driver.counts["presses"] == 1
        detail = (await h.device("receiver"))["detail"]
        assert detail["answer"] is None
        assert detail["frame"] == "AA 55 | address:2 | 20 | key:1 | sum8(address..key) | 0D"


# Wired keypads that speak only when asked: kioskd polls each in turn (50, in the answer
# frame); a keypad answers its key, or 00 when nothing was pressed.
POLLED = """
[devices.bus]
driver = "keypad"
port = "tty-polled"
emulate = true
debounce_s = 0.3
poll_interval = 0.2
timeout = 1
""" + KEY_FRAME.format(id="bus") + ANSWER_FRAME.format(id="bus") + """
[devices.bus.poll]
command = "50"
reply_timeout = 0.05
idle_key = "00"

[devices.bus.keypads]
1 = "1"
3 = "3"

[devices.bus.keys]
"01" = "call-next"
"""


async def test_polled_keypads_are_asked_in_turn_and_a_silent_one_is_reported(tmp_path):
    async with hall(hall_config(tmp_path, POLLED), devices=("bus",)) as h:
        pads = h.emulated("bus")
        driver = h.app.state.devices.get("bus").driver
        await h.until(lambda: pads.keypad(1).polls > 2 and pads.keypad(3).polls > 2,
                      "both keypads to be polled")
        await h.issue(1)
        await asyncio.to_thread(pads.press_action, 3, "call-next")    # kept until asked
        await h.current_is("3", "A001")
        await h.until(lambda: pads.keypad(3).shows == "A001", "keypad 3 to show A001")
        assert driver.counts["presses"] == 1 and driver.counts["unknown_keys"] == 0
        # keypad 1 unplugged from the bus: it answers no poll
        pads.silent.add(1)
        degraded = await h.state("bus", "degraded")
        assert degraded["last_error"].startswith("keypad 1 does not answer polls")
        alerts = (await h.client.get(f"{API}/alerts")).json()
        assert [(a["kind"], a["message"]) for a in alerts] == \
            [("keypad_silent", "bus：1号键盘（1号窗口）不应答")]
        await h.issue(1)
        await asyncio.sleep(DEBOUNCE_S * 1.5)                        # a new press, not a repeat
        await asyncio.to_thread(pads.press_action, 3, "call-next")    # the rest goes on
        await h.current_is("3", "A002")
        pads.silent.discard(1)
        await h.state("bus", "ready")
        await h.until_alerts_closed()


# -- configuration ------------------------------------------------------------------------

def problems(tmp_path: Path, devices: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        hall_config(tmp_path, devices)
    return raised.value.problems


def test_a_keypad_for_an_unknown_window_or_service_is_refused(tmp_path):
    text = keypads_table().replace('3 = "3"', '3 = "30"').replace(
        '"transfer:social"', '"transfer:socail"')
    found = problems(tmp_path, text)
    assert "[devices.keypads.keypads] 3: unknown window '30'" in "\n".join(found)
    assert any("[devices.keypads.keys] 07: transfer to unknown service 'socail'" in p
               and "social" in p for p in found), found


@pytest.mark.parametrize("change, expected", [
    (('"call-next"', '"call_next"'), "[devices.keypads.keys] 01: 'call_next' is not an action"),
    (('"rate:5"', '"rate:6"'), "[devices.keypads.rater_keys] 15: 'rate:6': a rating is rate:1"),
    (('"01" = ', '"0x1g" = '), "[devices.keypads.keys] 0x1g: '0x1g' is not a key code"),
    (('"01" = ', '"01 02" = '), "is 2 bytes; the frame's key field is 1"),
    (('103 = "3"', '300 = "3"'), "address 300 does not fit the frame's 1-byte address field"),
    (('103 = "3"', '3 = "3"\n'), "keypad address 3 is also a caller keypad's"),
    (('"key", "checksum"', '"checksum"'), '[devices.keypads.frame] layout: must include "key"'),
    (('beep = "32"', 'beep = "32 00"'), "beep: is 2 bytes but the command is 1"),
    (('debounce_s = 0.3', 'debounce_s = 30'), "debounce_s: 30 is out of range"),
    (('beep = "32"', 'beep = "32"\nrate_prompt = "{numbr}"'),
     "[devices.keypads.answer] rate_prompt: unknown field {numbr}"),
    (('beep = "32"', 'beep = "32"\nack = "06"'), "[devices.keypads.answer] ack: kioskd does not"),
    (('port = "tty-keypads"', 'port = "tty-keypads"\ninput = "/dev/input/event3"'),
     "give either `port`"),
])
def test_a_broken_keypad_table_names_its_table_and_key(tmp_path, change, expected):
    found = problems(tmp_path, keypads_table().replace(*change))
    assert any(expected in p for p in found), found


def test_a_keyboard_keypads_keys_are_evdev_names(tmp_path):
    text = KEYBOARD.format(debounce_s=0.3).replace("KEY_KP2", "KEY_KP_2")
    found = problems(tmp_path, text)
    assert any("[devices.keypad_3.keys] KEY_KP_2: 'KEY_KP_2' is not a key's evdev name" in p
               for p in found), found
    found = problems(tmp_path, KEYBOARD.format(debounce_s=0.3).replace('window = "3"', ""))
    assert any("[devices.keypad_3]: missing key 'window'" in p for p in found), found


@pytest.mark.parametrize("change, expected", [
    (('command = "50"', 'command = "31"'), "[devices.bus.poll] command: is the answer frame's "
                                          "show or beep command too"),
    (('command = "50"', 'command = "50 00"'), "[devices.bus.poll] command: is 2 bytes but the "
                                              "answer frame's command is 1"),
    (('idle_key = "00"', 'idle_key = "0000"'), "[devices.bus.poll] idle_key: '0000' is 2 bytes"),
    (('reply_timeout = 0.05', 'reply_timeout = 0'), "[devices.bus.poll] reply_timeout: 0 is out"),
])
def test_a_broken_poll_table_names_its_key(tmp_path, change, expected):
    found = problems(tmp_path, POLLED.replace(*change))
    assert any(expected in p for p in found), found


def test_a_poll_needs_an_answer_frame(tmp_path):
    start = POLLED.index("[devices.bus.answer]")
    text = POLLED[:start] + POLLED[POLLED.index("[devices.bus.poll]"):]
    found = problems(tmp_path, text)
    assert any("[devices.bus] poll: needs an [devices.ID.answer] table" in p for p in found), found


def test_a_keypad_bus_is_one_devices_alone(tmp_path):
    found = problems(tmp_path, keypads_table() + keypads_table("more"))
    assert any("[devices.more] port" in p and "is also keypads's" in p for p in found), found
    found = problems(tmp_path, keypads_table() + BOARD.replace("tty-boards", "tty-keypads"))
    assert any("one bus speaks one protocol" in p for p in found), found


# -- the standalone emulator ------------------------------------------------------------

def test_kioskd_emulate_keypad_presses_keys_a_technician_types(tmp_path):
    """`kioskd emulate keypad` plays a file's keypads on a pty; the daemon (in
    another process: its own `emulate = false`) reads them as a hall's receiver."""
    text = hall_text(keypads_table(emulate=False))
    (tmp_path / "devices.toml").write_text(text, encoding="utf-8")
    emulator = subprocess.Popen(
        [sys.executable, "-m", "kioskd.cli", "emulate", "keypad", "-c", "devices.toml"],
        cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, encoding="utf-8")
    lines: list[str] = []
    printed = threading.Condition()

    def read() -> None:
        for line in emulator.stdout:
            with printed:
                lines.append(line)
                printed.notify_all()
        with printed:
            lines.append("(ended)")
            printed.notify_all()

    threading.Thread(target=read, daemon=True).start()
    try:
        def wait_for(text: str) -> str:
            """The first line the emulator printed holding `text`."""
            with printed:
                printed.wait_for(lambda: any(text in line for line in lines)
                                 or "(ended)" in lines, timeout=20)
                found = [line for line in lines if text in line]
            assert found, (text, lines, emulator.poll() is None or emulator.stderr.read())
            return found[0]

        assert "tty-keypads -> /dev/pts/" in wait_for("keypads at")
        config = loads_config(text, base_dir=tmp_path)

        async def day() -> None:
            async with hall(config) as h:
                await h.issue(1)
                emulator.stdin.write("3 call-next\n")
                emulator.stdin.flush()
                await h.current_is("3", "A001")
                await asyncio.to_thread(wait_for, "keypad 3 shows A001")
                emulator.stdin.write("3 09\n")                     # a code nothing maps
                emulator.stdin.write("nonsense\n")
                emulator.stdin.flush()
                await asyncio.to_thread(wait_for, "usage:")
                await h.until(lambda: h.counts()["unknown_keys"] >= 1, "the unknown key")
        asyncio.run(day())
    finally:
        emulator.terminate()
        emulator.wait(10)


# -- a USB keypad that types like a keyboard (a fake input device: see the top) ---------

class FakeInputDevice:
    """Stands in for `evdev.InputDevice`: no test can create a real input device
    without /dev/uinput and root. The driver selects on a real pipe and reads real
    `evdev.InputEvent`s; `type` queues them, `unplug` makes reads fail with
    ENODEV as the kernel's do."""

    instances: list[FakeInputDevice] = []
    present = True

    def __init__(self, path: str):
        if not FakeInputDevice.present:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        self.path = path
        self.name = "Fake USB Keypad"
        self.grabbed = False
        self.closed = False
        self.unplugged = False
        self._events: deque[evdev.InputEvent] = deque()
        self._read_fd, self._write_fd = os.pipe()
        self.fd = self._read_fd
        FakeInputDevice.instances.append(self)

    def grab(self) -> None:
        self.grabbed = True

    def ungrab(self) -> None:
        self.grabbed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._write_fd)
            os.close(self._read_fd)

    def read(self):
        os.read(self._read_fd, 4096)
        if self.unplugged:
            raise OSError(errno.ENODEV, "No such device")
        events, self._events = list(self._events), deque()
        return iter(events)

    def type(self, name: str, *values: int) -> None:
        """Key `name` going down (1), held (2) or up (0), each with a SYN report."""
        code = ecodes.ecodes[name]
        for value in values:
            self._events.append(evdev.InputEvent(0, 0, ecodes.EV_KEY, code, value))
            self._events.append(evdev.InputEvent(0, 0, ecodes.EV_SYN, ecodes.SYN_REPORT, 0))
        os.write(self._write_fd, b"!")

    def unplug(self) -> None:
        self.unplugged = True
        FakeInputDevice.present = False
        os.write(self._write_fd, b"!")


KEYBOARD = """
[devices.keypad_3]
driver = "keypad"
input = "/dev/input/by-id/usb-fake-keypad-event-kbd"
window = "3"
debounce_s = {debounce_s}
poll_interval = 0.2
timeout = 1

[devices.keypad_3.keys]
KEY_KP1 = "call-next"
KEY_KP2 = "complete"
KEY_KPENTER = "recall"
"""


@pytest.fixture
def fake_input(monkeypatch):
    import drivers.keypad.keyboard as keyboard

    FakeInputDevice.instances = []
    FakeInputDevice.present = True
    monkeypatch.setattr(keyboard, "open_input", FakeInputDevice)
    yield FakeInputDevice
    for device in FakeInputDevice.instances:
        device.close()


async def test_a_keyboard_keypad_is_grabbed_and_calls_for_its_window(tmp_path, fake_input):
    config = hall_config(tmp_path, KEYBOARD.format(debounce_s=DEBOUNCE_S))
    async with hall(config, devices=("keypad_3",)) as h:
        [device] = fake_input.instances
        assert device.grabbed                                    # its keys type nowhere else
        detail = (await h.device("keypad_3"))["detail"]
        assert detail["window"] == "3" and detail["grabbed"] is True
        driver = h.app.state.devices.get("keypad_3").driver
        await h.issue(2)
        # held (auto-repeat never acts), then pressed again at once (a bounce)
        device.type("KEY_KP1", 1, 2, 2, 2, 0, 1, 0)
        await h.current_is("3", "A001")
        await h.until(lambda: driver.counts["repeats"] == 3, "the repeats to be read")
        await h.until(lambda: driver.counts["debounced"] == 1, "the second press to be dropped")
        device.type("KEY_A", 1, 0)                                # not a keypad key
        await h.until(lambda: driver.counts["unknown_keys"] == 1, "the unknown key")
        assert await h.current("3") == "A001"
        device.type("KEY_KP2", 1, 0)
        await h.current_is("3", None)
        r = await h.client.get(f"{API}/audit", params={"actor": "keypad:3"})
        entries = r.json()["entries"]
        assert [e["action"] for e in entries if e["action"].startswith("ticket.")] == \
            ["ticket.called", "ticket.done"]
        assert all(e["actor"]["device"] == "keypad_3" for e in entries)


async def test_an_unplugged_keyboard_keypad_goes_offline_and_comes_back(tmp_path, fake_input):
    config = hall_config(tmp_path, KEYBOARD.format(debounce_s=DEBOUNCE_S))
    async with hall(config, devices=("keypad_3",)) as h:
        [device] = fake_input.instances
        device.unplug()
        offline = await h.state("keypad_3", "offline")
        assert "unplugged" in offline["last_error"]
        fake_input.present = True                                 # plugged back
        await h.state("keypad_3", "ready")
        again = fake_input.instances[-1]
        assert again is not device and again.grabbed and device.closed
        await h.issue(1)
        again.type("KEY_KP1", 1, 0)
        await h.current_is("3", "A001")
