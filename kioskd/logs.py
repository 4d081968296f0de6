"""How kioskd logs: one line an event, its subject first, nothing that names a person.

Every line begins with what it is about — a device (`printer_1: offline ...`), a
window (`window 3: ticket.called number=A012 ...`), a part of the daemon (`store:
...`) — so `journalctl -u kioskd | grep printer_1` tells one device's story. A
traceback is folded into its line: journald keeps a line an entry, and a
multi-line traceback would become many entries, the later ones at the wrong level.

Under systemd (`$JOURNAL_STREAM` names our stderr) a line carries its level as a
syslog prefix (`<4>` for a warning) that journald reads into PRIORITY, and no time
of its own (journald stamps each entry); elsewhere it starts with the time and the
level's name.

Queue events are logged by `log_events`, from the fields listed there only: ticket
numbers, services, windows and devices — never a ticket's id (it opens the ticket's
page), an appointment's code, a name or a phone number.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from queue import SimpleQueue
from typing import IO

from .records import Event

log = logging.getLogger("kioskd")

SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                   logging.CRITICAL: 2}
FOLD = " ⏎ "               # stands for a line break inside one line
OUR_LOGGERS = ("kioskd", "drivers")


def setup(level: str, stream: IO[str] | None = None) -> Callable[[], None]:
    """Send every logger's lines, in kioskd's format, to `stream` (stderr); returns
    what to call at exit to write out the lines still waiting."""
    stream = sys.stderr if stream is None else stream
    handler = LineWriter(stream, LineFormatter(journal=to_journal(stream)))
    handler.addFilter(_without_library_chatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler.close


class LineWriter(logging.Handler):
    """Lines made where they are logged, written by a thread of their own: a journald
    that stalls (its pipe full) holds up that thread, never the event loop.

    The thread writes what has come in the last BATCH_S at once, so a busy hall's
    lines cost one wake-up and one write each BATCH_S rather than a thread switch a
    line (measured: a writer woken per line took 10% of the daemon's throughput)."""

    BATCH_S = 0.05

    def __init__(self, stream: IO[str], formatter: logging.Formatter):
        super().__init__()
        self.setFormatter(formatter)
        self.stream = stream
        self._lines: SimpleQueue[str | None] = SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="kioskd-log", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.put(self.format(record))
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        """Write what is waiting, then stop the thread."""
        if self._writer.is_alive():
            self._lines.put(None)
            self._writer.join(10)
        super().close()

    def _write(self) -> None:
        while True:
            batch = [self._lines.get()]
            if batch[0] is not None:
                time.sleep(self.BATCH_S)          # let the burst this line began come in
            while not self._lines.empty():
                batch.append(self._lines.get())
            text = "".join(f"{line}\n" for line in batch if line is not None)
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):
                pass                              # nowhere left to say it
            if None in batch:
                return


def to_journal(stream: IO[str]) -> bool:
    """Whether `stream` is connected to journald (systemd.exec(5), $JOURNAL_STREAM)."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return f"{st.st_dev}:{st.st_ino}" == f"{device}:{inode}"


class LineFormatter(logging.Formatter):
    """One record, one line: `<4>printer_1: offline ...` for journald, else
    `2026-11-29 10:02:03 WARNING printer_1: offline ...`."""

    def __init__(self, journal: bool):
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if not record.name.startswith(OUR_LOGGERS):
            # a library's line: its name is its subject (uvicorn: Started server process)
            message = f"{record.name.split('.')[0]}: {message}"
        if record.exc_info:
            message = f"{message}{FOLD}{self.formatException(record.exc_info)}"
        elif record.stack_info:
            message = f"{message}{FOLD}{self.formatStack(record.stack_info)}"
        message = message.rstrip().replace("\r\n", "\n").replace("\n", FOLD)
        if self.journal:
            return f"<{SYSLOG_PRIORITY.get(record.levelno, 6)}>{message}"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        return f"{stamp} {record.levelname} {message}"


def _without_library_chatter(record: logging.LogRecord) -> bool:
    """python-escpos logs every open and close on the root logger at INFO; the
    device supervisor already logs each state change once."""
    return record.levelno >= logging.WARNING or f"{os.sep}escpos{os.sep}" not in record.pathname


# The fields of an event worth a line, in order; anything else stays out.
_FIELDS = ("number", "service", "priority", "from_window", "from_service", "state",
           "previous", "level", "kind", "device", "appointment", "entries",
           "before", "message")


def log_events(events: Iterable[Event]) -> None:
    """A line for each queue event (an EventBus listener): `window 3: ticket.called
    number=A012 service=property`. Device changes are logged by the supervisor."""
    if not log.isEnabledFor(logging.INFO):
        return
    for event in events:
        if event.type == "device.changed":
            continue
        data = event.data
        level = logging.INFO
        if event.type == "alert":
            level = logging.WARNING if data.get("state") == "raised" else logging.INFO
        log.log(level, "%s: %s%s", _subject(event), event.type, "".join(
            f" {key}={_value(data[key])}" for key in _FIELDS
            if data.get(key) not in (None, "", False)))


def _subject(event: Event) -> str:
    data = event.data
    if data.get("window"):
        return f"window {data['window']}"
    if data.get("from_window"):
        return f"window {data['from_window']}"
    if data.get("device"):
        return str(data["device"])
    if data.get("service"):
        return f"service {data['service']}"
    return event.type.split(".")[0]


def _value(value: object) -> str:
    text = str(value)
    return f'"{text}"' if not text or any(c.isspace() or c == '"' for c in text) else text
