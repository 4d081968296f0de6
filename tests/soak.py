"""The soak's hall (tests/test_soak.py): its devices.toml, its emulated hardware and the
faults done to it, the kiosks and clerks that load it, and the watch on the daemon's
memory and open files.

Everything the daemon talks to runs here, outside the `kioskd run` process, so that
a `kill -9` of the daemon leaves the hardware as it was, as in a hall: two ESC/POS
printers on loopback TCP, two RS-485 buses of Modbus digit displays and the hall's
text board on pseudo-terminals, and a loudspeaker (a player program) that can be
made to hang.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from drivers.escpos.codec import PrinterStatus
from drivers.escpos.emulator import EmulatedPrinter
from drivers.escpos.profiles import PROFILES
from drivers.framed_text.emulator import EmulatedTextBoard
from drivers.modbus_digits.emulator import BusEmulator, EmulatedDisplay, bus_for
from drivers.voice.speaker import read_log
from kioskd.config import Config, load_config
from conftest import demo_frame, until

T = TypeVar("T")
API = "/api/v1"
REPO = Path(__file__).resolve().parents[1]

# -- the hall and its peak ------------------------------------------------------------
#
# A large hall: 30 windows. DOMAIN.md puts a hall at 1,000 to 10,000 tickets a day with
# the peak at 10-11 am; if that hour takes 30 % of a day's tickets at the top of the
# range, it is 3,000 an hour, 0.83 a second. The soak runs the whole time at 1 ticket a
# second issued and, the windows keeping up, about 1 a second called: the hall's peak,
# not a benchmark's burst. The clerks' service time is shortened so that 30 windows
# keep up with that rate (30 windows / 20 s = 1.5 calls a second at most), so what a
# call costs the daemon (a board write, an announcement) happens at the peak rate too.
PEAK_PER_S = 1.0
KIOSKS = 6                           # touch terminals; 3 print on printer_1, 3 on printer_2
ISSUE_EVERY_S = KIOSKS / PEAK_PER_S  # each kiosk: a ticket every 6 s (jittered)
HEARTBEAT_EVERY_S = 3.0              # a kiosk page reports (the daemon asks for 5 s)
WINDOWS = 30
SERVE_S = (10.0, 30.0)               # a clerk serves a ticket this long (uniform)
NOTHING_WAITING_S = 2.0              # ... and presses call-next again after a 204
RECALL_SHARE = 0.15                  # calls recalled once before the person comes
NO_SHOW_SHARE = 0.1                  # calls ended as no-show instead of completed
BUSES = 2                            # RS-485 buses of digit displays
BOARDED = 16                         # windows 1-16 have a digit display, 8 to a bus
HALL_LINES = 3                       # the hall board's lines: the latest three calls
SERVICES = (("property", "不动产登记", "A"), ("business", "企业开办", "B"),
            ("social", "社保业务", "C"))
REQUEST_TIMEOUT_S = 10.0             # a client's patience with one request
NUMBER = re.compile(r"[A-Z]\d{3}")    # a ticket's number as printed: A012


def window_services(n: int) -> list[str]:
    """Windows take turns: comprehensive ones first serve 不动产, then 企业, then 社保."""
    ids = [s for s, _, _ in SERVICES]
    first = (n - 1) % len(ids)
    return ids[first:] + ids[:first]


def kiosk_printer(k: int) -> str:
    return "printer_1" if k <= KIOSKS // 2 else "printer_2"


def board_of(window: int) -> tuple[int, int] | None:
    """(bus, unit) of the digit display over `window`, if it has one."""
    if window > BOARDED:
        return None
    per_bus = BOARDED // BUSES
    return (window - 1) // per_bus, (window - 1) % per_bus + 1


def hall_toml(directory: Path, printer_ports: dict[str, int], player: Path) -> str:
    """The soak's devices.toml: every device reached over a real transport, polled
    every second so that a fault is seen within a second or two; otherwise each
    device's defaults, as a hall runs them."""
    parts = [textwrap.dedent("""\
        [hall]
        name = "浸泡测试大厅"
        timezone = "Asia/Shanghai"
        data_dir = "var"

        [server]
        host = "127.0.0.1"
        port = 8080

        # Each kiosk issues every 6 s, 10 a minute: the per-terminal limit has room to
        # spare. Every kiosk here is 127.0.0.1 (in a hall each has its own address),
        # so the per-address limit would count the six as one: off.
        [limits]
        issue_per_terminal = 20
        issue_per_address = 0
        """)]
    for service, name, prefix in SERVICES:
        parts.append(f'[[services]]\nid = "{service}"\nname = "{name}"\nprefix = "{prefix}"\n'
                     f'code = "640100-00{len(parts)}-01"\n')
    for n in range(1, WINDOWS + 1):
        board = f'board = "board_{n}"\n' if board_of(n) else ""
        parts.append(f'[[windows]]\nid = "{n}"\nname = "{n}号窗口"\n'
                     f'services = {json.dumps(window_services(n))}\n{board}')
    for printer, port in printer_ports.items():
        parts.append(f'[devices.{printer}]\ndriver = "escpos"\n'
                     f'connection = "tcp://127.0.0.1:{port}"\npoll_interval = 1\n')
    for k in range(1, KIOSKS + 1):
        parts.append(f'[devices.kiosk_{k}]\ndriver = "terminal"\nprinter = "{kiosk_printer(k)}"\n')
    for n in range(1, BOARDED + 1):
        bus, unit = board_of(n)
        parts.append(f'[devices.board_{n}]\ndriver = "modbus_digits"\n'
                     f'port = "{directory / f"tty-bus{bus}"}"\nunit = {unit}\npoll_interval = 1\n')
    parts.append(textwrap.dedent(f"""\
        [devices.hall_board]
        driver = "framed_text"
        port = "{directory / "tty-hall"}"
        shows = "hall"
        lines = {HALL_LINES}
        poll_interval = 1
        """) + demo_frame("hall_board", ack=True))
    # The voice: pyttsx3 in its worker process, a short clip (the words once, a little
    # fast, no chime), so that a hung player is given up on 2 s past a ~3 s clip. Not ahead:
    # ahead of time it would make each of the 30 windows' words for every new head
    # of a line, work that belongs to tests/test_voice.py, not to a soak on a shared
    # machine.
    parts.append(textwrap.dedent(f"""\
        [devices.voice]
        driver = "voice"
        engine = "pyttsx3"
        player = [{json.dumps(str(player))}]
        rate = 220
        repeat = 1
        chime = ""
        ahead = false
        max_age_s = 20
        timeout = 2
        poll_interval = 0.5
        """))
    return "\n".join(parts)


# -- the hardware --------------------------------------------------------------------

PLAYER = """\
#!/bin/sh
# The hall's loudspeaker: plays (logs) the WAV, unless it is hung (the flag file exists).
while [ -e {hang} ]; do sleep 0.05; done
PYTHONPATH={repo} exec {python} -m drivers.voice.speaker --log {log} --speed 20 "$1"
"""


class Hardware:
    """The hall's devices, emulated in this process, and the faults done to them."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.printers = {name: EmulatedPrinter("gb18030", PROFILES["80mm"], name=name)
                         for name in ("printer_1", "printer_2")}
        self.ports = {name: p.listen_tcp("127.0.0.1", 0) for name, p in self.printers.items()}
        self.hang_flag = directory / "player-hangs"
        self.speaker_log = directory / "speaker.jsonl"
        self.player = directory / "player.sh"
        self.player.write_text(PLAYER.format(hang=self.hang_flag, repo=REPO,
                                             python=sys.executable, log=self.speaker_log))
        self.player.chmod(0o755)
        self.config_path = directory / "devices.toml"
        self.config_path.write_text(hall_toml(directory, self.ports, self.player),
                                    encoding="utf-8")
        self.config: Config = load_config(self.config_path)
        self.displays: list[EmulatedDisplay] = []
        self.hall_board: EmulatedTextBoard | None = None
        self.stopped_workers: list[int] = []

    def start(self) -> None:
        for n in range(1, BOARDED + 1):
            display = EmulatedDisplay(f"board_{n}", self.config.devices[f"board_{n}"].settings)
            display.start()
            self.displays.append(display)
        self.hall_board = EmulatedTextBoard("hall_board",
                                            self.config.devices["hall_board"].settings)
        self.hall_board.start()

    def close(self) -> None:
        self.release_voice()
        for display in self.displays:
            display.close()
        if self.hall_board is not None:
            self.hall_board.close()
        for printer in self.printers.values():
            printer.close()

    # -- what the devices show

    @property
    def buses(self) -> list[BusEmulator]:
        return [bus_for(str(self.directory / f"tty-bus{b}")) for b in range(BUSES)]

    def shows(self, window: int) -> str:
        """What the digit display over `window` shows, blanks stripped."""
        bus, unit = board_of(window)
        return self.buses[bus].unit(unit).text.strip()

    def hall_lines(self) -> list[str]:
        return [line.strip() for line in self.hall_board.lines]

    def printed_numbers(self, printer: str = "printer_1") -> list[str]:
        """The numbers on the tickets `printer` cut, in order (the ticket's big line)."""
        return [line.text.strip() for ticket in list(self.printers[printer].tickets)
                for line in ticket.lines if NUMBER.fullmatch(line.text.strip())]

    def played(self) -> list:
        return read_log(self.speaker_log) if self.speaker_log.exists() else []

    # -- faults

    def pull_paper(self) -> None:
        self.printers["printer_1"].status = PrinterStatus(paper="out")

    def put_paper_back(self) -> None:
        self.printers["printer_1"].status = PrinterStatus()

    def drop_buses(self) -> None:
        """Every board's cable pulled: the buses' ptys go away behind their links."""
        for bus in self.buses:
            bus.pull()
        self.hall_board.port.pull()

    def restore_buses(self) -> None:
        for bus in self.buses:
            bus.plug()
        self.hall_board.port.plug()

    def hang_voice(self, synth_pid: int | None) -> None:
        """The player hangs on whatever it is given next, and the synthesis worker
        (pyttsx3's process, `synth_pid`) stops dead."""
        self.hang_flag.touch()
        if synth_pid is not None and _is_synth_worker(synth_pid):
            os.kill(synth_pid, signal.SIGSTOP)
            self.stopped_workers.append(synth_pid)

    def release_voice(self) -> None:
        """The player plays again; a stopped worker the daemon has not replaced (and
        killed) yet goes on."""
        self.hang_flag.unlink(missing_ok=True)
        for pid in self.stopped_workers:
            if _is_synth_worker(pid):
                os.kill(pid, signal.SIGCONT)
        self.stopped_workers.clear()


def _is_synth_worker(pid: int) -> bool:
    try:
        return b"drivers.voice.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


# -- the load ------------------------------------------------------------------------

@dataclass
class Answer:
    """One request and how it ended: an HTTP status, or a transport error."""

    sent: float                        # time.monotonic() when the request went
    at: float                          # ... and when the answer (or error) came
    who: str                           # kiosk_3, window 12
    action: str                        # issue, call-next, recall, complete, no-show, heartbeat
    status: int | None                 # None: no HTTP answer (the daemon was down)
    body: Any = None
    error: str = ""


@dataclass
class Record:
    """What the hall's clients were answered, shared by their threads."""

    answers: list[Answer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)

    def of(self, action: str, *statuses: int | None) -> list[Answer]:
        """The answers to `action`, those with one of `statuses` if any are given."""
        with self.lock:
            return [a for a in self.answers if a.action == action
                    and (not statuses or a.status in statuses)]

    def issued(self) -> list[dict]:
        return [a.body for a in self.of("issue", 201)]

    def called(self) -> list[dict]:
        return [a.body for a in self.of("call-next", 200)]


EXPECTED = {"issue": {201}, "heartbeat": {200}, "call-next": {200, 204}, "recall": {200},
            "complete": {200}, "no-show": {200}}


class Load:
    """Kiosks issuing and printing, clerks calling, recalling and finishing, at the
    hall's peak rate, each a thread with its own keep-alive connection. A request
    the daemon cannot answer (it is down) is recorded and the client goes on, as a
    kiosk page or a clerk's console does. `hold_calls` stops the clerks between
    presses, so that what the boards should show stays put while they are read."""

    def __init__(self, url: str, record: Record, seed: int = 10):
        self.url = url
        self.record = record
        self.stop = threading.Event()
        self.calls_allowed = threading.Event()
        self.calls_allowed.set()
        self.seed = seed
        self._busy = 0                    # clerks in the middle of a press
        self._idle = threading.Condition()
        self.threads = [threading.Thread(target=self._kiosk, args=(k,), name=f"kiosk_{k}",
                                         daemon=True) for k in range(1, KIOSKS + 1)]
        self.threads += [threading.Thread(target=self._window, args=(w,), name=f"window {w}",
                                          daemon=True) for w in range(1, WINDOWS + 1)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        self.calls_allowed.set()
        for t in self.threads:
            t.join(REQUEST_TIMEOUT_S + 5)
        alive = [t.name for t in self.threads if t.is_alive()]
        assert not alive, f"clients still running after the load stopped: {alive}"

    def hold_calls(self, wait: float = REQUEST_TIMEOUT_S + 5) -> None:
        """Clerks stop pressing; returns once none is in the middle of a press."""
        self.calls_allowed.clear()
        with self._idle:
            assert self._idle.wait_for(lambda: self._busy == 0, wait), \
                "a clerk's press never ended"

    def resume_calls(self) -> None:
        self.calls_allowed.set()

    def _send(self, client: httpx.Client, who: str, action: str, path: str,
              body: dict | None = None) -> Answer:
        sent = time.monotonic()
        try:
            r = client.post(path, json=body)
            payload = r.json() if r.content else None
            answer = Answer(sent, time.monotonic(), who, action, r.status_code, payload)
        except httpx.TransportError as exc:
            answer = Answer(sent, time.monotonic(), who, action, None,
                            error=f"{type(exc).__name__}: {exc}")
        except ValueError as exc:              # a body that is not JSON
            answer = Answer(sent, time.monotonic(), who, action, -1, error=str(exc))
        self.record.add(answer)
        return answer

    def _kiosk(self, k: int) -> None:
        rng = random.Random(self.seed * 1000 + k)
        who = f"kiosk_{k}"
        now = time.monotonic()
        next_issue = now + rng.uniform(0, ISSUE_EVERY_S)
        next_beat = now
        with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S) as client:
            while not self.stop.is_set():
                now = time.monotonic()
                if now >= next_beat:
                    self._send(client, who, "heartbeat", f"{API}/devices/{who}/heartbeat",
                               {"page": "kiosk"})
                    next_beat = now + HEARTBEAT_EVERY_S
                if now >= next_issue:
                    service = SERVICES[rng.randrange(len(SERVICES))][0]
                    self._send(client, who, "issue", f"{API}/tickets",
                               {"service": service, "terminal": who, "print": True})
                    next_issue += rng.uniform(0.5, 1.5) * ISSUE_EVERY_S
                self.stop.wait(max(0.0, min(next_beat, next_issue) - time.monotonic()))

    def _press(self, client: httpx.Client, w: int, action: str) -> Answer | None:
        """One button at window `w`, unless the load is stopping."""
        while not self.calls_allowed.wait(0.1):
            if self.stop.is_set():
                return None
        if self.stop.is_set():
            return None
        with self._idle:
            self._busy += 1
        try:
            return self._send(client, f"window {w}", action, f"{API}/windows/{w}/{action}")
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def _window(self, w: int) -> None:
        rng = random.Random(self.seed * 1000 + 100 + w)
        self.stop.wait(rng.uniform(0, NOTHING_WAITING_S))
        with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S) as client:
            while not self.stop.is_set():
                called = self._press(client, w, "call-next")
                if called is None:
                    return
                if called.status != 200:           # nothing waiting, or the daemon is down
                    self.stop.wait(rng.uniform(0.5, 1.5) * NOTHING_WAITING_S)
                    continue
                serve = rng.uniform(*SERVE_S)
                if rng.random() < RECALL_SHARE:
                    self.stop.wait(serve / 4)
                    recalled = self._press(client, w, "recall")
                    if recalled is None or recalled.status is None:
                        continue                   # down: call-next finishes it later
                self.stop.wait(serve)
                end = "no-show" if rng.random() < NO_SHOW_SHARE else "complete"
                self._press(client, w, end)        # down or stopping: call-next finishes it


class Display:
    """The hall's TV: the event stream, read on a thread, resumed with Last-Event-ID
    after every break (a restart), as /ui/display does."""

    def __init__(self, url: str):
        self.url = url
        self.events: list[tuple[int, str, dict]] = []
        self.connects = 0
        self.ends: list[str] = []         # how each stream ended: "ended", or the error
        self.stop = threading.Event()
        self._response: httpx.Response | None = None
        self.thread = threading.Thread(target=self._run, name="display", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        response = self._response
        if response is not None:
            response.close()
        self.thread.join(15)

    def _run(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(5, read=30)) as client:
            while not self.stop.is_set():
                headers = {"Last-Event-ID": str(self.events[-1][0])} if self.events else {}
                try:
                    with client.stream("GET", f"{self.url}{API}/events",
                                       headers=headers) as response:
                        self._response = response
                        if response.status_code != 200:
                            raise httpx.TransportError(f"answered {response.status_code}")
                        self.connects += 1
                        try:
                            self._read(response)
                            self.ends.append("ended")
                        except (httpx.TransportError, httpx.StreamError) as exc:
                            self.ends.append(f"{type(exc).__name__}: {exc}")
                except (httpx.TransportError, httpx.StreamError, RuntimeError):
                    pass
                self._response = None
                self.stop.wait(0.5)

    def _read(self, response: httpx.Response) -> None:
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line == "":
                if "data" in fields and "id" in fields:
                    self.events.append((int(fields["id"]), fields.get("event", ""),
                                        json.loads(fields["data"])))
                fields = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                fields[key] = value.lstrip(" ")


# -- the daemon's memory and open files -----------------------------------------------

@dataclass(frozen=True)
class Sample:
    at: float                          # time.monotonic()
    rss_kb: int
    fds: Counter                       # by kind: socket, pipe, pty, file, anon, ...
    store_kb: int = 0                  # the database and its WAL on disk
    events: int = 0                    # the id of the store's newest event
    files: tuple[str, ...] = ()        # what its open files (not sockets, not pipes) are

    @property
    def total(self) -> int:
        return sum(self.fds.values())

    @property
    def other_than_sockets(self) -> int:
        return self.total - self.fds["socket"]


def sample(pid: int, store: Path | None = None) -> Sample | None:
    """The process's resident memory and its open files, by kind, and the size of
    `store` (kioskd.db) with its WAL and its newest event; None once the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss = int(next(line.split()[1] for line in status.splitlines()
                       if line.startswith("VmRSS:")))
        kinds: Counter = Counter()
        files = []
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue                   # closed between the listing and the look
            kinds[_fd_kind(target)] += 1
            if _fd_kind(target) not in ("socket", "pipe"):
                files.append(target)
    except (OSError, StopIteration):
        return None
    size = events = 0
    if store is not None:
        for path in (store, store.with_name(store.name + "-wal")):
            try:
                size += path.stat().st_size
            except OSError:
                pass
        with database(store.parent) as db:
            events = db.execute("SELECT max(id) FROM events").fetchone()[0] or 0
    return Sample(time.monotonic(), rss, kinds, size // 1024, events, tuple(sorted(files)))


def _fd_kind(target: str) -> str:
    if target.startswith("socket:"):
        return "socket"
    if target.startswith("pipe:"):
        return "pipe"
    if target.startswith("anon_inode:"):
        return "anon"
    if target.startswith("/dev/pts/") or target == "/dev/ptmx":
        return "pty"
    return "file"


class Probe:
    """Samples a process every `every` seconds on a thread."""

    def __init__(self, pid: int, store: Path, every: float = 0.5):
        self.pid = pid
        self.store = store
        self.every = every
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    def start(self) -> Probe:
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(5)
        return self.samples

    def _run(self) -> None:
        while not self._stop.is_set():
            taken = sample(self.pid, self.store)
            if taken is not None:
                self.samples.append(taken)
            self._stop.wait(self.every)


# -- reading the daemon -----------------------------------------------------------------

def waited(read: Callable[[], T], holds: Callable[[T], object], what: str,
           wait: float) -> T:
    """conftest.until over `read`, failing with the last reading in the message."""
    last: list[T] = []

    def check() -> bool:
        last[:] = [read()]
        return bool(holds(last[0]))

    try:
        until(check, what, wait, every=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last read: {last[0] if last else None!r}") from None
    return last[0]


def get(url: str, path: str) -> Any:
    r = httpx.get(f"{url}{API}{path}", timeout=REQUEST_TIMEOUT_S)
    assert r.status_code == 200, f"GET {path} answered {r.status_code}: {r.text}"
    return r.json()


def not_ready(url: str) -> dict[str, str]:
    """Every device not `ready`, with its state and last error."""
    try:
        devices = get(url, "/devices")
    except httpx.TransportError as exc:
        return {"(daemon)": f"unreachable: {exc}"}
    return {d["id"]: f"{d['state']}: {d['last_error']}" for d in devices
            if d["state"] != "ready"}


def database(data_dir: Path) -> sqlite3.Connection:
    """The daemon's store, for reading (while it runs too: WAL readers never block it)."""
    return sqlite3.connect(f"file:{data_dir / 'kioskd.db'}?mode=ro", uri=True, timeout=10)


def latest_calls(db: sqlite3.Connection, lines: int) -> list[str]:
    """The hall board's lines as the store has them: the latest call or recall of
    each ticket, newest first, as "A012 → 5号窗口"."""
    found: list[str] = []
    seen: set[str] = set()
    for (data,) in db.execute("SELECT data FROM events WHERE type IN "
                              "('ticket.called', 'ticket.recalled') ORDER BY id DESC"):
        event = json.loads(data)
        if event["ticket"] in seen:
            continue
        seen.add(event["ticket"])
        found.append(f"{event['number']} → {event['window_name']}")
        if len(found) == lines:
            break
    return found
