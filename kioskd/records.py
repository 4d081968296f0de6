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
    appointment: str | None = None   # the appointment it was issued for at check-in

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
    # written by this daemon (False: another daemon of the hall, on a shared store);
    # never sent: this daemon's own counters (/metrics) count only what it did
    local: bool = field(default=True, compare=False, repr=False)


@dataclass(frozen=True)
class Actor:
    """Who asked for a change, as the audit log records it: a role, and where it acted
    from. Never a person's name: the token says which role or window, nothing more."""

    role: str                     # kiosk, window, technician, supervisor, booking,
                                  # evaluator, keypad, system
    window: str | None = None     # the clerk's (or keypad's) own window
    terminal: str | None = None   # the touch terminal it came through
    device: str | None = None     # the device that acted (a keypad)
    token: bool = True            # False: no token was given (an open role, loopback only)

    @property
    def label(self) -> str:
        """One short name for filtering: `window:3`, `kiosk:kiosk_1`, `supervisor`."""
        where = self.window if self.role in ("window", "keypad") and self.window else (
            self.device or self.terminal)
        return f"{self.role}:{where}" if where else self.role


SYSTEM = Actor("system")          # the daemon itself: day end, alerts raised and closed


class AppointmentStatus(StrEnum):
    BOOKED = "booked"
    CHECKED_IN = "checked_in"
    CANCELLED = "cancelled"


@dataclass
class Appointment:
    """A slot booked through the hall's booking system, checked in at a kiosk. Its
    name and phone are masked before they are stored ("张*", "138****5678")."""

    id: str
    day: str                      # the hall's local date of the slot
    code: str                     # the check-in code the citizen enters or scans
    service: str
    slot_at: float
    status: AppointmentStatus
    created_at: float
    name: str | None = None
    phone: str | None = None
    reference: str | None = None  # the booking system's own id
    checked_in_at: float | None = None
    cancelled_at: float | None = None
    ticket: str | None = None     # the ticket issued at check-in


@dataclass(frozen=True)
class Rating:
    """One evaluation (好差评) of a completed ticket: 5 非常满意 … 1 非常不满意."""

    ticket: str
    day: str
    window: str
    service: str
    level: int
    at: float
    source: str                   # "pad", "keypad", ...


@dataclass
class AlertRecord:
    """One early warning, from raised to closed. `key` names the condition (one
    ticket, window, service or device and kind): while an alert of a key is open,
    the same condition raises nothing new."""

    id: int | None
    key: str
    kind: str
    message: str
    raised_at: float
    device: str | None = None
    window: str | None = None
    service: str | None = None
    ticket: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    acked_at: float | None = None
    acked_by: str | None = None
    closed_at: float | None = None
    closed_by: str | None = None

    @property
    def state(self) -> str:
        if self.closed_at is not None:
            return "closed"
        return "acknowledged" if self.acked_at is not None else "open"


@dataclass(frozen=True)
class AuditEntry:
    """One line of the append-only audit log: who changed what, when."""

    at: float
    day: str                      # the hall's local date of `at`
    action: str                   # "ticket.called", "window.changed", "appointment.cancelled", ...
    actor: Actor
    ticket: str | None = None
    window: str | None = None     # the window the change concerns
    appointment: str | None = None
    alert: int | None = None
    device: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)   # what changed; no personal data
    id: int | None = None
