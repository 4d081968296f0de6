"""Early warnings (预警): raised once when a condition starts, closed by themselves when
it ends, acknowledged by a person in between.

Each alert lives in the store's `alerts` table; every change of one is an `alert`
event (`state`: raised, acknowledged, closed) and an audit entry, written in the
same transaction. `key` names the condition (`wait:property`, `paused:3`,
`device:printer_1:paper_near_end`, `rating:<ticket>`): the store holds at most one
open alert per key, so a condition seen again while its alert is open raises nothing.
"""

from __future__ import annotations

from typing import Any

from . import audit
from .records import SYSTEM, Actor, AlertRecord
from .store import Tx


def _publish(tx: Tx, alert: AlertRecord, state: str, at: float, day: str, actor: Actor) -> None:
    data = {"alert": alert.id, "state": state, "kind": alert.kind, "key": alert.key,
            "message": alert.message, "device": alert.device, "window": alert.window,
            "service": alert.service, "ticket": alert.ticket}
    if state == "acknowledged":
        data["acked_by"] = alert.acked_by
    tx.emit("alert", at, data)
    audit.record(tx, actor, f"alert.{state}", at, day, ticket=alert.ticket,
                 window=alert.window, alert=alert.id, device=alert.device,
                 detail={"kind": alert.kind, "key": alert.key, "message": alert.message})


def raise_alert(tx: Tx, at: float, day: str, *, key: str, kind: str, message: str,
                device: str | None = None, window: str | None = None,
                service: str | None = None, ticket: str | None = None,
                detail: dict[str, Any] | None = None,
                open_now: dict[str, AlertRecord] | None = None) -> AlertRecord | None:
    """Raise the alert of `key` unless one is open already (then None). `open_now`,
    the open alerts by key when the caller has read them, saves a read."""
    if open_now is None:
        open_now = {a.key: a for a in tx.open_alert_records()}
    if key in open_now:
        return None
    alert = AlertRecord(id=None, key=key, kind=kind, message=message, raised_at=at,
                        device=device, window=window, service=service, ticket=ticket,
                        detail=dict(detail or {}))
    tx.insert_alert(alert)
    open_now[key] = alert
    _publish(tx, alert, "raised", at, day, SYSTEM)
    return alert


def close_alert(tx: Tx, alert: AlertRecord, at: float, day: str,
                actor: Actor = SYSTEM) -> None:
    """Close an open alert: its condition ended (the system), or a person closed it."""
    if alert.closed_at is not None:
        return
    alert.closed_at = at
    alert.closed_by = actor.label
    tx.update_alert(alert)
    _publish(tx, alert, "closed", at, day, actor)


def acknowledge(tx: Tx, alert: AlertRecord, at: float, day: str, actor: Actor) -> bool:
    """A person has seen it and is acting; False when it was already acknowledged or closed."""
    if alert.closed_at is not None or alert.acked_at is not None:
        return False
    alert.acked_at = at
    alert.acked_by = actor.label
    tx.update_alert(alert)
    _publish(tx, alert, "acknowledged", at, day, actor)
    return True
