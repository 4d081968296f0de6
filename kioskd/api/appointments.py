"""Routes for appointments: the booking system registers, lists and cancels; a kiosk checks in."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator, Field, StrictBool
from pydantic_core import PydanticCustomError

from ..appointments import AppointmentView, Appointments, Booking, CheckIn, CODE_RULE
from ..privacy import mask_name, mask_phone, scrub_text
from ..queue import Queue
from .deps import GuardedRoute, actor, check_terminal, read_day, roles
from .models import Answer, Problem, StrictBody, TicketOut

router = APIRouter(tags=["appointments"], route_class=GuardedRoute)

ERRORS = {401: {"model": Problem}, 403: {"model": Problem}, 404: {"model": Problem},
          409: {"model": Problem}, 422: {"model": Problem}, 503: {"model": Problem}}


# -- personal data, masked as the body is read ------------------------------------------

def _masking(mask):
    """A before-validator: a name or phone is masked the moment the body is read,
    before any check, store, log, event or error message can see it. A number sent
    for a phone is taken as its digits."""
    def masked(value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return (mask(value) or None) if isinstance(value, str) else value
    return BeforeValidator(masked)


def _scrubbing(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        # no booking system's id holds one, and PostgreSQL text cannot keep it
        raise PydanticCustomError("nul_character", "holds a NUL character, which is not text")
    return scrub_text(value) if isinstance(value, str) else value


MaskedName = Annotated[str | None, _masking(mask_name)]
MaskedPhone = Annotated[str | None, _masking(mask_phone)]
ScrubbedText = Annotated[str | None, BeforeValidator(_scrubbing)]


# -- shapes ------------------------------------------------------------------------------

class AppointmentIn(StrictBody):
    service: str = Field(max_length=64, description="service id from GET /services",
                         examples=["property"])
    slot: str = Field(max_length=64, description="the slot's start, ISO 8601; without an "
                      "offset, the hall's local time", examples=["2026-11-30T09:30:00+08:00"])
    code: str = Field(max_length=64, description=f"the check-in code the citizen types or "
                      f"scans: {CODE_RULE}; compared without regard to case, kept in capitals",
                      examples=["K7Q2-9041"])
    name: MaskedName = Field(None, max_length=64, description="masked before it is kept "
                             "or checked: 张三 → 张*", examples=["张*"])
    phone: MaskedPhone = Field(None, max_length=32, description="masked before it is kept "
                               "or checked: 138****5678", examples=["138****5678"])
    reference: ScrubbedText = Field(None, max_length=128, description="the booking "
                                    "system's own id; phone and ID numbers in it are masked",
                                    examples=["YY-20261130-0042"])


class CheckInIn(StrictBody):
    code: str = Field(max_length=256, description="as typed or scanned (longer than 32 "
                      "characters: refused as `bad_code`)", examples=["K7Q2-9041"])
    terminal: str | None = Field(None, description="the terminal checking in; the ticket "
                                 "prints on its printer")
    print: StrictBool = Field(True, description="print the ticket (when a terminal is named)")


class AppointmentOut(Answer):
    id: str = Field(description="unguessable")
    day: str = Field(description="the hall's local date of the slot")
    code: str
    service: str
    service_name: str
    slot: str = Field(description="the slot's start, in the hall's time")
    status: Literal["booked", "checked_in", "cancelled"]
    check_in_from: str = Field(description="the earliest check-in for a priority ticket")
    check_in_until: str = Field(description="the latest; later, a normal ticket")
    name: str | None = Field(description="masked", examples=["张*"])
    phone: str | None = Field(description="masked", examples=["138****5678"])
    reference: str | None
    ticket: str | None = Field(description="the ticket issued at check-in")
    number: str | None = Field(description="its number", examples=["A012"])
    created_at: str
    checked_in_at: str | None
    cancelled_at: str | None

    @classmethod
    def of(cls, view: AppointmentView, queue: Queue) -> AppointmentOut:
        a = view.appointment
        return cls(id=a.id, day=a.day, code=a.code, service=a.service,
                   service_name=queue.config.service_name(a.service), slot=queue.iso(a.slot_at),
                   status=a.status.value, check_in_from=queue.iso(view.check_in_from),
                   check_in_until=queue.iso(view.check_in_until), name=a.name, phone=a.phone,
                   reference=a.reference, ticket=a.ticket, number=view.number,
                   created_at=queue.iso(a.created_at), checked_in_at=queue.iso(a.checked_in_at),
                   cancelled_at=queue.iso(a.cancelled_at))


class CheckInOut(Answer):
    appointment: AppointmentOut
    ticket: TicketOut
    on_time: bool = Field(description="false: came after the check-in window; a normal ticket")
    message: str = Field(examples=["签到成功。您的预约时间是 09:30，将优先为您办理。"])
    message_en: str


class Refusal(Problem):
    reason: Literal["unknown_code", "bad_code", "other_day", "cancelled",
                    "already_checked_in", "too_early"]
    message: str = Field(examples=["请于 09:15 后签到（预约时间 09:30）。"])
    message_en: str


# 422 is also a malformed body or an unknown terminal: a plain Problem, no `reason`
CHECK_IN_ERRORS = {**ERRORS, 404: {"model": Refusal}, 409: {"model": Refusal},
                   422: {"model": Refusal | Problem}}


def _appointments(request: Request) -> Appointments:
    return request.app.state.appointments


# -- routes ------------------------------------------------------------------------------

@router.post("/appointments/check-in", status_code=status.HTTP_201_CREATED,
             response_model=CheckInOut, responses=CHECK_IN_ERRORS,
             dependencies=[roles("kiosk", "supervisor")], summary="Check in with a code")
async def check_in(body: CheckInIn, request: Request):
    """Today's appointment of the code. Inside its check-in window: a priority ticket,
    in line at the slot, called ahead of walk-ins (`on_time` true). After it: a
    normal ticket, in line from now (`on_time` false). `message`/`message_en` say
    which to the citizen. With `terminal`, the ticket prints as POST /tickets does.

    Refused with nothing changed, `reason`, `message` and `message_en` in the body:
    404 `unknown_code`; 422 `bad_code`; 409 `other_day`, `cancelled`,
    `already_checked_in` (naming when and the number), `too_early` (naming the
    earliest check-in time)."""
    queue: Queue = request.app.state.queue
    if body.terminal is not None:
        check_terminal(queue.config, body.terminal)
    who = actor(request, body.terminal)
    done: CheckIn = await _appointments(request).check_in(body.code, body.terminal, who)
    ticket = done.ticket
    if body.terminal is not None and body.print:
        ticket = await request.app.state.printing.print_issued(ticket, body.terminal, who)
    return CheckInOut(appointment=AppointmentOut.of(done.appointment, queue),
                      ticket=TicketOut.of(ticket, queue), on_time=done.on_time,
                      message=done.message, message_en=done.message_en
                      ).answer(status.HTTP_201_CREATED)


@router.post("/appointments", status_code=status.HTTP_201_CREATED,
             response_model=AppointmentOut, responses=ERRORS,
             dependencies=[roles("booking", "supervisor")], summary="Register an appointment")
async def register(body: AppointmentIn, request: Request):
    """Name and phone are masked as the body is read, before anything else; only the
    masked forms are kept, answered or logged. 409 when another appointment that
    day has the code; 422 for an unknown service, a bad slot or code, or a slot
    whose check-in window has already closed."""
    booking = Booking(service=body.service, slot=body.slot, code=body.code, name=body.name,
                      phone=body.phone, reference=body.reference)
    view = await _appointments(request).register(booking, actor(request))
    return AppointmentOut.of(view, request.app.state.queue).answer(status.HTTP_201_CREATED)


@router.get("/appointments", response_model=list[AppointmentOut], responses=ERRORS,
            dependencies=[roles("booking", "supervisor")], summary="A day's appointments")
async def of_day(request: Request,
                 date_: str | None = Query(None, alias="date", max_length=10,
                                           description="YYYY-MM-DD; default today in the hall",
                                           examples=["2026-11-30"])):
    """The day's appointments, by slot."""
    queue: Queue = request.app.state.queue
    found = await _appointments(request).of_day(read_day(date_, queue))
    answer = [AppointmentOut.of(v, queue).model_dump() for v in found]
    return JSONResponse(answer)


@router.get("/appointments/{appointment_id}", response_model=AppointmentOut, responses=ERRORS,
            dependencies=[roles("booking", "supervisor")], summary="One appointment")
async def get_appointment(appointment_id: str, request: Request):
    view = await _appointments(request).get(appointment_id)
    return AppointmentOut.of(view, request.app.state.queue).answer()


@router.post("/appointments/{appointment_id}/cancel", response_model=AppointmentOut,
             responses=ERRORS, dependencies=[roles("booking", "supervisor")],
             summary="Cancel an appointment")
async def cancel(appointment_id: str, request: Request):
    """409 when it was checked in (cancel its ticket instead), is cancelled already,
    or its day is over."""
    view = await _appointments(request).cancel(appointment_id, actor(request))
    return AppointmentOut.of(view, request.app.state.queue).answer()
