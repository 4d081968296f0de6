"""Call boards in a running hall: clerks call, pause and finish through the HTTP API;
the real drivers write to emulated boards on pseudo-terminals; the tests read what
each emulated board shows ("unit 5 shows A003", "the hall board's first line reads
A003 → 5号窗口").

The boards are `emulate = true` devices, so the daemon starts the emulators itself
and reaches them through the real drivers, as the demo hall does.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from kioskd.config import Config, loads_config
from conftest import HallClient, demo_frame, hall_toml, serving

API = "/api/v1"
WAIT = 10.0              # how long a test waits for a board before it fails

# windows 4 and 5 (and the minimal hall's window 1), each 4 and 5 with a board
BOARDS = """
[[windows]]
id = "4"
name = "4号窗口"
services = ["property"]
board = "board_4"

[[windows]]
id = "5"
name = "5号窗口"
services = ["property"]
board = "board_5"

[devices.board_4]
driver = "modbus_digits"
port = "tty-bus1"
unit = 4
emulate = true
reply_timeout = {reply_timeout}
retries = 1
poll_interval = 0.2
timeout = {timeout}

[devices.board_5]
driver = "modbus_digits"
port = "tty-bus1"
unit = 5
flash_register = 16
flash_s = {flash_s}
emulate = true
reply_timeout = {reply_timeout}
retries = 1
poll_interval = 0.2
timeout = {timeout}

[devices.hall_board]             # the hall's main board: a vendor-framed Chinese text board
driver = "framed_text"
port = "tty-hall"
shows = "hall"
lines = 3
address = 1
flash_s = {flash_s}
emulate = true
reply_timeout = 0.1
retries = 1
poll_interval = 0.2
timeout = 1

""" + demo_frame("hall_board", ack=True)


def hall_config(tmp_path: Path, *, flash_s: float = 0.3, reply_timeout: float = 0.15,
                extra: str = "") -> Config:
    timeout = max(1.0, 2 * reply_timeout + 0.5)      # covers a write's two tries
    text = hall_toml(BOARDS.format(flash_s=flash_s, reply_timeout=reply_timeout,
                                   timeout=timeout) + textwrap.dedent(extra))
    return loads_config(text, base_dir=tmp_path)


class Hall(HallClient):
    """The daemon in-process, its clerks' buttons, and its emulated boards."""

    def emulated(self, device_id: str):
        return self.app.state.devices.get(device_id).emulator

    def unit(self, device_id: str):
        """The emulated Modbus unit of a digit-display device."""
        return self.emulated(device_id).unit

    async def shows(self, device_id: str, text: str) -> None:
        await self.until(lambda: self.unit(device_id).text.strip() == text,
                         f"{device_id} to show {text!r} (shows {self.unit(device_id).text!r})")


@asynccontextmanager
async def hall(config: Config) -> AsyncIterator[Hall]:
    async with serving(config) as (app, client):
        h = Hall(app, client)
        for device_id in ("board_4", "board_5", "hall_board"):
            await h.state(device_id, "ready")
        yield h


async def test_a_call_at_window_5_shows_on_the_board_over_it(tmp_path):
    async with hall(hall_config(tmp_path)) as h:
        await h.issue(3)
        number = await h.call("5")
        assert number == "A001"
        await h.shows("board_5", "A001")
        assert h.unit("board_4").text.strip() == ""          # its neighbour is not touched
        assert (await h.device("board_5"))["detail"]["should_show"] == ["A001"]
        await h.call("4")
        await h.shows("board_4", "A002")
        await h.call("5")                                    # finishes A001, calls A003
        await h.shows("board_5", "A003")


async def test_the_hall_board_shows_the_latest_calls_newest_first(tmp_path):
    async with hall(hall_config(tmp_path)) as h:
        board = h.emulated("hall_board")
        await h.issue(3)
        await h.call("5")
        await h.until(lambda: board.lines == ["A001 → 5号窗口", "", ""],
                      f"the hall board to read A001 → 5号窗口 (reads {board.lines})")
        await h.call("4")
        await h.call("5")
        await h.until(lambda: board.lines == ["A003 → 5号窗口", "A002 → 4号窗口", "A001 → 5号窗口"],
                      f"the hall board to list three calls (reads {board.lines})")
        await h.press("4", "recall")             # a recall moves its call back to the top
        await h.until(lambda: board.lines == ["A002 → 4号窗口", "A003 → 5号窗口", "A001 → 5号窗口"],
                      f"the recall at the top (reads {board.lines})")
        assert board.rejected == []
        hall_view = await h.device("hall_board")
        assert hall_view["detail"]["should_show"] == board.lines


async def test_the_hall_boards_keep_only_the_calls_they_show(tmp_path):
    """A hall runs for months: the list behind the hall board holds its three lines,
    not every call since start-up."""
    async with hall(hall_config(tmp_path)) as h:
        board = h.emulated("hall_board")
        await h.issue(12)
        for _ in range(6):
            await h.call("4")
            await h.call("5")
        await h.until(lambda: board.lines == ["A012 → 5号窗口", "A011 → 4号窗口", "A010 → 5号窗口"],
                      f"the hall board to list the last three calls (reads {board.lines})")
        assert [call.number for call in h.app.state.boards.calls] == ["A012", "A011", "A010"]


async def test_the_newest_call_flashes_on_the_hall_board_then_stays(tmp_path):
    async with hall(hall_config(tmp_path, flash_s=0.3)) as h:
        board = h.emulated("hall_board")
        await h.issue(1)
        await h.call("5")
        await h.until(lambda: board.flashing[0], "the newest line to flash")
        await h.until(lambda: not board.flashing[0] and board.lines[0] == "A001 → 5号窗口",
                      "the newest line to stay steady")


async def test_a_new_call_flashes_then_stays_steady(tmp_path):
    async with hall(hall_config(tmp_path, flash_s=0.3)) as h:
        await h.issue(2)
        await h.call("5")
        await h.until(lambda: h.unit("board_5").flashing, "board_5 to flash")
        await h.until(lambda: not h.unit("board_5").flashing, "board_5 to stop flashing")
        assert h.unit("board_5").text.strip() == "A001"
        await h.press("5", "recall")
        await h.until(lambda: h.unit("board_5").flashing, "board_5 to flash again on recall")


async def test_a_call_that_finishes_the_last_ticket_writes_the_board_once(tmp_path):
    # call-next ends A001 and calls A002 in one commit: the board goes straight to
    # A002, never blank in between (one frame on the bus, not two)
    async with hall(hall_config(tmp_path)) as h:
        await h.issue(2)
        await h.call("4")
        await h.shows("board_4", "A001")
        detail = h.app.state.devices.get("board_4").status.detail
        await h.until(lambda: detail.get("shows") == "A001", "board_4's write to end")
        before = len(h.unit("board_4").history)
        await h.call("4")
        await h.shows("board_4", "A002")
        assert [s.text.strip() for s in h.unit("board_4").history[before:]] == ["A002"]


async def test_pause_resume_finish_and_close(tmp_path):
    async with hall(hall_config(tmp_path)) as h:
        await h.issue(1)
        await h.call("5")
        await h.shows("board_5", "A001")
        await h.press("5", "pause")
        await h.shows("board_5", "----")
        await h.press("5", "resume")
        await h.shows("board_5", "A001")
        await h.press("5", "complete")
        await h.shows("board_5", "")
        await h.client.post(f"{API}/windows/5/close")
        assert (await h.device("board_5"))["detail"]["should_show"] == [""]


async def test_a_transferred_ticket_leaves_the_board(tmp_path):
    async with hall(hall_config(tmp_path)) as h:
        await h.issue(1)
        await h.call("5")
        await h.shows("board_5", "A001")
        await h.press("5", "transfer", window="4")
        await h.shows("board_5", "")
        await h.call("4")
        await h.shows("board_4", "A001")


async def test_a_board_shows_the_present_after_a_restart(tmp_path):
    config = hall_config(tmp_path)
    async with hall(config) as h:
        await h.issue(2)
        await h.call("5")
        await h.call("4")
        await h.press("4", "pause")
        await h.shows("board_4", "----")
    async with hall(config) as h:            # fresh emulators: every board starts blank
        await h.shows("board_5", "A001")
        await h.shows("board_4", "----")
        board = h.emulated("hall_board")
        await h.until(lambda: board.lines[:2] == ["A002 → 4号窗口", "A001 → 5号窗口"],
                      f"the hall board to list today's calls again (reads {board.lines})")


async def test_a_pulled_cable_takes_the_boards_offline_and_they_come_back_right(tmp_path):
    async with hall(hall_config(tmp_path)) as h:
        await h.issue(3)
        await h.call("5")
        await h.shows("board_5", "A001")
        bus = h.emulated("board_5").bus
        bus.pull()
        for device_id in ("board_4", "board_5"):
            await h.state(device_id, "offline")
        await h.call("5")                    # called while the boards are dark
        await h.call("4")
        bus.plug()
        await h.shows("board_5", "A002")
        await h.shows("board_4", "A003")
        assert (await h.device("board_5"))["state"] == "ready"


async def test_a_board_that_lost_power_is_written_again(tmp_path):
    async with hall(hall_config(tmp_path)) as h:
        await h.issue(1)
        await h.call("5")
        await h.shows("board_5", "A001")
        h.emulated("board_5").bus.power_cycle(5)
        await h.shows("board_5", "A001")


async def test_a_dead_unit_goes_offline_and_its_neighbour_goes_on(tmp_path):
    async with hall(hall_config(tmp_path)) as h:
        await h.issue(4)
        h.unit("board_4").silent = True
        await h.call("4")
        await h.state("board_4", "offline")
        await h.call("5")
        await h.shows("board_5", "A002")
        h.unit("board_4").silent = False     # back: the supervisor reconnects it
        await h.shows("board_4", "A001")


async def test_call_next_is_answered_before_a_slow_board_has_been_written(tmp_path):
    # board_4's unit is dead and gets 2 × 1 s to answer: had call-next waited for
    # the board, the board would be offline by the time the answer came.
    async with hall(hall_config(tmp_path, reply_timeout=1.0)) as h:
        await h.issue(1)
        h.unit("board_4").silent = True
        await h.call("4")
        assert (await h.device("board_4"))["state"] == "ready"
        await h.state("board_4", "offline")


async def test_the_self_test_shows_a_pattern_then_the_current_number(tmp_path):
    async with hall(hall_config(tmp_path)) as h:
        await h.issue(1)
        await h.call("5")
        await h.shows("board_5", "A001")
        r = await h.client.post(f"{API}/devices/board_5/test")
        assert r.status_code == 200, r.text
        shown = [s.text for s in h.unit("board_5").history]
        assert "8888" in shown
        assert shown[-1].strip() == "A001"
        assert shown.index("8888") > shown.index(" A001" if " A001" in shown else "A001")


def test_kioskd_emulate_board_runs_a_files_boards_standalone(tmp_path):
    """The technician's emulator: the boards of a devices.toml on ptys linked at their
    ports, each change printed; here the real drivers write to it from this process."""
    from drivers.board import Line
    from drivers.framed_text.driver import TextBoard
    from drivers.modbus_digits.driver import DigitDisplay

    path = tmp_path / "devices.toml"
    path.write_text(hall_toml(BOARDS.format(flash_s=0, reply_timeout=0.15, timeout=1)),
                    encoding="utf-8")
    config = loads_config(path.read_text(encoding="utf-8"), base_dir=tmp_path)
    command = [sys.executable, "-m", "kioskd.cli", "emulate", "board", "-c", str(path),
               "board_5", "hall_board"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, encoding="utf-8") as cli:
        watchdog = threading.Timer(WAIT, cli.kill)       # a line that never comes ends the test
        watchdog.start()
        try:
            started = [cli.stdout.readline() for _ in range(2)]
            assert started[0].startswith(f"board_5: modbus_digits at {tmp_path / 'tty-bus1'} -> /dev/pts/")
            assert started[1].startswith(f"hall_board: framed_text at {tmp_path / 'tty-hall'} -> /dev/pts/")
            digits = DigitDisplay("board_5", config.devices["board_5"].settings, 1.0)
            text = TextBoard("hall_board", config.devices["hall_board"].settings, 1.0)
            for board in (digits, text):
                board.open()
            digits.show((Line("A012"),))
            text.show((Line("A012 → 5号窗口"), Line(""), Line("")))
            for board in (digits, text):
                board.close()
            seen = set()
            while not {"board_5 A012", "hall_board A012 → 5号窗口"} <= seen:
                device, _, shows = cli.stdout.readline().strip().partition(" shows ")
                shows = json.loads(shows)
                seen.add(f"{device} {(shows if isinstance(shows, str) else shows[0]).strip()}")
        finally:
            cli.send_signal(signal.SIGTERM)
            watchdog.cancel()
        assert cli.wait(WAIT) == 0
