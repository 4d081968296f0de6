"""Builds each device's driver from devices.toml and supervises it in its own task.

The supervisor owns what a device's state is; drivers only talk to hardware
(see `drivers/base.py`). Each device gets one task and one worker thread:
open → identify → poll every `poll_interval`, every step under the device's
timeout. On a failure the task closes the driver, waits with backoff and tries
again, forever unless `retry_limit` says otherwise. Commands (print a ticket,
a self-test) run on the same worker thread, so they never cross a poll, and
are refused at once while the device is not ready: one broken device never
delays another, a call or an issue.

A state change is published as `device.changed` through the store, so device
events share the hall's one id sequence. It is logged once; a device that keeps
failing is logged again only every `STILL_FAILING_LOG_S`, and "recovered after N
attempts" when it comes back. What a device's polls report for a person to act on
(its `Health.alerts`: paper near end, paper out, cover open) is kept here
and handed to the early warnings (`on_alerts`, kioskd/alerts.py), which raise and
close the `alert`s: before the new state is published, so whoever sees the state
sees its alert already.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any, TypeVar

import drivers
from drivers.base import Alert, DeviceError, DeviceFault, Driver, Health, State

from .aio import within
from .config import Config, Device
from .store import Store
from .terminals import Terminals

T = TypeVar("T")

log = logging.getLogger("kioskd.devices")

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
STILL_FAILING_LOG_S = 300.0
STEP_MARGIN_S = 1.0          # a step may take the device's timeout plus this, then it is abandoned
USABLE = (State.READY, State.DEGRADED)


class DeviceNotReady(Exception):
    """A command for a device that cannot take it now; answered 503 with its state."""

    def __init__(self, status: DeviceStatus, message: str | None = None):
        self.status = status
        why = status.last_error or status.state.value
        super().__init__(message or f"{status.driver} device '{status.id}' is "
                                    f"{status.state.value}: {why}")


class UnknownDevice(LookupError):
    pass


@dataclass
class DeviceStatus:
    """A device as `/devices` shows it."""

    id: str
    driver: str
    state: State
    since: float
    detail: dict[str, Any] = field(default_factory=dict)
    last_error: str | None = None


class Worker:
    """One daemon thread running a device's blocking calls in order. A daemon
    thread, unlike a ThreadPoolExecutor's, never holds up the process's exit
    when a library call hangs for good."""

    def __init__(self, name: str):
        self._jobs: SimpleQueue[tuple[Future, Callable[[], Any]] | None] = SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((future, fn))
        return future

    def stop(self) -> None:
        """Run what is queued, then end; a cancelled job is skipped."""
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:         # handed to the waiting coroutine
                future.set_exception(exc)


class Supervised:
    """One device's task, worker thread, driver and state."""

    def __init__(self, device: Device, supervisor: Supervisor):
        self.device = device
        self.supervisor = supervisor
        self.family = drivers.family(device.driver)
        self.status = DeviceStatus(device.id, device.driver, State.OFFLINE, supervisor.clock())
        self.driver: Driver | None = None
        self.emulator = None
        self.alerts: dict[str, Alert] = {}    # what its last poll reported, by kind
        self.answered = False             # a poll has answered in this run: `alerts` is known
        self.silent_since: float | None = supervisor.clock()   # not answering since; None: it is
        self.attempts = 0                 # failed connection attempts in a row
        self.last_logged = 0.0
        self.wake = asyncio.Event()       # a reconnect was asked for, or the link broke
        self.attempted = asyncio.Event()  # set after each connection attempt
        self.reconnect_asked = False
        self.task: asyncio.Task | None = None
        # The technician's test, when a part of kioskd owns what the device puts out
        # (the voice's announcer: a test phrase waits its turn behind the calls).
        self.tester: Callable[[], Awaitable[dict[str, Any]]] | None = None
        self._worker = self._new_worker()

    # -- running -------------------------------------------------------------

    def start(self, data_dir) -> None:
        device = self.device
        if not device.enabled:
            self.status.state = State.DISABLED
            self.status.last_error = "enabled = false in devices.toml"
            return
        emulate = getattr(self.family, "emulate", None)
        if emulate is not None:
            self.emulator = emulate(device.id, device.settings, data_dir=data_dir)
            if self.emulator is not None:
                try:
                    self.emulator.start()
                except OSError as exc:      # e.g. a standalone emulator holds the port
                    log.error("%s: the emulated device could not start (%s); connecting to "
                              "whatever answers there", device.id, exc)
                    self.emulator.close()
                    self.emulator = None
        self.driver = self.family.create(device.id, device.settings, timeout=device.timeout,
                                         data_dir=data_dir)
        self.task = asyncio.create_task(self.run(), name=f"device {device.id}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.close_driver()
        self._worker.stop()
        if self.emulator is not None:
            self.emulator.close()

    async def run(self) -> None:
        while True:
            try:
                await self.connect_and_poll()    # returns when asked to reconnect
            except DeviceError as exc:
                await self.failed(str(exc))
            except TimeoutError:
                self._abandon_worker()
                await self.failed(f"no answer within {self.step_limit:g} s")
            except Exception as exc:             # a driver bug: it let a library's error out
                log.exception("%s: driver error", self.device.id)
                await self.failed(f"driver error: {type(exc).__name__}: {exc}")
            await self.close_driver()
            if self.reconnect_asked:
                self.attempts = 0
            elif self.device.retry_limit and self.attempts >= self.device.retry_limit:
                await self.set_state(State.DISABLED, f"gave up after {self.attempts} attempts: "
                                                     f"{self.status.last_error}")
                await self.wake.wait()
                self.attempts = 0
            elif self.attempts:
                backoff = min(BACKOFF_FIRST_S * 2 ** (self.attempts - 1), BACKOFF_MAX_S)
                try:
                    await within(self.wake.wait(), backoff)
                except TimeoutError:
                    pass
            self.wake.clear()
            self.reconnect_asked = False

    async def connect_and_poll(self) -> None:
        driver = self.driver
        await self.step(driver.open)
        identity = await self.step(driver.identify)
        self.status.detail.update(identity)
        health = await self.step(driver.poll)
        if self.attempts:
            log.info("%s: %s, recovered after %d attempt%s", self.device.id, health.state.value,
                     self.attempts, "" if self.attempts == 1 else "s")
        self.attempts = 0
        await self.apply(health)
        self.attempted.set()
        self.supervisor.connected(self.device.id)
        while True:
            try:
                await within(self.wake.wait(), self.device.poll_interval)
                return                       # reconnect asked for, or a command broke the link
            except TimeoutError:
                pass
            await self.apply(await self.step(driver.poll))

    @property
    def step_limit(self) -> float:
        return self.device.timeout + STEP_MARGIN_S

    async def step(self, fn: Callable[[], T]) -> T:
        """Run a blocking driver call on this device's worker thread, under a timeout.
        A call still queued when the time is up never runs."""
        return await within(asyncio.wrap_future(self._worker.submit(fn)), self.step_limit)

    async def close_driver(self) -> None:
        if self.driver is None:
            return
        try:
            await self.step(self.driver.close)
        except Exception:                        # close never raises; if it does, start afresh
            self._abandon_worker()

    def _new_worker(self) -> Worker:
        return Worker(f"device-{self.device.id}")

    def _abandon_worker(self) -> None:
        """Leave a thread stuck in a call behind (its transport's own timeout ends
        it) and use a fresh one, with a fresh driver, for what comes next. The old
        driver is closed from a thread of its own: closing its link is what
        unblocks the stuck call."""
        if self.driver is not None:
            threading.Thread(target=self.driver.close, daemon=True,
                             name=f"close-{self.device.id}").start()
        self._worker.stop()
        self._worker = self._new_worker()
        self.driver = self.family.create(self.device.id, self.device.settings,
                                         timeout=self.device.timeout,
                                         data_dir=self.supervisor.config.hall.data_dir)

    # -- state ---------------------------------------------------------------

    async def apply(self, health: Health) -> None:
        """Alerts first: whoever sees the new state sees its alerts already raised."""
        self.status.detail.update(health.detail)
        await self.update_alerts(health)
        await self.set_state(health.state, health.problem)

    async def failed(self, error: str) -> None:
        self.attempts += 1
        now = self.supervisor.clock()
        if self.silent_since is None:
            self.silent_since = now
        if self.status.state is not State.OFFLINE:
            await self.set_state(State.OFFLINE, error)
        else:
            self.status.last_error = error
            if self.attempts == 1 or now - self.last_logged >= STILL_FAILING_LOG_S:
                log.warning("%s: offline after %d attempt%s: %s", self.device.id, self.attempts,
                            "" if self.attempts == 1 else "s", error)
                self.last_logged = now
        self.attempted.set()

    async def set_state(self, state: State, problem: str | None) -> None:
        status = self.status
        if problem is not None:
            status.last_error = problem
        if state is status.state:
            return
        before = status.state
        status.state = state
        status.since = self.supervisor.clock()
        self.last_logged = status.since
        await self.supervisor.changed(status.id, status.driver, before, state,
                                      problem if state is not State.READY else None)

    async def update_alerts(self, health: Health) -> None:
        """Keep what this poll reports for a person to act on (the driver's alerts:
        paper near end, paper out, cover open). The early warnings hear of it when that
        changes, when the device answers for the first time in this run (what it
        reported before a restart ends now if it no longer says so), and when it
        answers again after a silence."""
        reported = {alert.kind: alert for alert in health.alerts}
        news = (not self.answered or self.silent_since is not None
                or reported.keys() != self.alerts.keys())
        self.alerts = reported
        self.answered = True
        self.silent_since = None
        if news:
            await self.supervisor.alerts_changed(self.device.id)

    # -- commands ------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self.status.state in USABLE and self.driver is not None

    async def command(self, action: Callable[[Driver], T]) -> T:
        """Run `action(driver)` now if the device can take it; DeviceNotReady
        (with the state it is left in) when it cannot or when the action fails."""
        return await self.begin(action)

    def begin(self, action: Callable[[Driver], T]) -> Awaitable[T]:
        """`command`, with the action handed to the device's worker before this
        returns (it starts at once, not a turn of the loop later); await the
        result for its outcome. DeviceNotReady at once when the device cannot
        take it."""
        if not self.usable:
            raise DeviceNotReady(self.view())
        driver = self.driver
        future = self._worker.submit(lambda: action(driver))
        return self._outcome(future)

    async def _outcome(self, future: Future[T]) -> T:
        fault = False                            # the device answered: no reconnect needed
        try:
            return await within(asyncio.wrap_future(future), self.step_limit)
        except TimeoutError:
            error = f"no answer within {self.step_limit:g} s"
            self._abandon_worker()
        except DeviceError as exc:
            error, fault = str(exc), isinstance(exc, DeviceFault)
        except Exception as exc:                 # a driver bug: it let a library's error out
            log.exception("%s: driver error", self.device.id)
            error = f"driver error: {type(exc).__name__}: {exc}"
        await self.broken(error, reconnect=not fault)   # a fault is seen mended by the next poll
        raise DeviceNotReady(self.view())        # its last_error is `error`

    async def broken(self, error: str, *, reconnect: bool = True) -> None:
        """What the device was asked to do failed: `offline` with `error`, and
        closed and opened again (with backoff) unless `reconnect` is False."""
        await self.set_state(State.OFFLINE, error)
        if reconnect:
            self.wake.set()

    async def self_test(self) -> None:
        """The driver's self-test (or the tester's); what it did is kept in `detail`."""
        if self.tester is not None and self.usable:
            self.status.detail["self_test"] = await self.tester()
        else:
            self.status.detail["self_test"] = await self.command(lambda driver: driver.self_test())

    async def reconnect(self) -> None:
        """Close and open again now; returns after that attempt."""
        if self.task is None:
            raise DeviceNotReady(self.view())
        self.attempted.clear()
        self.reconnect_asked = True
        self.wake.set()
        # open, identify and poll each take at most a step's time
        await within(self.attempted.wait(), 3 * self.step_limit + 1)

    def view(self) -> DeviceStatus:
        status = self.status
        detail = dict(status.detail)
        if self.emulator is not None:
            detail["emulator"] = self.emulator.detail()
        return DeviceStatus(status.id, status.driver, status.state, status.since, detail,
                            status.last_error)


@dataclass(frozen=True)
class DeviceNow:
    """What the device layer knows of a device in this run of the daemon."""

    enabled: bool                  # false: `enabled = false` in devices.toml, never run
    answered: bool                 # it has answered in this run: `alerts` is what it says
    silent_since: float | None     # not answering since (start-up, or its last answer)
    alerts: Mapping[str, str]      # kind → message, of what its last poll reported
    problem: str | None = None     # its last error


class Supervisor:
    """Every device of the hall, each supervised on its own."""

    def __init__(self, config: Config, store: Store, clock: Callable[[], float] = time.time):
        self.config = config
        self.store = store
        self.clock = clock
        self.devices: dict[str, Supervised] = {}
        # called with a device's id each time it is (re)connected: boards restore their content
        self.on_connected: list[Callable[[str], None]] = []
        # awaited with a device's id when what it reports changes (kioskd/alerts.py)
        self.on_alerts: list[Callable[[str], Awaitable[None]]] = []
        self.terminals = Terminals(config, clock, self.changed)

    async def start(self) -> None:
        data_dir = self.config.hall.data_dir
        for device in self.config.devices.values():
            if device.driver == "terminal":
                continue
            supervised = self.devices[device.id] = Supervised(device, self)
            supervised.start(data_dir)
        self.terminals.start()

    async def stop(self) -> None:
        await self.terminals.stop()
        await asyncio.gather(*(d.stop() for d in self.devices.values()))

    def get(self, device_id: str) -> Supervised:
        supervised = self.devices.get(device_id)
        if supervised is None:
            raise UnknownDevice(device_id)
        return supervised

    def view(self, device_id: str) -> DeviceStatus:
        device = self.config.devices.get(device_id)
        if device is None:
            raise UnknownDevice(device_id)
        if device.driver == "terminal":
            return self._terminal(device)
        return self.get(device_id).view()

    def views(self) -> list[DeviceStatus]:
        return [self.view(device_id) for device_id in self.config.devices]

    def states(self) -> Iterator[tuple[str, str, State]]:
        """Each started device's id, driver and state, in devices.toml's order: what
        a view holds, without its detail (for metrics and systemd's status line)."""
        for device_id, device in self.config.devices.items():
            if device.driver == "terminal":
                if device_id in self.terminals:
                    yield device_id, device.driver, self.terminals.state(device_id)[0]
            elif (supervised := self.devices.get(device_id)) is not None:
                yield device_id, device.driver, supervised.status.state

    def now(self, device_id: str) -> DeviceNow | None:
        """What this run knows of a device (a terminal: whether its page reports);
        None for an unknown one, or one not started yet."""
        device = self.config.devices.get(device_id)
        if device is None:
            return None
        if device.driver == "terminal":
            if device_id not in self.terminals:
                return None
            state, since, problem, detail = self.terminals.state(device_id)
            return DeviceNow(True, detail["last_seen"] is not None,
                             since if state is State.OFFLINE else None, {}, problem)
        supervised = self.devices.get(device_id)
        if supervised is None:
            return None
        return DeviceNow(device.enabled, supervised.answered, supervised.silent_since,
                         {kind: alert.message for kind, alert in supervised.alerts.items()},
                         supervised.status.last_error)

    async def alerts_changed(self, device_id: str) -> None:
        """What a device reports changed: the listeners (the early warnings) act on it
        before the device goes on; their failure is logged, never the device's."""
        for listener in list(self.on_alerts):
            try:
                await listener(device_id)
            except Exception as exc:
                log.error("%s: its alerts could not be recorded: %s", device_id, exc)

    async def command(self, device_id: str, action: Callable[[Driver], T]) -> T:
        return await self.get(device_id).command(action)

    def connected(self, device_id: str) -> None:
        for listener in self.on_connected:
            listener(device_id)

    async def changed(self, device_id: str, driver: str, before: State, state: State,
                      problem: str | None) -> None:
        """A device's change of state: logged once, published as `device.changed`."""
        level = logging.INFO if state in USABLE else logging.WARNING
        log.log(level, "%s: %s -> %s%s", device_id, before.value, state.value,
                f": {problem}" if problem else "")
        await self.emit("device.changed", {"device": device_id, "driver": driver,
                                           "state": state.value, "problem": problem})

    async def emit(self, type: str, data: dict[str, Any]) -> None:
        try:
            await self.store.transact(lambda tx: tx.emit(type, self.clock(), data))
        except Exception as exc:            # the store has its own alarms; a device must go on
            log.error("%s: could not record %s: %s", data.get("device"), type, exc)

    def _terminal(self, device: Device) -> DeviceStatus:
        """A touch-query terminal: as alive as its page (see terminals.py); what it
        prints on is in its detail."""
        state, since, problem, detail = self.terminals.state(device.id)
        for key in ("printer", "fallback_printer"):
            if printer := device.options.get(key):
                detail[key] = printer
                detail[f"{key}_state"] = self.get(printer).status.state.value
        return DeviceStatus(device.id, device.driver, state, since, detail, problem)
