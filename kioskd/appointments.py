"""Appointments: booked through the hall's booking system, checked in at a kiosk with their code.

No HTTP here. The booking system registers an appointment (service, slot, check-in
code, at most a masked name and phone); the citizen enters or scans the code at a
kiosk. Inside the check-in window — `[appointments] check_in_before_min` before the
slot to `check_in_after_min` after it — the ticket is a priority ticket placed in
line at the slot, so it is called ahead of walk-ins; later, a normal ticket in line
from now. Each change is one transaction of `Queue.run`: the appointment, its ticket
and their events (audited) are written together or not at all.

Where an appointment ticket stands: priority tickets are called first, among them
by their time in line — an appointment's is its slot, a priority walk-in's its issue
time. A priority walk-in who came before the slot is called before the appointment;
one who came after the slot, after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from .privacy import is_personal_number
from .queue import Conflict, Invalid, NotFound, Queue, QueueError, TicketView, ticket_id
from .records import Actor, Appointment, AppointmentStatus, SYSTEM
from .store import Tx

CODE = re.compile(r"[A-Za-z0-9-]{4,32}")
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
CODE_RULE = "a check-in code is 4 to 32 letters, digits or '-'"


@dataclass(frozen=True)
class Booking:
    """What the booking system sends; `name` and `phone` already masked, `reference`
    already scrubbed (the API's edge does it before anything else sees them)."""

    service: str
    slot: str                 # ISO 8601; without an offset, the hall's local time
    code: str
    name: str | None = None
    phone: str | None = None
    reference: str | None = None


@dataclass(frozen=True)
class AppointmentView:
    """An appointment as answered: with its ticket's number once checked in."""

    appointment: Appointment
    number: str | None
    check_in_from: float
    check_in_until: float


@dataclass(frozen=True)
class CheckIn:
    """A check-in that issued a ticket: `on_time` False when the citizen came after
    the window and got a normal ticket. `message` is for the citizen (Chinese and
    English)."""

    appointment: AppointmentView
    ticket: TicketView
    on_time: bool
    message: str
    message_en: str


class Refused(QueueError):
    """A check-in the rules refuse, told to the citizen in both languages: `reason`
    names the case (unknown_code, bad_code, other_day, cancelled, already_checked_in,
    too_early), `message` and `message_en` say it in plain words."""

    def __init__(self, reason: str, message: str, message_en: str):
        super().__init__(f"{message} / {message_en}", reason, message=message,
                         message_en=message_en)


class UnknownCode(Refused, NotFound):
    """No appointment has this code."""


class BadCode(Refused, Invalid):
    """What was typed or scanned cannot be a check-in code."""


class CannotCheckIn(Refused, Conflict):
    """The appointment exists, but cannot be checked in now."""


def normal_code(text: str) -> str | None:
    """The code as stored: without surrounding blanks, in capitals; None when it is
    not 4 to 32 letters, digits or '-'."""
    text = text.strip()
    return text.upper() if CODE.fullmatch(text) else None


class Appointments:
    """The hall's appointments: register, cancel, list, and check in at a kiosk."""

    def __init__(self, queue: Queue):
        self.queue = queue
        self.config = queue.config

    @property
    def before_s(self) -> float:
        return self.config.appointments.check_in_before_min * 60

    @property
    def after_s(self) -> float:
        return self.config.appointments.check_in_after_min * 60

    # -- the booking system ----------------------------------------------------------

    async def register(self, booking: Booking, actor: Actor = SYSTEM) -> AppointmentView:
        return await self.queue.run(self._register, booking, actor=actor)

    def _register(self, tx: Tx, now: float, booking: Booking) -> AppointmentView:
        """Refused (422) for an unknown service, a slot that is not a date and time,
        a bad code, or a slot whose check-in window has closed; (409) for a code
        another appointment of that day has (cancelled ones included)."""
        if self.config.service(booking.service) is None:
            known = ", ".join(s.id for s in self.config.services)
            raise Invalid(f"service: unknown service '{booking.service}'; known: {known}")
        code = normal_code(booking.code)
        if code is None:
            raise Invalid(f"code: {CODE_RULE}")
        if is_personal_number(code):         # it would be kept, listed and shown in full
            raise Invalid("code: an ID number or a phone number cannot be a check-in code "
                          "(kioskd keeps no personal data); use the booking's own code")
        slot_at = self.slot_time(booking.slot)
        if slot_at + self.after_s < now:
            when = self.queue.clock_text
            raise Invalid(
                f"slot: {when(slot_at, with_date=True)} is past: check-in for it closed at "
                f"{when(slot_at + self.after_s)} ({self.config.appointments.check_in_after_min}"
                " minutes after the slot)")
        day = self.queue.day_of(slot_at)
        if any(a.day == day for a in tx.appointments_by_code(code)):
            raise Conflict(f"code: the check-in code {code} is already used by another "
                           f"appointment on {day}")
        appointment = Appointment(
            id=ticket_id(now), day=day, code=code, service=booking.service, slot_at=slot_at,
            status=AppointmentStatus.BOOKED, created_at=now, name=booking.name,
            phone=booking.phone, reference=booking.reference)
        tx.insert_appointment(appointment)
        view = self._view(tx, appointment)
        tx.emit("appointment.registered", now, self._event_data(view))
        return view

    def slot_time(self, text: str) -> float:
        """An ISO 8601 date and time as a Unix time; without an offset, the hall's
        local time. Invalid (422) for anything else, a bare date included."""
        text = text.strip()
        example = "e.g. 2026-11-30T09:30:00+08:00, or 2026-11-30T09:30 in the hall's time"
        if not _DATE_TIME.match(text):
            raise Invalid(f"slot: '{text}' is not an ISO 8601 date and time ({example})")
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            raise Invalid(f"slot: '{text}' is not an ISO 8601 date and time ({example})") from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=self.queue.tz)
        return at.timestamp()

    async def cancel(self, appointment_id: str, actor: Actor = SYSTEM) -> AppointmentView:
        return await self.queue.run(self._cancel, appointment_id, actor=actor)

    def _cancel(self, tx: Tx, now: float, appointment_id: str) -> AppointmentView:
        """Only a booked appointment of today or later: a checked-in one has its
        ticket (cancel that instead), a cancelled one is cancelled already, and a
        past day's stays as it ended (statistics count it as not come)."""
        appointment = self._appointment(tx, appointment_id)
        if appointment.status is AppointmentStatus.CANCELLED:
            when = self.queue.clock_text(appointment.cancelled_at, with_date=True)
            raise Conflict(f"the appointment was already cancelled at {when}")
        if appointment.status is AppointmentStatus.CHECKED_IN:
            number = self._number(tx, appointment)
            when = self.queue.clock_text(appointment.checked_in_at, with_date=True)
            raise Conflict(f"the appointment was checked in at {when} with ticket {number}; "
                           "cancel the ticket instead")
        if appointment.day < self.queue.day_of(now):
            raise Conflict(f"the appointment's day ({appointment.day}) is over")
        appointment.status = AppointmentStatus.CANCELLED
        appointment.cancelled_at = now
        tx.update_appointment(appointment)
        view = self._view(tx, appointment)
        tx.emit("appointment.cancelled", now, self._event_data(view))
        return view

    async def of_day(self, day: date) -> list[AppointmentView]:
        """The appointments of the hall's `day`, by slot."""
        return await self.queue.store.read(
            lambda tx: [self._view(tx, a) for a in tx.appointments_of_day(day.isoformat())])

    async def get(self, appointment_id: str) -> AppointmentView:
        return await self.queue.store.read(
            lambda tx: self._view(tx, self._appointment(tx, appointment_id)))

    # -- at the kiosk ------------------------------------------------------------------

    async def check_in(self, code: str, terminal: str | None = None,
                       actor: Actor = SYSTEM) -> CheckIn:
        return await self.queue.run(self._check_in, code, terminal, actor=actor)

    def _check_in(self, tx: Tx, now: float, typed: str, terminal: str | None) -> CheckIn:
        """Today's appointment of the code: inside its window a priority ticket in
        line at the slot; after it a normal ticket in line from now. Refused, with
        nothing changed: an unknown code (404), one that cannot be a code (422), an
        appointment of another day, cancelled, already checked in, or too early (409)."""
        appointment = self._today_of(tx, now, typed)
        number = self._number(tx, appointment)
        slot = self.queue.clock_text(appointment.slot_at)
        if appointment.status is AppointmentStatus.CANCELLED:
            raise CannotCheckIn("cancelled", "该预约已取消。如需办理，请重新预约或直接取号。",
                                "This appointment was cancelled. Please book again, "
                                "or take a number.")
        if appointment.status is AppointmentStatus.CHECKED_IN:
            at = self.queue.clock_text(appointment.checked_in_at)
            raise CannotCheckIn(
                "already_checked_in", f"该预约已于 {at} 签到，号码是 {number}，请勿重复签到。",
                f"This appointment was checked in at {at}: your number is {number}.")
        opens = appointment.slot_at - self.before_s
        if now < opens:
            from_ = self.queue.clock_text(opens)
            raise CannotCheckIn(
                "too_early", f"请于 {from_} 后签到（预约时间 {slot}）。",
                f"Please check in from {from_} (your appointment is at {slot}).")
        on_time = now <= appointment.slot_at + self.after_s
        ticket = self.queue.issue_in(
            tx, now, appointment.service, on_time, terminal, appointment=appointment.id,
            queue_at=appointment.slot_at if on_time else None)
        appointment.status = AppointmentStatus.CHECKED_IN
        appointment.checked_in_at = now
        appointment.ticket = ticket.ticket.id
        tx.update_appointment(appointment)
        view = AppointmentView(appointment, ticket.ticket.number, *self._window(appointment))
        tx.emit("appointment.checked_in", now, self._event_data(view, on_time=on_time))
        if on_time:
            message = f"签到成功。您的预约时间是 {slot}，将优先为您办理。"
            message_en = (f"You are checked in for your {slot} appointment and will be "
                          "served ahead of walk-ins.")
        else:
            message = f"您已超过预约时间（{slot}），已为您取普通号。"
            message_en = (f"You are past your appointment time ({slot}): "
                          "you have a regular number.")
        return CheckIn(view, ticket, on_time, message, message_en)

    def _today_of(self, tx: Tx, now: float, typed: str) -> Appointment:
        code = normal_code(typed)
        if code is None:
            raise BadCode("bad_code", "签到码由 4 到 32 位字母、数字或“-”组成，请核对后重新输入。",
                          "A check-in code has 4 to 32 letters, digits or '-'. "
                          "Please check it and try again.")
        found = tx.appointments_by_code(code)
        today = self.queue.day_of(now)
        for appointment in found:
            if appointment.day == today:
                return appointment
        if not found:
            raise UnknownCode("unknown_code", "没有找到这个签到码的预约，请核对后重新输入，"
                              "或到服务台咨询。",
                              "No appointment has this check-in code. Please check it, "
                              "or ask at the service desk.")
        later = [a for a in found if a.day > today]
        other = later[0] if later else found[-1]
        day = date.fromisoformat(other.day)
        zh = f"{day.year}年{day.month}月{day.day}日"
        en = f"{day.day} {day:%B %Y}"
        if later:
            raise CannotCheckIn("other_day", f"您的预约是 {zh}，请当天再来签到。",
                                f"Your appointment is on {en}. Please check in on that day.")
        raise CannotCheckIn("other_day", f"您的预约是 {zh}，已经过期。如需办理，请直接取号。",
                            f"Your appointment was on {en}. Please take a number instead.")

    # -- helpers ---------------------------------------------------------------------------

    def _appointment(self, tx: Tx, appointment_id: str) -> Appointment:
        appointment = tx.appointment(appointment_id)
        if appointment is None:
            raise NotFound(f"no appointment '{appointment_id}'")
        return appointment

    @staticmethod
    def _number(tx: Tx, appointment: Appointment) -> str | None:
        ticket = tx.ticket(appointment.ticket) if appointment.ticket else None
        return ticket.number if ticket else None

    def _window(self, appointment: Appointment) -> tuple[float, float]:
        return appointment.slot_at - self.before_s, appointment.slot_at + self.after_s

    def _view(self, tx: Tx, appointment: Appointment) -> AppointmentView:
        return AppointmentView(appointment, self._number(tx, appointment),
                               *self._window(appointment))

    def _event_data(self, view: AppointmentView, **extra: object) -> dict:
        """What the public event stream may carry: never the code, name or phone."""
        a = view.appointment
        data = {"appointment": a.id, "service": a.service,
                "service_name": self.config.service_name(a.service), "day": a.day,
                "slot": self.queue.iso(a.slot_at), "status": a.status.value}
        if a.ticket:
            data["ticket"] = a.ticket
            data["number"] = view.number
        data.update(extra)
        return data
