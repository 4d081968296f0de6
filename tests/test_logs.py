"""kioskd's log: one line an event, its subject (device, window, part) first, the
level where journald reads it, and nothing that names a person."""

from __future__ import annotations

import ast
import datetime
import logging
import os
import re
import sys
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from kioskd.logs import FOLD, LineFormatter, to_journal
from kioskd.logs import setup as logs_setup

from conftest import until
from daemon import Daemon, hall_with_a_dead_printer

ROOT = Path(__file__).resolve().parent.parent
API = "/api/v1"
# a subject — "printer_1", "window 3", "hall 银川", "%s", "voice: cache %s" — then ": "
SUBJECT = re.compile(r"^(%[sr]|[\w.-]+(?: %[sd]| \w+)?): ")
# a line as journald gets it: the level's prefix, the subject, the words
JOURNAL_LINE = re.compile(r"^<[2-7]>[^\s:]+(?: [^\s:]+)?: \S")
FULL_NAME, FULL_PHONE, CODE = "张三丰", "13812345678", "SECRET-CODE-77"


def log_calls(path: Path):
    """(line, the format string) of each `log.<level>(...)` in a source file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "log"
                and node.func.attr in ("debug", "info", "warning", "error", "exception",
                                       "critical", "log")):
            args = node.args[1:] if node.func.attr == "log" else node.args
            if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
                yield node.lineno, args[0].value


def test_every_line_kioskd_writes_names_its_subject_first():
    sources = sorted([*(ROOT / "kioskd").rglob("*.py"), *(ROOT / "drivers").rglob("*.py")])
    found = [(path.relative_to(ROOT), line, text)
             for path in sources for line, text in log_calls(path)]
    assert len(found) > 50                        # the scan sees the code's log calls
    assert [f for f in found if not SUBJECT.match(f[2])] == []


def record(level: int, message: str, *args, name: str = "kioskd.devices",
           exc_info=None) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, exc_info)


def test_for_journald_a_line_carries_its_level_and_a_traceback_stays_in_it():
    journal = LineFormatter(journal=True)
    assert journal.format(record(logging.WARNING, "%s: offline: %s", "printer_1",
                                 "paper out")) == "<4>printer_1: offline: paper out"
    assert journal.format(record(logging.INFO, "window %s: paused", "3")) == \
        "<6>window 3: paused"
    assert journal.format(record(logging.INFO, "Started server process [7]",
                                 name="uvicorn.error")) == "<6>uvicorn: Started server process [7]"
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        failed = record(logging.ERROR, "%s: driver error", "board_3", exc_info=sys.exc_info())
    line = journal.format(failed)
    assert "\n" not in line and line.startswith("<3>board_3: driver error" + FOLD + "Traceback")
    assert line.endswith(f"ValueError: boom{FOLD}second line")

    plain = LineFormatter(journal=False).format(record(logging.ERROR, "store: full"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ERROR store: full", plain)


def test_journald_is_recognised_by_the_stream_it_gave(tmp_path: Path, monkeypatch):
    with open(tmp_path / "out", "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert to_journal(stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        assert not to_journal(stream)
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not to_journal(stream)


def test_a_stalled_journal_never_holds_up_the_code_that_logs():
    """stderr is a pipe journald reads; when it stops reading and the pipe fills, the
    writer thread waits, not the event loop's call that logged the line."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"x" * 65536)               # fill the pipe
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)
    stream = os.fdopen(write_end, "w", encoding="utf-8")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    flush = logs_setup("info", stream)
    try:
        logged = threading.Thread(target=lambda: [logging.getLogger("kioskd.devices").warning(
            "printer_%d: offline", n) for n in range(200)], daemon=True)
        logged.start()
        logged.join(5)
        assert not logged.is_alive()                      # 200 lines logged, none written
        drained = []
        reader = threading.Thread(target=lambda: drained.append(_read_all(read_end)))
        reader.start()
        flush()                                           # the writer empties its queue
        stream.close()
        reader.join(10)
        lines = drained[0].decode().replace("x", "").splitlines()
        assert [line.split(" ", 2)[2] for line in lines if line] == [
            f"WARNING printer_{n}: offline" for n in range(200)]
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


@pytest.fixture
def hall(tmp_path: Path) -> Path:
    return hall_with_a_dead_printer(tmp_path)


def run_a_day(daemon: Daemon) -> None:
    with httpx.Client(base_url=daemon.url + API, timeout=10) as api:
        assert api.post("/tickets", json={"service": "property"}).status_code == 201
        assert api.post("/windows/1/call-next").json()["number"] == "A001"
        assert api.post("/windows/1/complete").status_code == 200
        assert api.post("/windows/2/pause").status_code == 200
        slot = (datetime.datetime.now(ZoneInfo("Asia/Shanghai"))
                + datetime.timedelta(minutes=10)).replace(second=0, microsecond=0)
        booked = api.post("/appointments", json={
            "service": "business", "slot": slot.isoformat(), "code": CODE,
            "name": FULL_NAME, "phone": FULL_PHONE})
        assert booked.status_code == 201, booked.text
        checked_in = api.post("/appointments/check-in", json={"code": CODE})
        assert checked_in.status_code == 201, checked_in.text


def test_the_daemon_under_journald_writes_one_subject_first_line_an_event(hall: Path):
    daemon = Daemon(hall)
    daemon.log.touch()
    st = daemon.log.stat()
    daemon.env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    daemon.start()
    try:
        run_a_day(daemon)
        until_logged(daemon, "<4>printer_1: offline")
    finally:
        assert daemon.stop() == 0
    lines = daemon.output().splitlines()
    assert [line for line in lines if not JOURNAL_LINE.match(line)] == []
    for expected in ("<6>service property: ticket.issued number=A001 service=property",
                     "<6>window 1: ticket.called number=A001 service=property",
                     "<6>window 1: ticket.done number=A001 service=property",
                     "<6>window 2: window.changed state=paused previous=open",
                     "<6>service business: ticket.issued number=B001 service=business "
                     "priority=True appointment=",
                     "<6>store: closed cleanly"):
        assert any(line.startswith(expected) for line in lines), (expected, lines)
    for secret in (FULL_NAME, FULL_PHONE, CODE, "5678"):
        assert secret not in daemon.output()


def test_the_log_level_flag_keeps_the_lines_below_it_out(hall: Path):
    daemon = Daemon(hall, log_level="warning").start()
    try:
        run_a_day(daemon)
        until_logged(daemon, "WARNING printer_1: offline")
    finally:
        assert daemon.stop() == 0
    levels = {line.split()[2] for line in daemon.output().splitlines()}
    assert levels == {"WARNING"}


def until_logged(daemon: Daemon, text: str) -> None:
    until(lambda: text in daemon.output(), f"{text!r} in the log", 20)
