"""The plain records the queue engine and the store pass between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    WAITING = "waiting"
    CALLED = "called"
    SERVING = "serving"
    DONE = "done"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"


AT_WINDOW = (Status.CALLED, Status.SERVING)


class WindowState(StrEnum):
    OPEN = "open"
    PAUSED = "paused"
    CLOSED = "closed"


class PrintStatus(StrEnum):
    PRINTED = "printed"
    FAILED = "failed"
    NONE = "none"


@dataclass
class Ticket:
    """One number taken at the hall. Times are Unix seconds."""

    id: str
    day: str                      # the hall's local date the number belongs to
    number: str                   # "A001"
    service: str
    priority: bool
    status: Status
    issued_at: float
    queue_at: float               # place in line: issue time, moved on re-admission
    window: str | None = None     # the window it was called to (kept after it finishes)
    target_window: str | None = None   # transferred to this window only
    called_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    recalls: int = 0
    transfers: int = 0
    terminal: str | None = None
    print_device: str | None = None
    print_status: PrintStatus = PrintStatus.NONE
    print_error: str | None = None
    seq: int | None = None        # store's insertion order; the last tie-breaker in line
    closed_by: str | None = None  # why it ended without service: "cancel", "day_end"

    def line_key(self) -> tuple:
        """The order call-next follows: priority first, then longest in line."""
        return (not self.priority, self.queue_at, self.seq or 0)


@dataclass
class WindowRecord:
    """A window's run-time state; its name and services come from the config."""

    id: str
    state: WindowState
    current: str | None = None    # ticket id being called or served
    since: float = 0.0


@dataclass(frozen=True)
class Event:
    """One entry of the hall's event log, as the bus and SSE carry it."""

    id: int
    type: str
    at: float
    data: dict[str, Any] = field(default_factory=dict)
