"""Early warnings (预警): raised once when a condition starts, closed by themselves when
it ends, acknowledged by a person in between.

Each alert lives in the store's `alerts` table; every change of one is an `alert`
event (`state`: raised, acknowledged, closed) written in the same transaction, which
`Queue.run` also writes to the audit log (so every change here runs inside
`Queue.run`). `key` names the condition; the store holds at most one open alert per
key, so a condition seen again while its alert is open raises nothing, and one that
ended and comes back raises a new alert (a new id).

The conditions `Watch` looks for, each with its key and kind:

- `wait:<service>` (kind `wait`): waiting tickets of the service issued longer ago
  than its `wait_min`;
- `paused:<window>` (`paused`): a window paused longer than `[alerts] pause_min`;
- `load:<service>` (`load`): more waiting tickets per open window serving the
  service than its `waiting_per_window` (tickets waiting and no window open counts
  as more), with the closed window to open (a temporary one first);
- `serve:<window>:<ticket>` (`serve`): a ticket called or served at a window for
  longer than its service's `serve_min`, counted from its call;
- `device:<id>:<kind>`: each alert a device's poll reports (a printer's
  `paper_near_end`, `paper_out`, `cover_open`, `printer_offline`), and
  `device:<id>:offline` for a device or terminal that has not answered for
  `[alerts] device_offline_s` (not one with `enabled = false`).

A threshold of 0 turns its condition off. Alerts of other kinds (`rating:<ticket>`,
kind `bad_rating`, raised by the ratings) have no condition to end them: the watch
leaves them alone, and acknowledging one closes it (`acknowledge_alert`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .aio import within
from .config import Config
from .queue import Conflict, NotFound
from .records import SYSTEM, Actor, AlertRecord, Event, WindowState
from .store import StoreUnavailable, Tx

if TYPE_CHECKING:
    from .devices import DeviceNow, Supervisor
    from .events import EventBus
    from .queue import Queue

log = logging.getLogger("kioskd.alerts")

# The kinds of key the watch owns: an open alert of one of these whose condition is
# no longer seen is closed. Any other key (rating:...) is left to whoever raised it.
WATCHED = ("wait", "paused", "load", "serve", "device")
# What makes the watch look again soon, besides its own `check_every_s`.
WAKING = ("window.changed", "device.changed")
AFTER_CHECK_S = 1.0          # a burst of events costs one check, not one each

# Device alert kinds in the hall's words; any other kind shows the driver's message.
DEVICE_WORDS = {"paper_near_end": "打印纸将尽，请尽快换纸", "paper_out": "打印机缺纸",
                "cover_open": "打印机盖打开", "printer_offline": "打印机报告脱机，请查看面板"}


# -- one alert's life ------------------------------------------------------------------

def _publish(tx: Tx, alert: AlertRecord, state: str, at: float) -> None:
    data = {"alert": alert.id, "state": state, "kind": alert.kind, "key": alert.key,
            "message": alert.message, "device": alert.device, "window": alert.window,
            "service": alert.service, "ticket": alert.ticket}
    if state == "raised":
        data["detail"] = alert.detail
    if state == "acknowledged":
        data["acked_by"] = alert.acked_by
    if state == "closed":
        data["closed_by"] = alert.closed_by
    tx.emit("alert", at, data)


def raise_alert(tx: Tx, at: float, *, key: str, kind: str, message: str,
                device: str | None = None, window: str | None = None,
                service: str | None = None, ticket: str | None = None,
                detail: dict[str, Any] | None = None,
                open_now: dict[str, AlertRecord] | None = None) -> AlertRecord | None:
    """Raise the alert of `key` unless one is open already (then None). `open_now`,
    the open alerts by key when the caller has read them, saves a read. Run it inside
    `Queue.run`: its event is audited there."""
    if open_now is None:
        open_now = {a.key: a for a in tx.open_alert_records()}
    if key in open_now:
        return None
    alert = AlertRecord(id=None, key=key, kind=kind, message=message, raised_at=at,
                        device=device, window=window, service=service, ticket=ticket,
                        detail=dict(detail or {}))
    tx.insert_alert(alert)
    open_now[key] = alert
    _publish(tx, alert, "raised", at)
    return alert


def close_alert(tx: Tx, alert: AlertRecord, at: float, actor: Actor = SYSTEM) -> None:
    """Close an open alert: its condition ended (the system), or a person closed it."""
    if alert.closed_at is not None:
        return
    alert.closed_at = at
    alert.closed_by = actor.label
    tx.update_alert(alert)
    _publish(tx, alert, "closed", at)


def acknowledge(tx: Tx, alert: AlertRecord, at: float, actor: Actor) -> bool:
    """A person has seen it and is acting; False when it was already acknowledged or closed."""
    if alert.closed_at is not None or alert.acked_at is not None:
        return False
    alert.acked_at = at
    alert.acked_by = actor.label
    tx.update_alert(alert)
    _publish(tx, alert, "acknowledged", at)
    return True


def watched(key: str) -> bool:
    """Whether the watch raises and closes the alerts of `key` (not `rating:...`)."""
    return key.partition(":")[0] in WATCHED


def acknowledge_alert(tx: Tx, at: float, alert_id: int, actor: Actor,
                      clock_text: Callable[[float], str]) -> AlertRecord:
    """The acknowledgement a person gives: recorded with who and when. An alert with no
    condition to end it (a bad rating) is closed by it as well: it has been dealt with.
    NotFound for an unknown id; Conflict when it is closed or acknowledged already."""
    alert = tx.alert(alert_id)
    if alert is None:
        raise NotFound(f"no alert {alert_id}")
    if alert.closed_at is not None:
        raise Conflict(f"alert {alert_id} is already closed (by {alert.closed_by} at "
                       f"{clock_text(alert.closed_at)}); nothing to acknowledge")
    if alert.acked_at is not None:
        raise Conflict(f"alert {alert_id} was already acknowledged by {alert.acked_by} at "
                       f"{clock_text(alert.acked_at)}")
    acknowledge(tx, alert, at, actor)
    if not watched(alert.key):
        close_alert(tx, alert, at, actor)
    return alert


# -- the conditions --------------------------------------------------------------------

@dataclass(frozen=True)
class Condition:
    """A condition seen now, as the alert it raises."""

    key: str
    kind: str
    message: str
    device: str | None = None
    window: str | None = None
    service: str | None = None
    ticket: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def _n(value: float) -> str:
    """A threshold as a person writes it: 30, 7.5."""
    return f"{value:g}"


def _average(value: float) -> str:
    """An average to one decimal: 2.3, 14."""
    return f"{round(value, 1):g}"


def _duration(seconds: float) -> str:
    return f"{_n(seconds)} 秒" if seconds < 120 else f"{_average(seconds / 60)} 分钟"


class Conditions:
    """What is wrong in the hall now, read from one transaction: the waiting tickets
    (the waiting index), the windows, the tickets at windows, and what the device
    layer knows of each device."""

    def __init__(self, config: Config, clock_text: Callable[[float], str]):
        self.config = config
        self.clock_text = clock_text
        self.services = {s.id: s for s in config.services}
        self.windows = {w.id: w for w in config.windows}
        self.serving = {s.id: [w for w in config.windows if s.id in w.services]
                        for s in config.services}

    def hall(self, tx: Tx, now: float) -> list[Condition]:
        records = {r.id: r for r in tx.windows()}
        waiting = tx.waiting_since()
        return [*self.long_waits(waiting, now), *self.paused(records, now),
                *self.loads(waiting, records), *self.long_services(tx.tickets_at_windows(), now)]

    def long_waits(self, waiting: Iterable[tuple[str, str | None, float, str]], now: float
                   ) -> Iterable[Condition]:
        """`wait:<service>`: tickets waiting longer than the service's `wait_min`."""
        late: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for service_id, _target, issued_at, number in waiting:
            service = self.services.get(service_id)
            if service is None or not service.thresholds.wait_min:
                continue
            if now - issued_at > service.thresholds.wait_min * 60:
                late[service_id].append((issued_at, number))
        for service in self.config.services:
            if not (tickets := late.get(service.id)):
                continue
            issued_at, number = min(tickets)
            minutes = int((now - issued_at) // 60)
            limit = service.thresholds.wait_min
            yield Condition(
                key=f"wait:{service.id}", kind="wait", service=service.id,
                message=f"{service.name}：{len(tickets)} 人等候已超过 {_n(limit)} 分钟，"
                        f"最长 {number} 已等 {minutes} 分钟",
                detail={"count": len(tickets), "longest": number, "longest_min": minutes,
                        "wait_min": limit})

    def paused(self, records: dict, now: float) -> Iterable[Condition]:
        """`paused:<window>`: a window paused longer than `[alerts] pause_min`."""
        limit = self.config.alerts.pause_min
        if not limit:
            return
        for window in self.config.windows:
            record = records.get(window.id)
            if record is None or record.state is not WindowState.PAUSED:
                continue
            if now - record.since > limit * 60:
                minutes = int((now - record.since) // 60)
                yield Condition(
                    key=f"paused:{window.id}", kind="paused", window=window.id,
                    message=f"{window.name}：暂停已超过 {_n(limit)} 分钟"
                            f"（{self.clock_text(record.since)} 起，已 {minutes} 分钟）",
                    detail={"since": record.since, "minutes": minutes, "pause_min": limit})

    def loads(self, waiting: Iterable[tuple[str, str | None, float, str]], records: dict
              ) -> Iterable[Condition]:
        """`load:<service>`: waiting tickets per open window serving the service above
        its `waiting_per_window` (or tickets waiting and none of them open), and the
        closed window to open: a temporary one first, else any, else none."""
        counts: dict[str, int] = defaultdict(int)
        for service_id, *_rest in waiting:
            counts[service_id] += 1
        for service in self.config.services:
            limit = service.thresholds.waiting_per_window
            count = counts.get(service.id, 0)
            if not limit or not count:
                continue
            serving = self.serving[service.id]
            states = {w.id: records[w.id].state for w in serving if w.id in records}
            open_now = sum(1 for state in states.values() if state is WindowState.OPEN)
            if open_now and count / open_now <= limit:
                continue
            closed = [w for w in serving if states.get(w.id) is WindowState.CLOSED]
            suggest = next((w for w in closed if w.temporary), closed[0] if closed else None)
            if open_now:
                head = f"{service.name}：每个开放窗口平均 {_average(count / open_now)} 人等候"
            else:
                head = f"{service.name}：{count} 人等候，没有开放的窗口"
            if suggest is not None:
                tail = f"，建议开放 {suggest.name}" + ("（临时）" if suggest.temporary else "")
            else:
                tail = "，没有可以开放的窗口"
            yield Condition(
                key=f"load:{service.id}", kind="load", service=service.id, message=head + tail,
                detail={"waiting": count, "open_windows": open_now,
                        "per_window": round(count / open_now, 1) if open_now else None,
                        "waiting_per_window": limit,
                        "suggest_window": suggest.id if suggest else None,
                        "suggest_window_name": suggest.name if suggest else None,
                        "suggest_temporary": bool(suggest and suggest.temporary)})

    def long_services(self, at_windows: Iterable, now: float) -> Iterable[Condition]:
        """`serve:<window>:<ticket>`: a ticket at a window longer than its service's
        `serve_min`, counted from its call."""
        for ticket in at_windows:
            service = self.services.get(ticket.service)
            if service is None or not service.thresholds.serve_min or ticket.called_at is None:
                continue
            limit = service.thresholds.serve_min
            if now - ticket.called_at <= limit * 60:
                continue
            window = self.windows.get(ticket.window or "")
            where = window.name if window else f"{ticket.window}号窗口"
            minutes = int((now - ticket.called_at) // 60)
            yield Condition(
                key=f"serve:{ticket.window}:{ticket.id}", kind="serve",
                window=ticket.window, service=service.id, ticket=ticket.id,
                message=f"{where}：{ticket.number}（{service.name}）已办理 {minutes} 分钟，"
                        f"超过 {_n(limit)} 分钟",
                detail={"number": ticket.number, "minutes": minutes, "serve_min": limit,
                        "called_at": ticket.called_at, "status": ticket.status.value})

    def devices(self, known: Callable[[str], DeviceNow | None], now: float
                ) -> tuple[list[Condition], set[str]]:
        """`device:<id>:<kind>` for what each device reports, and `device:<id>:offline`;
        with the devices whose open alerts stay as they are because they have not
        answered in this run (what they reported before a restart still stands)."""
        found: list[Condition] = []
        unheard: set[str] = set()
        limit = self.config.alerts.device_offline_s
        for device_id in self.config.devices:
            device = known(device_id)
            if device is None:                # not started yet: nothing known, nothing ends
                unheard.add(device_id)
                continue
            if not device.enabled:            # enabled = false: nothing to watch
                continue
            if not device.answered:
                unheard.add(device_id)
            for kind, said in device.alerts.items():
                found.append(Condition(
                    key=f"device:{device_id}:{kind}", kind=kind, device=device_id,
                    message=f"{device_id}：{DEVICE_WORDS.get(kind, said)}",
                    detail={"reported": said}))
            silent = device.silent_since
            if limit and silent is not None and now - silent > limit:
                why = f"（{device.problem}）" if device.problem else ""
                found.append(Condition(
                    key=f"device:{device_id}:offline", kind="offline", device=device_id,
                    message=f"{device_id}：离线已超过 {_duration(limit)}{why}",
                    detail={"since": silent, "problem": device.problem,
                            "device_offline_s": limit}))
        return found, unheard


@dataclass
class Changes:
    """What one check did."""

    raised: list[AlertRecord] = field(default_factory=list)
    closed: list[AlertRecord] = field(default_factory=list)


def reconcile(tx: Tx, at: float, seen: Iterable[Condition],
              unheard: Collection[str] = (), own: Collection[str] | None = None) -> Changes:
    """Make the open alerts match the conditions `seen`: raise each new one once, close
    (as the system) each watched alert whose condition is no longer seen, except those
    of the devices in `unheard`, and of devices not in `own` (None: every device is
    this daemon's): another daemon of the hall watches its own. Alerts the watch does
    not own are left alone."""
    open_now = {a.key: a for a in tx.open_alert_records()}
    wanted = {c.key: c for c in seen}
    changes = Changes()
    for alert in list(open_now.values()):
        if alert.key in wanted or not watched(alert.key):
            continue
        if alert.device is not None and (
                alert.device in unheard or (own is not None and alert.device not in own)):
            continue
        close_alert(tx, alert, at)
        del open_now[alert.key]
        changes.closed.append(alert)
    for c in wanted.values():
        raised = raise_alert(tx, at, key=c.key, kind=c.kind, message=c.message,
                             device=c.device, window=c.window, service=c.service,
                             ticket=c.ticket, detail=c.detail, open_now=open_now)
        if raised is not None:
            changes.raised.append(raised)
    return changes


# -- the watch -------------------------------------------------------------------------

class Watch:
    """Looks at the hall every `[alerts] check_every_s`, soon after the events that may
    start or end a condition (a window's change, a ticket's, a device's state), and at
    once when a device's alerts change; each look is one transaction (`check`)."""

    def __init__(self, config: Config, queue: Queue, bus: EventBus, devices: Supervisor):
        self.config = config
        self.queue = queue
        self.bus = bus
        self.devices = devices
        self.conditions = Conditions(config, queue.clock_text)
        self._wanted = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.last_check_s = 0.0          # how long the last check's transaction took

    async def start(self) -> None:
        self.bus.listen(self._heard)
        self.devices.on_alerts.append(self._device_reported)
        self._task = asyncio.create_task(self._run(), name="alerts")
        self.soon()

    async def stop(self) -> None:
        self.bus.unlisten(self._heard)
        if self._device_reported in self.devices.on_alerts:
            self.devices.on_alerts.remove(self._device_reported)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def soon(self) -> None:
        """Look again shortly (a burst of calls for it makes one look)."""
        self._wanted.set()

    async def check(self) -> Changes:
        """Look at the hall now and bring the open alerts in line, in one transaction."""
        return await self.queue.run(self._check)

    def _check(self, tx: Tx, now: float) -> Changes:
        began = time.perf_counter()
        seen = self.conditions.hall(tx, now)
        found, unheard = self.conditions.devices(self.devices.now, now)
        changes = reconcile(tx, now, [*seen, *found], unheard, own=self.config.devices)
        self.last_check_s = time.perf_counter() - began
        return changes

    def _heard(self, events: list[Event]) -> None:
        if any(e.type in WAKING or e.type.startswith("ticket.") for e in events):
            self.soon()

    async def _device_reported(self, device_id: str) -> None:
        """A device's alerts changed (or it answered for the first time in this run):
        checked now, so its alert is out before its new state."""
        await self.check()

    async def _run(self) -> None:
        every = self.config.alerts.check_every_s
        while True:
            try:
                await within(self._wanted.wait(), every)
            except TimeoutError:
                pass
            self._wanted.clear()
            try:
                await self.check()
            except StoreUnavailable as exc:    # said by the store once; look again later
                log.debug("alerts: no check while the store is away: %s", exc)
            except Exception:                  # a bug: look again later
                log.exception("alerts: the check failed; trying again in %g s", every)
            await asyncio.sleep(min(AFTER_CHECK_S, every))
