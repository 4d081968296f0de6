"""The ticket printer: ESC/POS jobs and DLE EOT status over one link."""

from __future__ import annotations

from typing import Any

from ..base import Alert, DeviceFault, DeviceUnavailable, Health, State, TicketSlip
from . import Settings
from .codec import STATUS_QUERIES, PrinterStatus, decode_status, status_query
from .layout import test_page_job, ticket_job
from .transport import Link, open_link

PAPER_NEAR_END = Alert("paper_near_end", "paper is running low: load a new roll soon")
PAPER_OUT = Alert("paper_out", "paper out: load a new roll")
COVER_OPEN = Alert("cover_open", "the cover is open: close it")
PRINTER_OFFLINE = Alert("printer_offline", "the printer reports itself offline: check its "
                                           "panel for an error")


class TicketPrinter:
    """One ESC/POS printer. On links that read back (TCP, serial, USB) the
    printer's status is asked before each job and read again after it: the
    answer after the job comes only once the printer has taken every byte."""

    def __init__(self, device_id: str, settings: Settings, timeout: float):
        self.id = device_id
        self.settings = settings
        self.timeout = timeout
        self.link: Link | None = None

    def open(self) -> None:
        self.link = open_link(self.settings.connection, self.timeout)

    def identify(self) -> dict[str, Any]:
        profile = self.settings.profile
        return {"connection": self.settings.connection.text, "link": self._link().describe(),
                "profile": profile.name, "paper_mm": profile.paper_mm,
                "encoding": self.settings.encoding}

    def poll(self) -> Health:
        if not self._link().reads_back:
            return Health(State.READY, {"status": "unknown: this link cannot read back"})
        return health(self.status())

    def close(self) -> None:
        link, self.link = self.link, None
        if link is not None:
            link.close()

    def self_test(self) -> dict[str, Any]:
        identity = {"device": self.id, "connection": self.settings.connection.text}
        self._print(test_page_job(self.settings.profile, self.settings.encoding, identity))
        return {"test_page": "printed"}

    def print_ticket(self, slip: TicketSlip) -> dict[str, Any]:
        """Print one ticket; raises DeviceFault when the printer cannot print
        it (paper out, cover open) and sends nothing in that case."""
        return self._print(ticket_job(slip, self.settings.profile, self.settings.encoding))

    def status(self) -> PrinterStatus:
        link = self._link()
        link.drain()                 # a late answer to an earlier, timed-out query
        replies = {}
        for n in STATUS_QUERIES:
            link.write(status_query(n))
            replies[n] = link.read(1)[0]
        try:
            return decode_status(replies)
        except ValueError as exc:
            raise DeviceUnavailable(f"the printer answered status with garbage ({exc}); "
                                    "is this an ESC/POS printer?") from None

    def _print(self, job: bytes) -> dict[str, Any]:
        link = self._link()
        if link.reads_back:
            before = health(self.status())
            if before.state is State.OFFLINE:
                raise DeviceFault(before.problem or "the printer cannot print")
        link.write(job)
        if not link.reads_back:
            return {"bytes": len(job)}
        return {"bytes": len(job), **health(self.status()).detail}

    def _link(self) -> Link:
        if self.link is None:
            raise DeviceUnavailable("not connected")
        return self.link


def health(status: PrinterStatus) -> Health:
    """What a printer's status means for the hall."""
    detail = {"online": status.online, "cover": "open" if status.cover_open else "closed",
              "paper": status.paper}
    if status.cover_open:
        return Health(State.OFFLINE, detail, "cover open", (COVER_OPEN,))
    if status.paper == "out":
        return Health(State.OFFLINE, detail, "paper out", (PAPER_OUT,))
    if not status.online:
        return Health(State.OFFLINE, detail, "the printer reports itself offline",
                      (PRINTER_OFFLINE,))
    if status.paper == "near_end":
        return Health(State.DEGRADED, detail, "paper near end", (PAPER_NEAR_END,))
    return Health(State.READY, detail)
