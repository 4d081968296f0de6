"""Touch-query terminals: a terminal is as alive as the page running on it.

A terminal has no link of its own to supervise; its kiosk page reports every
few seconds (`POST /devices/{id}/heartbeat`). The terminal is `ready` while
those reports arrive and `offline` once none came for `offline_after_s` (and
from start-up until the first one), each change published as `device.changed`
like any device's. A technician asks a terminal's page to reload; the page
learns it from its next report's `reload_key`, which also changes when the
daemon restarts, so a terminal picks up new pages after an upgrade.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.base import State

from .config import TERMINAL_OFFLINE_AFTER_S, Config, Device

log = logging.getLogger("kioskd.terminals")

HEARTBEAT_S = 5.0          # how often a page reports; offline_after_s must allow a few misses
CHECK_S = 1.0              # how often silence is looked for


@dataclass
class Terminal:
    device: Device
    state: State
    since: float
    last_seen: float | None = None
    report: dict[str, Any] = field(default_factory=dict)   # what the page said of itself
    reloads: int = 0
    problem: str | None = "no page has reported since the daemon started"

    @property
    def offline_after_s(self) -> float:
        return self.device.options.get("offline_after_s", TERMINAL_OFFLINE_AFTER_S)


class Terminals:
    """Every terminal's liveness, from its page's reports."""

    def __init__(self, config: Config, clock: Callable[[], float],
                 changed: Callable[[str, str, State, State, str | None], Awaitable[None]]):
        self.clock = clock
        self.changed = changed             # Supervisor.changed: logs and publishes
        self.boot = secrets.token_hex(4)
        now = clock()
        self.terminals = {d.id: Terminal(d, State.OFFLINE, now)
                          for d in config.devices.values() if d.driver == "terminal"}
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self.terminals:
            self._task = asyncio.create_task(self._watch(), name="terminals")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def __contains__(self, device_id: str) -> bool:
        return device_id in self.terminals

    def reload_key(self, device_id: str) -> str:
        return f"{self.boot}-{self.terminals[device_id].reloads}"

    async def heartbeat(self, device_id: str, report: dict[str, Any]) -> dict[str, Any]:
        terminal = self.terminals[device_id]
        terminal.last_seen = self.clock()
        terminal.report = report
        if terminal.state is not State.READY:
            await self._change(terminal, State.READY, None)
        return {"device": device_id, "state": terminal.state.value,
                "reload_key": self.reload_key(device_id), "interval_s": HEARTBEAT_S}

    def ask_reload(self, device_id: str) -> None:
        terminal = self.terminals[device_id]
        terminal.reloads += 1
        log.info("%s: its page is asked to reload", device_id)

    def state(self, device_id: str) -> tuple[State, float, str | None, dict[str, Any]]:
        terminal = self.terminals[device_id]
        detail = {"last_seen": terminal.last_seen, "offline_after_s": terminal.offline_after_s,
                  "heartbeat_s": HEARTBEAT_S, "reload_key": self.reload_key(device_id),
                  "reloads_asked": terminal.reloads, "page": dict(terminal.report)}
        return terminal.state, terminal.since, terminal.problem, detail

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(CHECK_S)
            now = self.clock()
            for terminal in self.terminals.values():
                if (terminal.state is State.READY and terminal.last_seen is not None
                        and now - terminal.last_seen > terminal.offline_after_s):
                    await self._change(terminal, State.OFFLINE,
                                       f"its page has not reported for {terminal.offline_after_s:g} s")

    async def _change(self, terminal: Terminal, state: State, problem: str | None) -> None:
        before = terminal.state
        terminal.state = state
        terminal.since = self.clock()
        if problem is not None:
            terminal.problem = problem
        await self.changed(terminal.device.id, "terminal", before, state, problem)
