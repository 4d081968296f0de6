"""Emulated text boards: the far end of a port on a pty, decoding with the driver's own frame.

Every `emulate = true` board on one port hangs off one `EmulatedPort`, as
boards hang off one RS-485 cable: one PtyPort behind the port's path, every
byte seen by every board, each board keeping the frames to its address. A
board decodes with the same `FrameSpec` the driver encodes with and keeps
what a person in the hall would read: the text of each line and which lines
flash. A frame for an address nobody emulates is ignored; a malformed one is
counted in `rejected` with the reason, as a board silently drops it.

A test or technician sets faults: `silent` (the board shows frames but sends
no ack), `pull()`/`plug()` (the cable).
"""

from __future__ import annotations

import errno
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..frames import Frame, FrameDecoder, FrameSpec, Rejected, hex_bytes
from ..ptyport import PtyPort
from ..serialbus import SerialLine
from . import Settings

HISTORY = 1000            # shows kept per board
INTERRUPTED_S = 0.1       # a frame broken off this long is dropped, as a board's receive timeout does


@dataclass
class BoardModel:
    """What one emulated board shows; changed only under its port's lock."""

    address: int
    spec: FrameSpec
    lines: list[str]
    flashing: list[bool]
    silent: bool = False                 # fault: take frames, send no ack
    frames: int = 0                      # frames shown
    # (the lines after a frame, time.monotonic() the frame's last byte was on the wire)
    history: deque[tuple[tuple[str, ...], float]] = field(
        default_factory=lambda: deque(maxlen=HISTORY))


@dataclass
class _Listener:
    """The boards that speak one frame, and the decoder they share."""

    decoder: FrameDecoder
    boards: dict[int, BoardModel] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    ignored: int = 0                     # good frames to addresses nobody emulates


class EmulatedPort:
    """One port's pty and the emulated boards behind it."""

    def __init__(self, line: SerialLine):
        self.line = line
        self.port = PtyPort(line, self._receive, link=line.port,
                            name=f"emulated boards on {line.port}")
        self.changed = threading.Condition()
        self._listeners: dict[FrameSpec, _Listener] = {}
        self._last_arrival = 0.0

    def start(self) -> None:
        self.port.start()

    def close(self) -> None:
        self.port.close()

    def add(self, address: int, spec: FrameSpec, lines: int) -> BoardModel:
        with self.changed:
            if any(address in listener.boards for listener in self._listeners.values()):
                raise OSError(errno.EADDRINUSE, f"two emulated boards at address {address} "
                                                f"on {self.line.port}")
            listener = self._listeners.setdefault(spec, _Listener(FrameDecoder(spec)))
            board = listener.boards[address] = BoardModel(address, spec, [""] * lines,
                                                          [False] * lines)
            return board

    def remove(self, board: BoardModel) -> None:
        with self.changed:
            listener = self._listeners.get(board.spec)
            if listener is not None and listener.boards.get(board.address) is board:
                del listener.boards[board.address]
                if not listener.boards:
                    del self._listeners[board.spec]

    def board(self, address: int) -> BoardModel | None:
        """The emulated board at `address`, if any."""
        with self.changed:
            return next((listener.boards[address] for listener in self._listeners.values()
                         if address in listener.boards), None)

    def rejected(self, spec: FrameSpec) -> list[Rejected]:
        """The malformed frames boards speaking `spec` dropped, oldest first."""
        with self.changed:
            listener = self._listeners.get(spec)
            return list(listener.rejected) if listener else []

    def ignored(self, spec: FrameSpec) -> int:
        with self.changed:
            listener = self._listeners.get(spec)
            return listener.ignored if listener else 0

    def pull(self) -> None:
        """The cable pulled: the pty goes, and any frame half received with it."""
        self.port.pull()
        with self.changed:
            for listener in self._listeners.values():
                listener.rejected += listener.decoder.flush()
            self.changed.notify_all()

    def plug(self) -> None:
        self.port.plug()

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str = "") -> None:
        """Wait until `condition()` holds, checked after every chunk received."""
        with self.changed:
            if not self.changed.wait_for(condition, timeout):
                raise TimeoutError(f"emulated boards on {self.line.port}: no "
                                   f"{what or 'change'} after {timeout:g} s")

    # --- the PtyPort's thread

    def _receive(self, data: bytes, wire_end: float) -> None:
        acks = []
        with self.changed:
            now = time.monotonic()
            interrupted = now - self._last_arrival > INTERRUPTED_S
            self._last_arrival = now
            for listener in self._listeners.values():
                decoder = listener.decoder
                if interrupted:
                    listener.rejected += decoder.flush()
                for item in decoder.feed(data):
                    # the chunk's last byte ends at wire_end; earlier frames end earlier
                    end = (wire_end - self.line.wire_s(decoder.received - item.end)
                           if isinstance(item, Frame) else wire_end)
                    ack = self._take(listener, item, end)
                    if ack is not None:
                        acks.append((ack, end))
            self.changed.notify_all()
        for ack, end in acks:
            self.port.send(ack, after=end + self.line.gap_s)

    def _take(self, listener: _Listener, item: Frame | Rejected, end: float) -> bytes | None:
        """Show a frame on its board; the ack to send, if any."""
        if isinstance(item, Rejected):
            listener.rejected.append(item)
            return None
        board = listener.boards.get(item.address)
        if board is None:
            listener.ignored += 1
            return None
        spec = board.spec
        if item.command != spec.command:
            listener.rejected.append(Rejected(f"unknown command {hex_bytes(item.command)} to "
                                              f"address {item.address}", item.raw))
            return None
        index = item.line or 0
        if index >= len(board.lines):
            listener.rejected.append(Rejected(f"line {index + 1} to address {item.address}, "
                                              f"which has {len(board.lines)}", item.raw))
            return None
        board.lines[index] = spec.text(item)
        board.flashing[index] = item.effect == "flash"
        board.frames += 1
        board.history.append((tuple(board.lines), end))
        return spec.ack if spec.ack and not board.silent else None


# one emulated port per path, shared by the boards on it
_ports: dict[str, tuple[EmulatedPort, int]] = {}
_ports_lock = threading.Lock()


def _acquire(line: SerialLine) -> EmulatedPort:
    with _ports_lock:
        port, users = _ports.get(line.port, (None, 0))
        if port is None:
            port = EmulatedPort(line)
            port.start()
        _ports[line.port] = (port, users + 1)
        return port


def _release(port: EmulatedPort) -> None:
    with _ports_lock:
        entry = _ports.get(port.line.port)
        if entry is None or entry[0] is not port:
            return
        if entry[1] > 1:
            _ports[port.line.port] = (port, entry[1] - 1)
            return
        del _ports[port.line.port]
    port.close()


class EmulatedTextBoard:
    """One `emulate = true` board: its address on the port's emulated bus.
    The Emulator protocol (start, close, detail), and the model tests read."""

    def __init__(self, device_id: str, settings: Settings):
        self.id = device_id
        self.settings = settings
        self.port: EmulatedPort | None = None
        self.board: BoardModel | None = None

    # --- Emulator

    def start(self) -> None:
        port = _acquire(self.settings.line)
        try:
            self.board = port.add(self.settings.address, self.settings.frame,
                                  self.settings.display.lines)
        except OSError:
            _release(port)
            raise
        self.port = port

    def close(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            if self.board is not None:
                port.remove(self.board)
            _release(port)

    def detail(self) -> dict[str, Any]:
        port = self._port()
        with port.changed:
            board = self._board()
            return {"emulated": True, "pty": port.port.path, "link": port.port.address,
                    "plugged": port.port.plugged, "address": board.address,
                    "shows": list(board.lines),
                    "flashing": [n for n, flash in enumerate(board.flashing, 1) if flash],
                    "frames": board.frames, "rejected": len(port.rejected(board.spec)),
                    "silent": board.silent}

    # --- what the board shows

    @property
    def lines(self) -> list[str]:
        with self._port().changed:
            return list(self._board().lines)

    @property
    def flashing(self) -> list[bool]:
        with self._port().changed:
            return list(self._board().flashing)

    @property
    def history(self) -> list[tuple[tuple[str, ...], float]]:
        with self._port().changed:
            return list(self._board().history)

    @property
    def frames(self) -> int:
        return self._board().frames

    @property
    def rejected(self) -> list[Rejected]:
        """Malformed frames in this board's frame format on its port."""
        return self._port().rejected(self.settings.frame)

    @property
    def ignored(self) -> int:
        """Good frames to addresses no emulated board has."""
        return self._port().ignored(self.settings.frame)

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str = "") -> None:
        """Wait until `condition()` holds; checked each time the port receives bytes."""
        self._port().wait_until(condition, timeout, what)

    def wait_for_line(self, index: int, text: str, timeout: float = 2.0) -> None:
        board = self._board()
        self.wait_until(lambda: board.lines[index] == text, timeout,
                        f"line {index + 1} reading {text!r}")

    # --- faults

    @property
    def silent(self) -> bool:
        return self._board().silent

    @silent.setter
    def silent(self, value: bool) -> None:
        self._board().silent = value

    def pull(self) -> None:
        """Pull the port's cable (every board on it goes)."""
        self._port().pull()

    def plug(self) -> None:
        self._port().plug()

    def _port(self) -> EmulatedPort:
        if self.port is None:
            raise RuntimeError(f"{self.id}: the emulated board is not started")
        return self.port

    def _board(self) -> BoardModel:
        if self.board is None:
            raise RuntimeError(f"{self.id}: the emulated board is not started")
        return self.board
