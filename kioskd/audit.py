"""The audit log: who changed what and when — every change of a ticket, window,
appointment or alert, and every device command — written append-only in the same
transaction as the change, so that the log and the hall never disagree.

The store forbids changing an entry and deleting one younger than 180 days (triggers,
migrations.py, the same words in SQLite and PostgreSQL); `purge` removes what the hall's `[audit] retention_days` lets go. Nothing
personal is written: actors are roles, windows and terminals, and the details are
the queue's own data (numbers, states, services), masked again here to be sure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .privacy import scrub
from .records import SYSTEM, Actor, AuditEntry, Event
from .store import Tx

# What an event's data repeats that the entry already holds in its own columns.
_KEPT_APART = ("ticket", "window")
MIN_RETENTION_DAYS = 180


def record(tx: Tx, actor: Actor, action: str, at: float, day: str, *,
           ticket: str | None = None, window: str | None = None,
           appointment: str | None = None, alert: int | None = None,
           device: str | None = None, detail: dict[str, Any] | None = None) -> int:
    """Append one entry; returns its id."""
    return tx.audit(AuditEntry(
        at=at, day=day, action=action, actor=actor, ticket=ticket, window=window,
        appointment=appointment, alert=alert, device=device,
        detail=scrub(detail or {})))


def record_events(tx: Tx, actor: Actor, events: Iterable[Event],
                  day_of: Callable[[float], str]) -> None:
    """An entry for each change an operation made, as its events describe it. The
    events' data is already what the public event stream may carry (no personal
    data, by the same rule), so it is written as it is, without another scrub."""
    day, day_at = None, None
    for event in events:
        if event.at != day_at:                   # an operation's events share their time
            day, day_at = day_of(event.at), event.at
        data = event.data
        tx.audit(AuditEntry(
            at=event.at, day=day, action=event.type, actor=actor, ticket=data.get("ticket"),
            window=data.get("window") or data.get("from_window"),
            appointment=data.get("appointment"),
            alert=data.get("alert") if event.type == "alert" else None,
            device=data.get("device"),
            detail={k: v for k, v in data.items() if k not in _KEPT_APART}))


PURGE_BATCH = 5_000     # entries deleted per transaction: the loop stays free for calls


def purge_expired(tx: Tx, now: float, retention_days: int,
                  day_of: Callable[[float], str]) -> int:
    """Remove up to PURGE_BATCH audit entries, and the appointments, older than the
    hall's retention; returns the entries removed (call again until 0). The store
    keeps any entry younger than 180 days whatever the retention asks. The purge
    itself is written to the log."""
    days = max(retention_days, MIN_RETENTION_DAYS)
    before = day_of(now - days * 86400)
    entries = tx.purge_audit(before, PURGE_BATCH)
    appointments = tx.purge_appointments(before)
    if entries or appointments:
        record(tx, SYSTEM, "audit.purged", now, day_of(now), detail={
            "before": before, "retention_days": days, "entries": entries,
            "appointments": appointments})
    return entries
