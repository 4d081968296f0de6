"""Prints a ticket on its terminal's printer, or the fallback printer, and keeps the outcome.

The ticket is already committed when printing starts: a printer fault never
fails an issue. A printer that is not ready is skipped at once; one that
stops answering costs at most its timeout. The outcome (`printed` on which
device, or `failed` and why) is written to the ticket.
"""

from __future__ import annotations

import logging

from drivers.base import TicketSlip

from .config import Config
from .devices import DeviceNotReady, Supervisor
from .queue import Queue, TicketView
from .records import SYSTEM, Actor, PrintStatus

log = logging.getLogger("kioskd.printing")


def status_url(config: Config, ticket_id: str) -> str:
    """Where a phone that scans the ticket's QR code reads the ticket's state."""
    return f"{config.server.base_url}/ui/ticket/{ticket_id}"


class Printing:
    def __init__(self, config: Config, queue: Queue, devices: Supervisor):
        self.config = config
        self.queue = queue
        self.devices = devices

    def printers(self, terminal: str) -> list[str]:
        options = self.config.devices[terminal].options
        return [p for p in (options["printer"], options.get("fallback_printer")) if p]

    async def print_issued(self, view: TicketView, terminal: str,
                           actor: Actor = SYSTEM) -> TicketView:
        """Print a just-issued ticket; the answer carries how it went."""
        device, error = await self._print(view, terminal)
        status = PrintStatus.FAILED if error else PrintStatus.PRINTED
        return await self.queue.record_print(view.ticket.id, device, status, error, actor=actor)

    async def reprint(self, view: TicketView, terminal: str,
                      actor: Actor = SYSTEM) -> TicketView:
        """Print again; DeviceNotReady (503) when no printer of the terminal can,
        or when printing fails (the failure is kept on the ticket too)."""
        printers = self.printers(terminal)
        if not any(self.devices.get(p).usable for p in printers):
            raise DeviceNotReady(self.devices.view(printers[0]))
        view = await self.print_issued(view, terminal, actor)
        if view.ticket.print_status is PrintStatus.FAILED:
            raise DeviceNotReady(self.devices.view(view.ticket.print_device or printers[0]),
                                 f"{view.ticket.number} not printed: {view.ticket.print_error}")
        return view

    async def _print(self, view: TicketView, terminal: str) -> tuple[str, str | None]:
        slip = self.slip(view)
        errors = []
        for printer in self.printers(terminal):
            try:
                await self.devices.command(printer, lambda driver: driver.print_ticket(slip))
                return printer, None
            except DeviceNotReady as exc:
                errors.append(str(exc))
        log.warning("%s: %s not printed: %s", terminal, view.ticket.number, "; ".join(errors))
        return self.printers(terminal)[0], "; ".join(errors)

    def slip(self, view: TicketView) -> TicketSlip:
        ticket = view.ticket
        service = self.config.service(ticket.service)
        assert service is not None
        return TicketSlip(
            hall=self.config.hall.name, service=service.name, number=ticket.number,
            priority=ticket.priority, waiting_ahead=view.waiting_ahead,
            est_wait_min=view.est_wait_min, issued_at=self.queue.clock_text(ticket.issued_at, with_date=True),
            windows=tuple(w.name for w in self.queue.windows_serving(ticket)
                          if not w.temporary or ticket.target_window == w.id),
            status_url=status_url(self.config, ticket.id),
            materials=service.guide.materials if self.config.hall.print_materials else ())
