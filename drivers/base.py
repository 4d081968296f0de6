"""The interface every device driver implements, and the only errors it may raise.

A driver talks to one piece of hardware and nothing else. Its methods are
plain blocking calls: the supervisor in `kioskd/devices.py` runs each of them
on the device's own worker thread under a timeout, polls, reconnects and owns
the device's state. A driver never lets a library's exception out: it
translates it at its edge into one of the `DeviceError`s below, whose message
is written for the technician reading `/devices` ("paper out", "connection
refused by 10.0.0.5:9100"), not for a developer.

A driver family is a package `drivers/<name>/` whose `__init__.py` exposes:

- `configure(options: Options) -> settings`: read every option of a
  `[devices.ID]` table up front, reporting problems through `options`; pure,
  it opens nothing (`kioskd check` calls it);
- `create(device_id: str, settings, *, timeout: float, data_dir: Path) -> Driver`;
- optionally `emulate(device_id, settings, *, data_dir: Path) -> Emulator | None`:
  the emulated device a hall file asks for with `emulate = true` (the demo hall).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class DeviceError(Exception):
    """A device could not do what was asked; the message says why, plainly."""


class DeviceUnavailable(DeviceError):
    """The device cannot be reached: not plugged in, connection refused or
    dropped, no answer. The supervisor closes it and reconnects."""


class DeviceTimeout(DeviceUnavailable):
    """The device did not answer within its timeout."""


class DeviceBusy(DeviceUnavailable):
    """Another program holds the device (the kernel's usblp, CUPS, a second daemon)."""


class DeviceFault(DeviceError):
    """The device answers but cannot do the job: paper out, cover open.
    The link stays open; the device is `offline` until it reports otherwise."""


class State(StrEnum):
    READY = "ready"
    DEGRADED = "degraded"     # works, but needs attention soon (paper near end)
    OFFLINE = "offline"       # cannot work now: unreachable, or a fault
    DISABLED = "disabled"     # not run: `enabled = false`, or given up on


@dataclass(frozen=True)
class Alert:
    """A condition a person should act on, raised while a poll reports it."""

    kind: str                 # "paper_near_end"
    message: str              # "paper is running low"


@dataclass(frozen=True)
class Health:
    """What one short poll found."""

    state: State              # READY, DEGRADED or OFFLINE (a fault on a live link)
    detail: dict[str, Any] = field(default_factory=dict)   # plain data for `/devices`
    problem: str | None = None                            # why it is not READY
    alerts: tuple[Alert, ...] = ()


class Driver(Protocol):
    """One device. Every method blocks, is called from one thread at a time,
    and raises only `DeviceError`s."""

    def open(self) -> None:
        """Connect. Raises DeviceUnavailable when the device cannot be reached."""

    def identify(self) -> dict[str, Any]:
        """What this device is (model, profile, connection): merged into `detail`."""

    def poll(self) -> Health:
        """One short status pass over an open link."""

    def close(self) -> None:
        """Release the link; never raises, safe to call twice or before open."""

    def self_test(self) -> dict[str, Any]:
        """The technician's test (a test page, a board pattern, a phrase); what it did."""


class Options(Protocol):
    """A `[devices.ID]` table being read. Each getter reports a bad value
    against the table and key and returns the default; `finish` reports every
    key nobody read."""

    def string(self, key: str, default: str | None = None, *, required: bool = False,
               allow_empty: bool = False) -> str | None: ...
    def strings(self, key: str, default: tuple[str, ...] | None = None, *,
                required: bool = False) -> tuple[str, ...] | None: ...
    def integer(self, key: str, default: int, *, low: int | None = None,
                high: int | None = None) -> int: ...
    def number(self, key: str, default: float, *, above: float | None = None) -> float: ...
    def boolean(self, key: str, default: bool) -> bool: ...
    def path(self, key: str, default: str | None = None, *,
             required: bool = False) -> str | None:
        """A device path or URL: a relative path is taken against the file's folder."""
    def keys(self) -> tuple[str, ...]:
        """The table's keys as written, for a table whose keys are data (addresses, codes)."""
    def table(self, key: str) -> Options | None:
        """A sub-table (`[devices.ID.frame]`), read with the same getters; None when absent."""
    def finish_unread(self) -> None:
        """Report every key of this (sub-)table no getter asked for."""
    def problem(self, key: str | None, message: str) -> None: ...


class Emulator(Protocol):
    """A device emulator started by the daemon for an `emulate = true` device."""

    def start(self) -> None: ...
    def close(self) -> None: ...
    def detail(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TicketSlip:
    """What a printed ticket says, in the hall's words; the printer's layout
    decides where each part goes. Times are already the hall's local time."""

    hall: str                          # 自治区政务服务中心
    service: str                       # 不动产登记
    number: str                        # A012
    priority: bool
    waiting_ahead: int | None
    est_wait_min: int | None
    issued_at: str                     # "2026-11-28 09:41"
    windows: tuple[str, ...]           # ("1号窗口", "5号窗口")
    status_url: str                    # what the QR code carries
    materials: tuple[str, ...] = ()    # printed when the hall wants the guide on paper
