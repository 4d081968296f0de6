"""An emulated ESC/POS printer: a decoder of what the codec sends, served over TCP or a pty.

The decoder reads the same command tables `codec` writes with and turns a
byte stream into tickets (lines of text with their style, QR codes, pictures,
cuts), answering DLE EOT from a status the test or technician sets. The
printer serves it on background threads, like hardware that does not care
about anyone's event loop, and can save each job as .bin, .json and .png.
"""

from __future__ import annotations

import json
import logging
import os
import re
import selectors
import socket
import struct
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import codec
from .codec import PrinterStatus, encode_status
from .profiles import PROFILES, Profile

log = logging.getLogger(__name__)

ALIGNMENT_NAMES = {0: "left", 1: "center", 2: "right", 48: "left", 49: "center", 50: "right"}
CUT_MODES = {0: "full", 48: "full", 1: "partial", 49: "partial"}
CUT_AFTER_FEED_MODES = {65: "full", 66: "partial"}      # GS V m n: feed n, then cut
RASTER_MAX_WIDTH_BYTES = 255
RASTER_MAX_HEIGHT = 4095

# commands a printer knows but this model does not keep: letter -> parameter bytes
OTHER_ESC = {"!": 1, "-": 1, "2": 0, "3": 1, "J": 1, "M": 1, "t": 1, "R": 1, "G": 1, "{": 1,
             "V": 1, " ": 1, "p": 3, "c": 2}
OTHER_GS = {"B": 1, "H": 1, "h": 1, "w": 1, "f": 1, "a": 1, "L": 2, "W": 2}
OTHER_FS = {"!": 1, "-": 1, "W": 1, "S": 2}

TEXT_RUN = re.compile(rb"[\x20-\xff]+")
IGNORED_CONTROLS = {0x0D, 0x00}          # CR (printers set to LF-only ignore it), NUL padding


@dataclass
class Line:
    """One printed line and the print modes it was printed in."""

    text: str
    align: str = "left"
    bold: bool = False
    width: int = 1
    height: int = 1


@dataclass
class PrintedQr:
    data: str
    module_size: int
    align: str


@dataclass
class PrintedImage:
    width: int                               # dots
    height: int
    align: str
    bits: bytes = field(repr=False)          # rows of width/8 bytes, MSB first, 1 = black


Printed = Line | PrintedQr | PrintedImage


@dataclass
class DecodedTicket:
    """One job as it came out of the printer; complete when it ended at a cut."""

    lines: list[Line] = field(default_factory=list)
    qr_codes: list[str] = field(default_factory=list)
    images: list[tuple[int, int]] = field(default_factory=list)
    cut: bool = False
    beeps: int = 0
    raw: bytes = b""                         # the job's bytes, without status queries
    printed: list[Printed] = field(default_factory=list)    # all of the above, in paper order
    unhandled: list[str] = field(default_factory=list)      # commands this model does not keep
    completed_at: float = field(default=0.0, compare=False)  # time.monotonic() at the cut

    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def find(self, text: str) -> Line | None:
        """The first line containing `text`."""
        return next((line for line in self.lines if text in line.text), None)

    def has_output(self) -> bool:
        return bool(self.printed or self.beeps or self.cut)

    def as_dict(self) -> dict[str, Any]:
        return {"lines": [asdict(line) for line in self.lines], "qr_codes": self.qr_codes,
                "images": [list(size) for size in self.images], "cut": self.cut,
                "beeps": self.beeps, "unhandled": self.unhandled, "raw_bytes": len(self.raw)}


class Decoder:
    """ESC/POS bytes in, tickets and status answers out. Bytes may be split
    anywhere between `feed` calls; an incomplete command waits for the rest."""

    def __init__(self, encoding: str = "gb18030",
                 status: Callable[[], PrinterStatus] = PrinterStatus):
        if encoding not in codec.ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(codec.ENCODINGS)}")
        self.encoding = encoding
        self.status = status
        self._pending = bytearray()
        self._done: list[DecodedTicket] = []
        self._ticket = DecodedTicket()
        self._raw = bytearray()
        self._segments: list[tuple[bool, bytearray]] = []     # (Chinese mode, bytes) of the open line
        self._qr_data: bytes | None = None
        self._qr_module_size = 3
        self._reset_modes()

    def _reset_modes(self) -> None:
        self._align = "left"
        self._bold = False
        self._width = self._height = 1
        self._chinese = False

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the link; returns what the printer answers."""
        self._pending += data
        replies = bytearray()
        while self._pending:
            used = self._step(replies)
            if not used:
                break
            if self._pending[0] != codec.DLE:          # real-time commands are not part of a job
                self._raw += self._pending[:used]
            del self._pending[:used]
            if self._ticket.cut:
                self._complete()
        return bytes(replies)

    def take_tickets(self) -> list[DecodedTicket]:
        """The tickets cut since the last call."""
        done, self._done = self._done, []
        return done

    def finish(self) -> DecodedTicket | None:
        """The link closed: the job printed so far without a cut, if any."""
        if self._segments:
            self._end_line()
        if self._pending:
            self._ticket.unhandled.append(f"{len(self._pending)} bytes of an unfinished command")
            self._pending.clear()
        if not self._ticket.has_output():
            return None
        ticket = self._ticket
        ticket.raw, ticket.completed_at = bytes(self._raw), time.monotonic()
        self._ticket, self._raw = DecodedTicket(), bytearray()
        return ticket

    def _complete(self) -> None:
        ticket = self._ticket
        ticket.raw, ticket.completed_at = bytes(self._raw), time.monotonic()
        self._done.append(ticket)
        self._ticket, self._raw = DecodedTicket(), bytearray()

    # --- one command at the head of the pending bytes; returns bytes used, 0 = incomplete

    def _step(self, replies: bytearray) -> int:
        head = self._pending[0]
        if head >= 0x20:
            run = TEXT_RUN.match(self._pending).group()
            self._add_text(bytes(run))
            return len(run)
        if head == codec.LF:
            self._end_line()
            return 1
        if head == codec.ESC:
            return self._escape()
        if head == codec.GS:
            return self._group()
        if head == codec.FS:
            return self._chinese_command()
        if head == codec.DLE:
            return self._real_time(replies)
        if head not in IGNORED_CONTROLS:
            self._unhandled(f"0x{head:02x}")
        return 1

    def _escape(self) -> int:
        if len(self._pending) < 2:
            return 0
        command = chr(self._pending[1])
        if command == "@":
            self._reset_modes()
            self._segments.clear()
            return 2
        if command in "aEd":
            if len(self._pending) < 3:
                return 0
            n = self._pending[2]
            if command == "a":
                if n in ALIGNMENT_NAMES:
                    self._align = ALIGNMENT_NAMES[n]
                else:
                    self._unhandled(f"ESC a {n}")
            elif command == "E":
                self._bold = bool(n & 1)
            else:
                self._feed_lines(n)
            return 3
        if command == "B":
            if len(self._pending) < 4:
                return 0
            self._ticket.beeps += 1
            return 4
        return self._other("ESC", command, OTHER_ESC)

    def _group(self) -> int:
        if len(self._pending) < 2:
            return 0
        command = chr(self._pending[1])
        if command == "!":
            if len(self._pending) < 3:
                return 0
            n = self._pending[2]
            self._width, self._height = (n >> 4 & 7) + 1, (n & 7) + 1
            return 3
        if command == "V":
            return self._cut()
        if command == "v":
            return self._raster()
        if command == "(":
            return self._function()
        return self._other("GS", command, OTHER_GS)

    def _chinese_command(self) -> int:
        if len(self._pending) < 2:
            return 0
        command = chr(self._pending[1])
        if command in "&.":
            self._chinese = command == "&"
            return 2
        return self._other("FS", command, OTHER_FS)

    def _real_time(self, replies: bytearray) -> int:
        if len(self._pending) < 2:
            return 0
        if self._pending[1] != codec.EOT:
            self._unhandled(f"DLE 0x{self._pending[1]:02x}")
            return 2
        if len(self._pending) < 3:
            return 0
        n = self._pending[2]
        if n in codec.STATUS_QUERIES:
            replies.append(encode_status(n, self.status()))
        else:
            self._unhandled(f"DLE EOT {n}")
        return 3

    def _other(self, prefix: str, command: str, known: dict[str, int]) -> int:
        if command not in known:
            self._unhandled(f"{prefix} 0x{ord(command):02x}")
            return 2
        end = 2 + known[command]
        if len(self._pending) < end:
            return 0
        self._unhandled(" ".join([prefix, command, *map(str, self._pending[2:end])]))
        return end

    def _cut(self) -> int:
        if len(self._pending) < 3:
            return 0
        mode = self._pending[2]
        if mode in CUT_AFTER_FEED_MODES:
            if len(self._pending) < 4:
                return 0
            self._feed_lines(self._pending[3])
            self._ticket.cut = True
            return 4
        if mode in CUT_MODES:
            if self._segments:
                self._end_line()
            self._ticket.cut = True
        else:
            self._unhandled(f"GS V {mode}")
        return 3

    def _raster(self) -> int:
        if len(self._pending) < 3:
            return 0
        if self._pending[2] != ord("0"):
            self._unhandled(f"GS v 0x{self._pending[2]:02x}")
            return 3
        if len(self._pending) < 8:
            return 0
        width_bytes, height = struct.unpack_from("<HH", self._pending, 4)
        if not (1 <= width_bytes <= RASTER_MAX_WIDTH_BYTES and 1 <= height <= RASTER_MAX_HEIGHT):
            self._unhandled(f"GS v 0 of {width_bytes} x {height}")
            return 8
        end = 8 + width_bytes * height
        if len(self._pending) < end:
            return 0
        image = PrintedImage(width_bytes * 8, height, self._align, bytes(self._pending[8:end]))
        self._ticket.images.append((image.width, image.height))
        self._ticket.printed.append(image)
        return end

    def _function(self) -> int:
        """GS ( x pL pH ...: QR codes are kept, other functions skipped whole."""
        if len(self._pending) < 5:
            return 0
        length = self._pending[3] | self._pending[4] << 8
        end = 5 + length
        if len(self._pending) < end:
            return 0
        parameters = bytes(self._pending[5:end])
        if self._pending[2] == ord("k") and length >= 2 and parameters[0] == codec.QR_SYMBOL:
            self._qr_function(parameters[1], parameters[2:])
        else:
            self._unhandled(f"GS ( {chr(self._pending[2])!r} of {length} bytes")
        return end

    def _qr_function(self, function: int, arguments: bytes) -> None:
        if function == codec.QR_MODULE_SIZE and arguments:
            self._qr_module_size = arguments[0]
        elif function == codec.QR_STORE and arguments:
            self._qr_data = arguments[1:]
        elif function == codec.QR_PRINT:
            if self._qr_data is None:
                self._unhandled("QR print with no data stored")
                return
            data = self._qr_data.decode(codec.QR_DATA_ENCODING, errors="replace")
            self._ticket.qr_codes.append(data)
            self._ticket.printed.append(PrintedQr(data, self._qr_module_size, self._align))
        elif function not in (codec.QR_MODEL, codec.QR_ERROR_CORRECTION):
            self._unhandled(f"QR function {function}")

    # --- the print model

    def _add_text(self, data: bytes) -> None:
        if self._segments and self._segments[-1][0] == self._chinese:
            self._segments[-1][1].extend(data)
        else:
            self._segments.append((self._chinese, bytearray(data)))

    def _end_line(self) -> None:
        text = "".join(data.decode(self.encoding if chinese else "cp437", errors="replace")
                       for chinese, data in self._segments)
        self._segments.clear()
        line = Line(text, self._align, self._bold, self._width, self._height)
        self._ticket.lines.append(line)
        self._ticket.printed.append(line)

    def _feed_lines(self, count: int) -> None:
        """ESC d n: print what is in the buffer, then feed to n lines below it."""
        if count == 0:
            if self._segments:
                self._end_line()
            return
        for _ in range(count):
            self._end_line()

    def _unhandled(self, description: str) -> None:
        self._ticket.unhandled.append(description)


# --- the printer on a link --------------------------------------------------

TicketListener = Callable[[DecodedTicket, Path | None], None]


def parse_listen(address: str) -> tuple[str, int]:
    """'127.0.0.1:9100' or '[::1]:9100' -> (host, port)."""
    host, separator, port = address.rpartition(":")
    if not separator or not port.isdigit() or not host:
        raise ValueError(f"'{address}' is not host:port")
    return host.strip("[]"), int(port)


class EmulatedPrinter:
    """A printer that listens on TCP and/or a pty, decodes every job and keeps
    the tickets. State a test or technician sets: `status` (answered to DLE
    EOT), `silent` (read everything, answer nothing: a hung printer)."""

    def __init__(self, encoding: str = "gb18030", profile: Profile = PROFILES["80mm"],
                 jobs_dir: Path | None = None, *, listen: str | None = None, pty: bool = False,
                 name: str = "emulated printer", on_ticket: TicketListener | None = None):
        if encoding not in codec.ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(codec.ENCODINGS)}")
        self.encoding = encoding
        self.profile = profile
        self.jobs_dir = jobs_dir
        self.listen = listen
        self.pty = pty
        self.name = name
        self.on_ticket = on_ticket
        self.status = PrinterStatus()
        self.silent = False
        self.tickets: list[DecodedTicket] = []
        self.incomplete: list[DecodedTicket] = []        # jobs whose link closed before a cut
        self.received_bytes = 0
        self.last_byte_at: float | None = None           # time.monotonic()
        self.last_png: Path | None = None
        self.tcp_address: tuple[str, int] | None = None
        self.pty_path: str | None = None
        self._jobs_saved = 0
        self._changed = threading.Condition()
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, self._woken)
        self._calls: deque[Callable[[], None]] = deque()
        self._decoders: dict[Any, Decoder] = {}          # socket or pty master fd -> its decoder
        self._listeners: list[socket.socket] = []
        self._pty_fds: tuple[int, int] | None = None     # (master, slave)
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- the Emulator protocol

    def start(self) -> None:
        if self.listen:
            self.listen_tcp(*parse_listen(self.listen))
        if self.pty:
            self.listen_pty()

    def detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"emulated": True, "profile": self.profile.name,
                                  "encoding": self.encoding, "jobs": len(self.tickets),
                                  "incomplete_jobs": len(self.incomplete),
                                  "last_png": str(self.last_png) if self.last_png else None}
        if self.tcp_address:
            detail["listen"] = "%s:%d" % self.tcp_address
        if self.pty_path:
            detail["pty"] = self.pty_path
        return detail

    def close(self) -> None:
        if self._closed:
            return
        if self._thread is not None:
            self._in_loop(self._shut_down)
            self._thread.join()
        else:
            self._shut_down()
        self._selector.close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    # --- links

    def listen_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen for TCP connections (one decoder each); returns the bound port."""
        listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen()
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self.tcp_address = (host, listener.getsockname()[1])
        self._in_loop(lambda: self._watch_listener(listener))
        return self.tcp_address[1]

    def listen_pty(self) -> str:
        """A pseudo-terminal in raw mode; returns the path a serial client opens."""
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._pty_fds = (master, slave)
        self.pty_path = os.ttyname(slave)
        self._in_loop(lambda: self._watch_link(master, self._read_pty))
        return self.pty_path

    def drop_connections(self) -> None:
        """Reset every TCP connection now, as a printer losing power would."""
        self._in_loop(self._drop_connections)

    # --- what arrived

    def wait_for_tickets(self, count: int, timeout: float) -> list[DecodedTicket]:
        """The first `count` complete tickets, once they are there; TimeoutError if not in time."""
        self.wait_until(lambda: len(self.tickets) >= count, timeout,
                        f"{count} complete tickets")
        return self.tickets[:count]

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str = "") -> None:
        """Wait until `condition()` holds, checked each time a job is recorded."""
        with self._changed:
            if not self._changed.wait_for(condition, timeout):
                raise TimeoutError(f"{self.name}: no {what or 'change'} after {timeout} s")

    # --- the I/O thread

    def _in_loop(self, call: Callable[[], None]) -> None:
        """Run `call` on the I/O thread and wait for it."""
        if self._closed:
            raise RuntimeError(f"{self.name} is closed")
        if threading.current_thread() is self._thread:
            call()
            return
        done = threading.Event()

        def run() -> None:
            try:
                call()
            finally:
                done.set()

        self._calls.append(run)
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()
        os.write(self._wake_write, b"!")
        done.wait()

    def _serve(self) -> None:
        while not self._closed:
            for key, _ in self._selector.select():
                if self._closed:
                    break
                if not self._watched(key.fileobj):      # closed by an earlier event of this batch
                    continue
                try:
                    key.data(key.fileobj)
                except Exception:
                    log.exception("%s: failed on %s", self.name, key.fileobj)
                    if isinstance(key.fileobj, socket.socket) and key.fileobj in self._decoders:
                        self._hang_up(key.fileobj)

    def _woken(self, fd: int) -> None:
        try:
            os.read(fd, 4096)
        except BlockingIOError:
            pass
        while self._calls:
            self._calls.popleft()()

    def _watched(self, source: Any) -> bool:
        return source == self._wake_read or source in self._decoders or source in self._listeners

    def _watch_link(self, source: Any, handler: Callable[[Any], None]) -> None:
        self._selector.register(source, selectors.EVENT_READ, handler)
        self._decoders[source] = Decoder(self.encoding, lambda: self.status)

    def _watch_listener(self, listener: socket.socket) -> None:
        self._selector.register(listener, selectors.EVENT_READ, self._accept)
        self._listeners.append(listener)

    def _accept(self, listener: socket.socket) -> None:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return
        connection.setblocking(False)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._watch_link(connection, self._read_socket)

    def _read_socket(self, connection: socket.socket) -> None:
        try:
            data = connection.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._hang_up(connection)
            return
        replies = self._take(connection, data)
        if replies:
            try:
                connection.send(replies)
            except OSError:
                self._hang_up(connection)

    def _read_pty(self, master: int) -> None:
        try:
            data = os.read(master, 65536)
        except (BlockingIOError, OSError):      # EIO: no terminal end open right now
            return
        replies = self._take(master, data)
        if replies:
            try:
                os.write(master, replies)
            except OSError:
                log.debug("%s: nobody reads the pty; answer dropped", self.name)

    def _take(self, source: Any, data: bytes) -> bytes:
        """Decode bytes from one link; returns the answers to send (none when silent)."""
        self.received_bytes += len(data)
        self.last_byte_at = time.monotonic()
        decoder = self._decoders[source]
        replies = decoder.feed(data)
        for ticket in decoder.take_tickets():
            self._record(ticket)
        return b"" if self.silent else replies

    def _hang_up(self, connection: socket.socket, *, reset: bool = False) -> None:
        self._selector.unregister(connection)
        unfinished = self._decoders.pop(connection).finish()
        if reset:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()
        if unfinished is not None:
            self._record(unfinished)

    def _drop_connections(self) -> None:
        for source in list(self._decoders):
            if isinstance(source, socket.socket):
                self._hang_up(source, reset=True)

    def _shut_down(self) -> None:
        self._drop_connections()
        for listener in self._listeners:
            self._selector.unregister(listener)
            listener.close()
        self._listeners.clear()
        if self._pty_fds is not None:
            master, slave = self._pty_fds
            self._selector.unregister(master)
            unfinished = self._decoders.pop(master).finish()
            if unfinished is not None:
                self._record(unfinished)
            os.close(master)
            os.close(slave)
            self._pty_fds = None
        self._closed = True

    # --- jobs

    def _record(self, ticket: DecodedTicket) -> None:
        png = None
        if self.jobs_dir is not None:
            try:
                png = self._save(ticket)
            except Exception:
                log.exception("%s: could not save job to %s", self.name, self.jobs_dir)
        with self._changed:
            (self.tickets if ticket.cut else self.incomplete).append(ticket)
            self._changed.notify_all()
        if self.on_ticket is not None:
            self.on_ticket(ticket, png)

    def _save(self, ticket: DecodedTicket) -> Path:
        from .render import save_png

        assert self.jobs_dir is not None
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._jobs_saved += 1
        stem = self.jobs_dir / f"{self._jobs_saved:04d}"
        stem.with_suffix(".bin").write_bytes(ticket.raw)
        stem.with_suffix(".json").write_text(
            json.dumps(ticket.as_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
        png = stem.with_suffix(".png")
        save_png(ticket, self.profile, png)
        self.last_png = png
        return png
