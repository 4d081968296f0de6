"""The JSON shapes of the HTTP API (what /docs shows a front-desk developer)."""

from __future__ import annotations

from typing import Literal

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from ..config import Config
from ..devices import DeviceStatus
from ..queue import Queue, ServiceLoad, TicketView, WindowView
from ..records import Event, Ticket

TicketStatus = Literal["waiting", "called", "serving", "done", "no_show", "cancelled"]


class StrictBody(BaseModel):
    """A request body: a field we do not know is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class IssueRequest(StrictBody):
    service: str = Field(description="service id from GET /services", examples=["property"])
    priority: StrictBool = Field(False, description="elderly, disabled, pregnant: served first")
    terminal: str | None = Field(None, description="the terminal device issuing it; "
                                 "the ticket prints on that terminal's printer")
    print: StrictBool = Field(True, description="print the ticket (when a terminal is named)")


class TransferRequest(StrictBody):
    service: str | None = Field(None, description="queue it for this service")
    window: str | None = Field(None, description="queue it for this window only")


class ReprintRequest(StrictBody):
    terminal: str | None = Field(None, description="print here instead of where it was issued")


class PrintInfo(BaseModel):
    device: str | None = Field(description="printer device id")
    status: Literal["printed", "failed", "none"]
    error: str | None = None


class Answer(BaseModel):
    """A response body built from our own records: serialised once, as it stands.
    (Returned as a Response, FastAPI does not validate it a second time; the route's
    `response_model` still documents it.)"""

    def answer(self, status_code: int = 200) -> Response:
        return Response(self.model_dump_json(), status_code=status_code,
                        media_type="application/json")


class TicketOut(Answer):
    id: str = Field(description="unguessable; what a QR code on the printed ticket carries")
    number: str = Field(examples=["A012"])
    service: str
    service_name: str
    status: TicketStatus
    priority: bool
    window: str | None = Field(description="the window it was called to")
    window_name: str | None = None
    target_window: str | None = Field(None, description="transferred to this window only")
    day: str = Field(description="the hall's local date the number belongs to")
    issued_at: str
    called_at: str | None
    started_at: str | None = None
    finished_at: str | None
    recalls: int = 0
    transfers: int = 0
    waiting_ahead: int | None = Field(
        description="waiting tickets that will be called before this one; null once called")
    est_wait_min: int | None = Field(description="estimated minutes until called")
    print: PrintInfo
    appointment: str | None = Field(None, description="the appointment it was issued for "
                                    "at check-in (GET /appointments/{id})")

    @classmethod
    def of(cls, view: TicketView, queue: Queue) -> TicketOut:
        t: Ticket = view.ticket
        window = queue.config.window(t.window) if t.window else None
        return cls(
            id=t.id, number=t.number, service=t.service,
            service_name=queue.config.service_name(t.service),
            status=t.status.value, priority=t.priority, window=t.window,
            window_name=window.name if window else None, target_window=t.target_window,
            day=t.day, issued_at=queue.iso(t.issued_at), called_at=queue.iso(t.called_at),
            started_at=queue.iso(t.started_at), finished_at=queue.iso(t.finished_at),
            recalls=t.recalls, transfers=t.transfers, waiting_ahead=view.waiting_ahead,
            est_wait_min=view.est_wait_min,
            print=PrintInfo(device=t.print_device, status=t.print_status.value,
                            error=t.print_error),
            appointment=t.appointment)


class CurrentTicket(BaseModel):
    id: str
    number: str
    service: str
    service_name: str
    status: TicketStatus
    priority: bool
    issued_at: str
    called_at: str | None
    started_at: str | None
    recalls: int


class WindowOut(Answer):
    id: str
    name: str
    state: Literal["open", "paused", "closed"]
    since: str
    services: list[str] = Field(description="in the window's order of preference")
    temporary: bool
    board: str | None
    current: CurrentTicket | None
    instance: str | None = Field(None, description="in a hall of several daemons, the one "
                                 "managing the window (its clerk's console acts there)")

    @classmethod
    def of(cls, view: WindowView, queue: Queue) -> WindowOut:
        c = view.current
        current = None
        if c is not None:
            current = CurrentTicket(id=c.id, number=c.number, service=c.service,
                                    service_name=queue.config.service_name(c.service),
                                    status=c.status.value, priority=c.priority,
                                    issued_at=queue.iso(c.issued_at),
                                    called_at=queue.iso(c.called_at),
                                    started_at=queue.iso(c.started_at), recalls=c.recalls)
        return cls(id=view.window.id, name=view.window.name, state=view.record.state.value,
                   since=queue.iso(view.record.since), services=list(view.window.services),
                   temporary=view.window.temporary, board=view.window.board, current=current,
                   instance=view.window.instance)


class GuideOut(BaseModel):
    materials: list[str]
    time_limit: str
    fee: str
    basis: str
    notes: str
    where: str = Field(description="where in the hall to go; \"\" = see `windows`")


class ServingWindow(BaseModel):
    id: str
    name: str
    state: Literal["open", "paused", "closed"]


class ServiceOut(BaseModel):
    id: str
    name: str
    name_en: str | None = Field(description="the English name, when the hall gives one")
    category: str = Field(description="its category's id (GET /hall); `other` when in none")
    prefix: str
    code: str = Field(description="the standard item code")
    guide: GuideOut
    waiting: int
    open_windows: int = Field(description="windows open now that serve it")
    est_wait_min: int | None = Field(description="estimated wait for a ticket taken now")
    windows: list[ServingWindow] = Field(description="the windows serving it, and their state")

    @classmethod
    def of(cls, config: Config, load: ServiceLoad, windows: list[WindowView]) -> ServiceOut:
        s = config.service(load.service)
        g = s.guide
        category = next((c.id for c in config.categories if s.id in c.services), OTHER)
        return cls(id=s.id, name=s.name, name_en=s.name_en or None, category=category,
                   prefix=s.prefix, code=s.code,
                   guide=GuideOut(materials=list(g.materials), time_limit=g.time_limit,
                                  fee=g.fee, basis=g.basis, notes=g.notes, where=g.where),
                   waiting=load.waiting, open_windows=load.open_windows,
                   est_wait_min=load.est_wait_min,
                   windows=[ServingWindow(id=v.window.id, name=v.window.name,
                                          state=v.record.state.value)
                            for v in windows if s.id in v.window.services])


OTHER = "other"       # the category of services the hall put in none


class CategoryOut(BaseModel):
    id: str
    name: str
    name_en: str | None
    services: list[str] = Field(description="service ids, in the kiosk's order")


class HallOut(BaseModel):
    name: str
    timezone: str
    day: str = Field(description="the hall's local date now")
    now: str = Field(description="the daemon's clock, for pages on a PC whose clock is off")
    public_url: str = Field(description="how a phone reaches the daemon")
    categories: list[CategoryOut] = Field(description="the kiosk's groups of services, in "
                                          "order; services in none come last, under `other`")

    @classmethod
    def of(cls, config: Config, day: str, now: str) -> HallOut:
        categories = [CategoryOut(id=c.id, name=c.name, name_en=c.name_en or None,
                                  services=list(c.services)) for c in config.categories]
        placed = {s for c in config.categories for s in c.services}
        rest = [s.id for s in config.services if s.id not in placed]
        if rest:
            categories.append(CategoryOut(id=OTHER, name="其他服务", name_en="Other services",
                                          services=rest))
        return cls(name=config.hall.name, timezone=config.hall.timezone, day=day, now=now,
                   public_url=config.server.base_url, categories=categories)


class CallOut(BaseModel):
    event_id: int
    ticket: str
    number: str
    service: str
    service_name: str
    window: str
    window_name: str
    at: str
    recalled: bool = Field(description="the latest call of this ticket was a recall")


class WaitingTicket(BaseModel):
    id: str
    number: str
    service: str
    service_name: str
    priority: bool
    issued_at: str
    target_window: str | None


class WindowWaitingOut(BaseModel):
    window: str
    count: int = Field(description="every ticket this window could call now")
    tickets: list[WaitingTicket] = Field(description="the first of them, in call order")


class HeartbeatIn(StrictBody):
    page: str | None = Field(None, max_length=40, description="which page reports: kiosk")
    screen: str | None = Field(None, max_length=20, description="its size, e.g. 1080x1920")
    lang: str | None = Field(None, max_length=10)
    elder: StrictBool | None = Field(None, description="elder mode is on")


class HeartbeatOut(BaseModel):
    device: str
    state: Literal["ready", "degraded", "offline", "disabled"]
    reload_key: str = Field(description="reload the page when this changes from the "
                            "first value seen (a technician asked, or the daemon restarted)")
    interval_s: float = Field(description="report again after this many seconds")


class ServiceLine(BaseModel):
    id: str
    name: str
    waiting: int
    open_windows: int
    est_wait_min: int | None
    minutes_per_ticket: float


class QueueOut(BaseModel):
    day: str
    waiting: int = Field(description="all waiting tickets")
    services: list[ServiceLine]
    windows: list[WindowOut]


class EventOut(BaseModel):
    id: int
    type: str
    at: str
    data: dict

    @classmethod
    def of(cls, event: Event, queue: Queue) -> EventOut:
        return cls(id=event.id, type=event.type, at=queue.iso(event.at), data=event.data)


class DeviceOut(Answer):
    id: str
    driver: str
    state: Literal["ready", "degraded", "offline", "disabled"]
    detail: dict = Field(description="what the driver knows: paper, link, profile, emulator ...")
    last_error: str | None = Field(description="the last problem seen, kept after recovery")
    since: str = Field(description="when the device entered its state")

    @classmethod
    def of(cls, status: DeviceStatus, queue: Queue) -> DeviceOut:
        return cls(id=status.id, driver=status.driver, state=status.state.value,
                   detail=status.detail, last_error=status.last_error, since=queue.iso(status.since))


class Problem(BaseModel):
    detail: str


class DeviceProblem(Problem):
    device: DeviceOut = Field(description="the device that could not take the command")
