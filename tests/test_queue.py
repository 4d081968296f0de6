"""The queue engine as the hall sees it: numbers at the kiosk, windows calling.

Hall (see conftest.small_hall): property A / business B / social C; windows 1 and 2
comprehensive (property + business), 3 social, 4 property, 9 temporary (all three,
starts closed). Re-admission within 30 minutes, after the next 2 waiting tickets.
Time only moves when a test moves the clock; the day starts Monday 9:00 in Shanghai.
Every test runs on both stores (BOTH_STORES): the SQLite file, and a PostgreSQL
database of the test server; what is on disk is read on the side (storedump.py).
"""

from __future__ import annotations

import asyncio
import math
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime

import pytest

from kioskd.config import Config
from kioskd.queue import Conflict, Invalid, NotFound, Queue
from kioskd.records import Status, WindowState
from kioskd.store import store_for

from conftest import OPENING, TZ, Clock
from storedump import dump

BOTH_STORES = True


# -- helpers -------------------------------------------------------------------------

@asynccontextmanager
async def hall_open(config: Config, clock: Clock):
    """The daemon running over the hall's database: a fresh store and engine."""
    store = store_for(config)
    q = Queue(config, store, clock)
    await store.open()
    await q.setup()
    try:
        yield q
    finally:
        await store.close()


def snapshot(config: Config) -> dict[str, list[dict]]:
    """Every row of every table of the hall's store (tickets, windows, sequences,
    events, the audit log, ...), as stored, read on the side."""
    return dump(config)


def tickets_stored(config: Config) -> list[dict]:
    """Every ticket as stored, in issue order, read on the side."""
    return dump(config, ("tickets",))["tickets"]


def waiting_ids(queue: Queue) -> list[str]:
    """The ids of the tickets waiting now, as stored."""
    return [t["id"] for t in tickets_stored(queue.config) if t["status"] == "waiting"]


def at(hour: int, minute: int = 0, day: int = 30, month: int = 11) -> float:
    """A hall-local wall-clock time as Unix seconds."""
    return datetime(2026, month, day, hour, minute, tzinfo=TZ).timestamp()


async def numbers_called(q: Queue, window: str) -> list[str]:
    """Let a window call until nobody is left for it; the numbers in call order."""
    called = []
    while (view := await q.call_next(window)) is not None:
        called.append(view.ticket.number)
    return called


async def issue_spaced(q: Queue, clock: Clock, service: str, count: int,
                       minutes: float = 1) -> list:
    views = []
    for _ in range(count):
        views.append(await q.issue(service))
        clock.advance(minutes=minutes)
    return views


# -- numbering -------------------------------------------------------------------------

async def test_first_tickets_of_the_day_are_A001_A002_then_B001_for_business(queue):
    first = await queue.issue("property")
    second = await queue.issue("property")
    business = await queue.issue("business")
    social = await queue.issue("social")
    assert [first.ticket.number, second.ticket.number] == ["A001", "A002"]
    assert business.ticket.number == "B001"
    assert social.ticket.number == "C001"
    assert first.ticket.status is Status.WAITING
    assert first.ticket.day == "2026-11-30"
    assert first.ticket.id != second.ticket.id


async def test_hall_with_four_digit_numbers_prints_A0001(hall_config, clock):
    config = replace(hall_config, hall=replace(hall_config.hall, number_width=4))
    async with hall_open(config, clock) as q:
        assert (await q.issue("property")).ticket.number == "A0001"
        assert (await q.issue("social")).ticket.number == "C0001"


async def test_numbering_goes_past_the_width_instead_of_wrapping(hall_config, clock):
    config = replace(hall_config, hall=replace(hall_config.hall, number_width=1))
    async with hall_open(config, clock) as q:
        numbers = [(await q.issue("business")).ticket.number for _ in range(11)]
    assert numbers[8:] == ["B9", "B10", "B11"]
    assert len(set(numbers)) == 11


async def test_restart_in_the_afternoon_continues_at_A003_not_A001(hall_config, clock):
    async with hall_open(hall_config, clock) as q:
        a1 = await q.issue("property")
        await q.issue("property")
        await q.issue("business")
        await q.cancel(a1.ticket.id)                 # a cancelled number stays used
    clock.advance(hours=4)
    async with hall_open(hall_config, clock) as q:
        assert (await q.issue("property")).ticket.number == "A003"
        assert (await q.issue("business")).ticket.number == "B002"
        again = await q.ticket(a1.ticket.id)          # the morning's tickets survived
        assert again.ticket.number == "A001"
        assert again.ticket.status is Status.CANCELLED


async def test_numbers_issued_concurrently_in_one_batch_are_all_different(queue):
    views = await asyncio.gather(*(queue.issue("property") for _ in range(40)))
    numbers = sorted(v.ticket.number for v in views)
    assert numbers == [f"A{n:03d}" for n in range(1, 41)]


async def test_numbers_restart_at_A001_at_shanghai_midnight(queue, clock):
    clock.now = at(23, 59)
    assert (await queue.issue("property")).ticket.number == "A001"
    assert (await queue.issue("property")).ticket.number == "A002"
    clock.now = at(0, 0, day=1, month=12)
    after_midnight = await queue.issue("property")
    assert after_midnight.ticket.number == "A001"
    assert after_midnight.ticket.day == "2026-12-01"


async def test_utc_midnight_is_not_the_halls_midnight(queue, clock):
    # 07:30 and 08:30 in Shanghai straddle midnight UTC: still the same hall day.
    clock.now = at(7, 30)
    assert (await queue.issue("social")).ticket.number == "C001"
    clock.now = at(8, 30)
    view = await queue.issue("social")
    assert view.ticket.number == "C002"
    assert view.ticket.day == "2026-11-30"


async def test_restart_after_midnight_starts_at_A001_and_keeps_yesterdays_tickets(
        hall_config, clock):
    async with hall_open(hall_config, clock) as q:
        yesterday = [await q.issue("property") for _ in range(3)]
    clock.now = at(8, 55, day=1, month=12)
    async with hall_open(hall_config, clock) as q:
        today = await q.issue("property")
        assert today.ticket.number == "A001"
        old = await q.ticket(yesterday[2].ticket.id)
        assert old.ticket.number == "A003" and old.ticket.day == "2026-11-30"
    # the next morning's A001 and yesterday's A001 are two tickets on disk
    assert sorted((t["day"], t["number"]) for t in tickets_stored(hall_config)) == [
        ("2026-11-30", "A001"), ("2026-11-30", "A002"), ("2026-11-30", "A003"),
        ("2026-12-01", "A001")]


# -- call-next -----------------------------------------------------------------------------

async def test_window_4_calls_the_longest_waiting(queue, clock):
    a1 = await queue.issue("property")
    clock.advance(minutes=1)
    await queue.issue("property")
    called = await queue.call_next("4")
    assert called.ticket.id == a1.ticket.id
    assert called.ticket.number == "A001"
    assert called.ticket.status is Status.CALLED
    assert called.ticket.window == "4"
    assert called.ticket.called_at == clock.now


async def test_comprehensive_window_1_takes_the_earliest_across_its_services(queue, clock):
    await queue.issue("business")                   # 9:00
    clock.advance(minutes=2)
    await queue.issue("property")                   # 9:02
    clock.advance(minutes=2)
    await queue.issue("business")                   # 9:04
    # window 1 lists property first, but waiting longest wins across its services
    assert await numbers_called(queue, "1") == ["B001", "A001", "B002"]


async def test_window_4_does_not_call_social_security_but_window_3_does(queue):
    await queue.issue("social")
    assert await queue.call_next("4") is None
    assert await queue.call_next("1") is None
    assert (await queue.call_next("3")).ticket.number == "C001"


async def test_priority_ticket_for_an_elderly_visitor_is_called_first(queue, clock):
    await queue.issue("property")                              # A001 9:00
    clock.advance(minutes=5)
    elderly = await queue.issue("property", priority=True)     # A002 9:05
    clock.advance(minutes=5)
    await queue.issue("property", priority=True)               # A003 9:10
    assert elderly.ticket.priority is True
    assert await numbers_called(queue, "4") == ["A002", "A003", "A001"]


async def test_priority_business_ticket_beats_earlier_property_at_window_2(queue, clock):
    await queue.issue("property")
    clock.advance(minutes=10)
    await queue.issue("business", priority=True)
    assert (await queue.call_next("2")).ticket.number == "B001"


async def test_empty_queue_answers_none(queue):
    assert await queue.call_next("1") is None
    assert (await queue.window("1")).current is None


async def test_windows_calling_at_the_same_instant_never_get_the_same_ticket(queue, clock,
                                                                          store_url):
    issued = []
    for i in range(30):
        issued.append(await queue.issue(("property", "business")[i % 2]))
    windows = ["1", "2", "4"] * 12                     # 36 calls for 30 tickets
    results = await asyncio.gather(*(queue.call_next(w) for w in windows))
    got = [r.ticket.id for r in results if r is not None]
    assert len(got) == 30
    assert len(set(got)) == 30
    assert set(got) == {v.ticket.id for v in issued}
    assert results.count(None) == 6
    # window 4 only serves property
    assert all(r.ticket.service == "property"
               for w, r in zip(windows, results) if w == "4" and r is not None)
    called_events = [e for e in await queue.events_after(0) if e.type == "ticket.called"]
    assert len(called_events) == 30
    assert len({e.data["ticket"] for e in called_events}) == 30
    # each call finished the window's previous ticket: what a window holds is called,
    # every other ticket done
    held = {w.record.current for w in await queue.windows()} - {None}
    statuses = {t["id"]: t["status"] for t in tickets_stored(queue.config)}
    assert {i for i, status in statuses.items() if status != "done"} == held
    assert {statuses[i] for i in held} <= {"called"}
    if store_url is None:       # one batch, in the order sent: each window's last two
        assert held == set()    # calls found nobody (PostgreSQL: in whatever order ran)


async def test_two_windows_pressing_call_together_get_the_two_oldest(queue, clock):
    a1 = await queue.issue("property")
    clock.advance(seconds=1)
    a2 = await queue.issue("property")
    clock.advance(seconds=1)
    await queue.issue("property")
    one, four = await asyncio.gather(queue.call_next("1"), queue.call_next("4"))
    assert {one.ticket.id, four.ticket.id} == {a1.ticket.id, a2.ticket.id}
    held = {w.record.id: w.record.current for w in await queue.windows()}
    assert (held["1"], held["4"]) == (one.ticket.id, four.ticket.id)


# -- at the window -------------------------------------------------------------------------

async def test_window_4_recalls_A001_twice(queue, clock):
    await queue.issue("property")
    await queue.call_next("4")
    clock.advance(seconds=30)
    first = await queue.recall("4")
    clock.advance(seconds=30)
    second = await queue.recall("4")
    assert (first.ticket.recalls, second.ticket.recalls) == (1, 2)
    assert second.ticket.status is Status.CALLED
    recalled = [e for e in await queue.events_after(0) if e.type == "ticket.recalled"]
    assert [e.data["recalls"] for e in recalled] == [1, 2]
    assert recalled[0].data["window"] == "4"


async def test_start_then_complete_frees_window_4(queue, clock):
    await queue.issue("property")
    called_at = clock.now
    await queue.call_next("4")
    clock.advance(minutes=1)
    started = await queue.start("4")
    assert started.ticket.status is Status.SERVING
    assert started.ticket.started_at == clock.now
    clock.advance(minutes=12)
    done = await queue.complete("4")
    assert done.ticket.status is Status.DONE
    assert done.ticket.called_at == called_at
    assert done.ticket.finished_at == clock.now
    assert done.ticket.closed_by is None
    assert (await queue.window("4")).current is None


async def test_clerk_completes_without_pressing_start(queue):
    await queue.issue("social")
    await queue.call_next("3")
    done = await queue.complete("3")
    assert done.ticket.status is Status.DONE and done.ticket.started_at is None


async def test_visitor_never_comes_so_window_3_marks_no_show(queue, clock):
    await queue.issue("social")
    await queue.call_next("3")
    clock.advance(minutes=2)
    view = await queue.no_show("3")
    assert view.ticket.status is Status.NO_SHOW
    assert view.ticket.finished_at == clock.now
    assert (await queue.window("3")).current is None
    assert await queue.call_next("3") is None          # a no-show is not called again


async def test_recall_or_no_show_after_the_visitor_sat_down_is_refused(queue):
    await queue.issue("social")
    await queue.call_next("3")
    await queue.start("3")
    with pytest.raises(Conflict, match="already being served"):
        await queue.recall("3")
    with pytest.raises(Conflict, match="being served"):
        await queue.no_show("3")
    with pytest.raises(Conflict, match="already being served"):
        await queue.start("3")
    assert (await queue.window("3")).current.status is Status.SERVING


async def test_call_next_finishes_the_current_ticket_first(queue, clock):
    a1 = await queue.issue("property")
    await queue.issue("property")
    await queue.call_next("4")
    await queue.start("4")
    clock.advance(minutes=7)
    nxt = await queue.call_next("4")
    assert nxt.ticket.number == "A002"
    old = await queue.ticket(a1.ticket.id)
    assert old.ticket.status is Status.DONE
    assert old.ticket.finished_at == clock.now
    assert (await queue.window("4")).current.id == nxt.ticket.id


async def test_last_ticket_of_the_day_then_call_next_leaves_window_free_to_close(queue):
    # call-next with nobody waiting still finishes the current ticket, and the
    # window must then hold nothing: the supervisor can close it.
    c1 = await queue.issue("social")
    await queue.call_next("3")
    assert await queue.call_next("3") is None
    assert (await queue.ticket(c1.ticket.id)).ticket.status is Status.DONE
    window = await queue.window("3")
    assert window.record.current is None and window.current is None
    with pytest.raises(Conflict, match="no current ticket"):
        await queue.complete("3")
    closed = await queue.close("3")
    assert closed.record.state is WindowState.CLOSED


async def test_every_window_action_without_a_current_ticket_is_refused(queue):
    for action in (queue.recall, queue.start, queue.complete, queue.no_show):
        with pytest.raises(Conflict, match="window 4 has no current ticket"):
            await action("4")
    with pytest.raises(Conflict, match="window 4 has no current ticket"):
        await queue.transfer("4", service="social")


# -- transfer ------------------------------------------------------------------------------

async def test_transfer_to_social_security_keeps_number_and_joins_window_3s_line(queue, clock):
    await queue.issue("property")                      # A001 9:00
    clock.advance(minutes=5)
    await queue.issue("social")                        # C001 9:05
    await queue.call_next("4")
    clock.advance(minutes=10)
    moved = await queue.transfer("4", service="social")
    assert moved.ticket.number == "A001"
    assert moved.ticket.service == "social"
    assert moved.ticket.status is Status.WAITING
    assert moved.ticket.window is None
    assert moved.ticket.transfers == 1
    assert moved.waiting_ahead == 0                    # 9:00 is before C001's 9:05
    assert (await queue.window("4")).current is None
    # it keeps its original 9:00 in line: window 3 calls it before C001
    assert await numbers_called(queue, "3") == ["A001", "C001"]


async def test_transferred_ticket_keeps_its_issue_time_not_the_transfer_time(queue, clock):
    await queue.issue("property")                      # A001 9:00
    clock.advance(minutes=10)
    await queue.issue("business")                      # B001 9:10
    clock.advance(minutes=5)
    await queue.call_next("4")                         # A001 at window 4, 9:15
    await queue.start("4")
    clock.advance(minutes=5)
    moved = await queue.transfer("4", service="business")
    assert moved.ticket.issued_at == OPENING
    assert await numbers_called(queue, "2") == ["A001", "B001"]


async def test_ticket_transferred_to_window_4_is_only_called_by_window_4(queue, clock):
    await queue.issue("property")                      # A001
    clock.advance(minutes=1)
    await queue.issue("property")                      # A002
    await queue.call_next("1")                         # A001 at the comprehensive window
    moved = await queue.transfer("1", to_window="4")
    assert moved.ticket.target_window == "4"
    assert moved.ticket.service == "property"
    # windows 1 and 2 serve property too, but not this ticket
    assert (await queue.call_next("2")).ticket.number == "A002"
    assert await queue.call_next("1") is None
    assert (await queue.call_next("4")).ticket.number == "A001"


async def test_property_ticket_sent_to_window_3_is_called_there_although_3_is_social(
        queue, clock):
    await queue.issue("social")                        # C001 9:00
    clock.advance(minutes=1)
    await queue.issue("property")                      # A001 9:01
    await queue.call_next("4")
    await queue.transfer("4", to_window="3")
    assert await queue.call_next("1") is None
    assert await numbers_called(queue, "3") == ["C001", "A001"]


async def test_transfer_to_a_service_and_a_window_at_once(queue):
    await queue.issue("property")
    await queue.call_next("4")
    moved = await queue.transfer("4", service="business", to_window="2")
    assert (moved.ticket.service, moved.ticket.target_window) == ("business", "2")
    assert await queue.call_next("1") is None
    called = await queue.call_next("2")
    assert called.ticket.number == "A001" and called.ticket.target_window is None


async def test_ticket_sent_to_window_4_counts_window_4s_whole_line_ahead(queue, clock):
    # Window 4 will call the property tickets waiting since before 9:05 first: they
    # are ahead of a 9:05 ticket transferred to it, not only other transferred ones.
    await queue.pause("1")
    await queue.pause("2")
    await queue.pause("4")                             # property waits for a while
    await queue.issue("property")                      # A001 9:00
    clock.advance(minutes=2)
    await queue.issue("property")                      # A002 9:02
    clock.advance(minutes=3)
    c1 = await queue.issue("social")                   # C001 9:05
    clock.advance(minutes=1)
    await queue.issue("property")                      # A003 9:06
    await queue.call_next("3")
    moved = await queue.transfer("3", to_window="4")   # C001 needs a property clerk
    assert moved.waiting_ahead == 2                    # A001 and A002, not A003
    # one window; m is the ticket's own service time (social, 4 min): ceil(2 × 4 / 1)
    assert moved.est_wait_min == 8
    await queue.resume("4")
    assert await numbers_called(queue, "4") == ["A001", "A002", "C001", "A003"]
    assert (await queue.ticket(c1.ticket.id)).ticket.status is Status.DONE


async def test_tickets_sent_to_the_same_window_queue_by_issue_time(queue, clock):
    for _ in range(3):
        await queue.issue("social")                    # C001-C003, 9:00-9:02
        clock.advance(minutes=1)
    await queue.call_next("3")                         # C001
    await queue.transfer("3", to_window="9")
    await queue.call_next("3")                         # C002
    second = await queue.transfer("3", to_window="9")
    assert second.waiting_ahead == 1                   # C001 went to window 9 first
    await queue.open("9")
    assert await numbers_called(queue, "9") == ["C001", "C002", "C003"]


async def test_transfer_needs_a_real_destination(queue):
    await queue.issue("property")
    await queue.call_next("4")
    before = snapshot(queue.config)
    with pytest.raises(Invalid, match="name a service or a window"):
        await queue.transfer("4")
    with pytest.raises(Invalid, match="unknown service 'passport'"):
        await queue.transfer("4", service="passport")
    with pytest.raises(Invalid, match="unknown window '7'"):
        await queue.transfer("4", to_window="7")
    with pytest.raises(Invalid, match="already at window 4"):
        await queue.transfer("4", to_window="4")
    assert snapshot(queue.config) == before


# -- cancel --------------------------------------------------------------------------------

async def test_visitor_leaves_and_kiosk_cancels_A001(queue):
    a1 = await queue.issue("property")
    await queue.issue("property")
    cancelled = await queue.cancel(a1.ticket.id)
    assert cancelled.ticket.status is Status.CANCELLED
    assert cancelled.ticket.closed_by == "cancel"
    assert cancelled.waiting_ahead is None
    assert await numbers_called(queue, "4") == ["A002"]


async def test_only_a_waiting_ticket_can_be_cancelled(queue):
    a1 = await queue.issue("property")
    await queue.call_next("4")
    with pytest.raises(Conflict, match="A001 is called; only a waiting ticket"):
        await queue.cancel(a1.ticket.id)
    with pytest.raises(NotFound, match="no ticket 'nope'"):
        await queue.cancel("nope")


# -- re-admission --------------------------------------------------------------------------

async def test_no_show_back_within_30_minutes_goes_behind_the_next_two(queue, clock):
    a = await issue_spaced(queue, clock, "property", 5)      # A001-A005, a minute apart
    await queue.call_next("4")
    await queue.no_show("4")
    clock.advance(minutes=10)
    back = await queue.readmit(a[0].ticket.id)
    assert back.ticket.status is Status.WAITING
    assert back.ticket.number == "A001"
    assert back.waiting_ahead == 2
    assert back.ticket.window is None and back.ticket.called_at is None
    assert await numbers_called(queue, "4") == ["A002", "A003", "A001", "A004", "A005"]


async def test_readmit_works_when_everyone_took_a_number_in_the_same_second(queue):
    # The clock does not move: every ticket has the same issue time.
    a = [await queue.issue("property") for _ in range(5)]
    await queue.call_next("4")
    await queue.no_show("4")
    back = await queue.readmit(a[0].ticket.id)
    assert back.waiting_ahead == 2
    assert await numbers_called(queue, "4") == ["A002", "A003", "A001", "A004", "A005"]


async def test_many_no_shows_readmitted_into_the_same_gap_stay_in_order(queue, clock):
    # Each re-admission halves the gap it lands in; after ~22 halvings of a second
    # no float is left between two places, and the line must still hold.
    await issue_spaced(queue, clock, "property", 4, minutes=1 / 60)
    clock.advance(minutes=1)
    for _ in range(40):
        head = await queue.call_next("4")
        await queue.no_show("4")
        back = await queue.readmit(head.ticket.id)
        assert back.waiting_ahead == 2, head.ticket.number
        line = [await queue.ticket(t) for t in waiting_ids(queue)]
        assert sorted(v.waiting_ahead for v in line) == list(range(len(line)))


async def test_readmit_with_only_one_waiting_goes_to_the_back(queue, clock):
    a1 = await queue.issue("property")
    clock.advance(minutes=1)
    await queue.issue("property")
    clock.advance(minutes=1)
    await queue.call_next("4")
    await queue.no_show("4")
    clock.advance(minutes=1)
    back = await queue.readmit(a1.ticket.id)
    assert back.waiting_ahead == 1
    clock.advance(minutes=1)
    await queue.issue("property")                       # A003 came later: behind A001
    assert await numbers_called(queue, "4") == ["A002", "A001", "A003"]


async def test_readmit_ignores_the_other_services(queue, clock):
    a1 = await queue.issue("property")
    clock.advance(minutes=1)
    for service in ("business", "business", "property", "business", "property", "property"):
        await queue.issue(service)
        clock.advance(minutes=1)
    await queue.call_next("4")
    await queue.no_show("4")
    back = await queue.readmit(a1.ticket.id)
    assert back.waiting_ahead == 2                         # A002, A003; the B's don't count
    assert await numbers_called(queue, "4") == ["A002", "A003", "A001", "A004"]


async def test_readmit_at_exactly_30_minutes_is_allowed(queue, clock):
    a1 = await queue.issue("property")
    await queue.call_next("4")
    clock.advance(minutes=3)                             # recalled for three minutes first
    await queue.no_show("4")
    clock.advance(minutes=30)
    assert (await queue.readmit(a1.ticket.id)).ticket.status is Status.WAITING


async def test_readmit_after_31_minutes_is_refused(queue, clock):
    a1 = await queue.issue("property")
    await queue.call_next("4")
    await queue.no_show("4")
    clock.advance(minutes=30, seconds=1)
    before = snapshot(queue.config)
    with pytest.raises(Conflict, match="A001 missed its call more than 30 minutes ago"):
        await queue.readmit(a1.ticket.id)
    assert snapshot(queue.config) == before
    assert (await queue.ticket(a1.ticket.id)).ticket.status is Status.NO_SHOW


async def test_only_a_no_show_can_be_readmitted(queue):
    a1 = await queue.issue("property")
    with pytest.raises(Conflict, match="A001 is waiting; only a no-show"):
        await queue.readmit(a1.ticket.id)
    await queue.call_next("4")
    await queue.complete("4")
    with pytest.raises(Conflict, match="A001 is done; only a no-show"):
        await queue.readmit(a1.ticket.id)
    with pytest.raises(NotFound):
        await queue.readmit("no-such-ticket")


async def test_no_show_at_closing_cannot_come_back_tomorrow(queue, clock):
    clock.now = at(23, 50)
    c1 = await queue.issue("social")
    await queue.call_next("3")
    await queue.no_show("3")
    clock.now = at(0, 5, day=1, month=12)                 # 15 minutes later, a new day
    with pytest.raises(Conflict, match="take a new number"):
        await queue.readmit(c1.ticket.id)


async def test_readmitted_priority_ticket_stays_a_priority(queue, clock):
    p = await queue.issue("property", priority=True)
    clock.advance(minutes=1)
    await issue_spaced(queue, clock, "property", 3)
    await queue.call_next("4")
    await queue.no_show("4")
    back = await queue.readmit(p.ticket.id)
    assert back.waiting_ahead == 0
    assert (await queue.call_next("4")).ticket.id == p.ticket.id


# -- window states -------------------------------------------------------------------------

async def test_windows_start_open_except_temporary_window_9(queue, clock):
    states = {w.record.id: w.record.state for w in await queue.windows()}
    assert states == {"1": WindowState.OPEN, "2": WindowState.OPEN, "3": WindowState.OPEN,
                      "4": WindowState.OPEN, "9": WindowState.CLOSED}


async def test_supervisor_opens_temporary_window_9_for_the_morning_crowd(queue, clock):
    await queue.issue("social")
    with pytest.raises(Conflict, match="window 9 is closed"):
        await queue.call_next("9")
    clock.advance(minutes=1)
    opened = await queue.open("9")
    assert opened.record.state is WindowState.OPEN
    assert opened.record.since == clock.now
    assert (await queue.call_next("9")).ticket.number == "C001"
    changed = [e for e in await queue.events_after(0) if e.type == "window.changed"]
    assert changed[-1].data == {"window": "9", "name": "临时窗口", "state": "open",
                                "previous": "closed"}


async def test_clerk_pauses_window_4_for_lunch(queue):
    await queue.issue("property")
    paused = await queue.pause("4")
    assert paused.record.state is WindowState.PAUSED
    with pytest.raises(Conflict, match="window 4 is paused"):
        await queue.call_next("4")
    await queue.resume("4")
    assert (await queue.call_next("4")).ticket.number == "A001"


async def test_pause_with_a_visitor_at_the_window_keeps_the_visitor(queue):
    await queue.issue("property")
    await queue.issue("property")
    await queue.call_next("4")
    await queue.start("4")
    await queue.pause("4")
    with pytest.raises(Conflict, match="paused"):
        await queue.call_next("4")                   # does not finish the visitor either
    assert (await queue.window("4")).current.status is Status.SERVING
    assert (await queue.complete("4")).ticket.status is Status.DONE


async def test_a_clerk_cannot_resume_or_pause_a_closed_window(queue):
    before = snapshot(queue.config)
    with pytest.raises(Conflict, match="a supervisor opens it"):
        await queue.resume("9")
    with pytest.raises(Conflict, match="closed window cannot pause"):
        await queue.pause("9")
    assert snapshot(queue.config) == before


async def test_window_with_a_visitor_cannot_close(queue):
    await queue.issue("property")
    await queue.call_next("4")
    with pytest.raises(Conflict, match="window 4 still has A001"):
        await queue.close("4")
    await queue.complete("4")
    assert (await queue.close("4")).record.state is WindowState.CLOSED
    with pytest.raises(Conflict, match="closed"):
        await queue.call_next("4")


async def test_pressing_pause_twice_changes_nothing(queue):
    await queue.pause("4")
    before = snapshot(queue.config)
    again = await queue.pause("4")
    assert again.record.state is WindowState.PAUSED
    assert snapshot(queue.config) == before


async def test_unknown_window_is_not_found(queue):
    for action in (queue.call_next, queue.recall, queue.pause, queue.open, queue.window):
        with pytest.raises(NotFound, match="unknown window '42'"):
            await action("42")


# -- waiting ahead and estimated wait ------------------------------------------------------
# est = ceil(ahead × m / n); property m = 10 min until real figures, n = open windows
# serving it (1, 2, 4 → 3; 9 is temporary and closed).

async def test_estimates_on_the_first_four_property_tickets(queue):
    views = [await queue.issue("property") for _ in range(4)]
    assert [v.waiting_ahead for v in views] == [0, 1, 2, 3]
    assert [v.est_wait_min for v in views] == [0, 4, 7, 10]   # ceil(10k/3)


async def test_estimate_grows_when_windows_pause(queue):
    views = [await queue.issue("property") for _ in range(4)]
    await queue.pause("1")
    await queue.pause("2")
    last = await queue.ticket(views[3].ticket.id)
    assert (last.waiting_ahead, last.est_wait_min) == (3, 30)
    await queue.open("9")
    last = await queue.ticket(views[3].ticket.id)
    assert last.est_wait_min == 15


async def test_estimate_with_every_window_closed_counts_the_permanent_ones(queue):
    # social: window 3, and temporary 9. With 3 closed and 9 closed, assume 3 will open.
    await queue.close("3")
    views = [await queue.issue("social") for _ in range(3)]
    assert [(v.waiting_ahead, v.est_wait_min) for v in views] == [(0, 0), (1, 4), (2, 8)]
    await queue.open("9")
    assert (await queue.ticket(views[2].ticket.id)).est_wait_min == 8      # 9 alone: n = 1
    await queue.open("3")
    assert (await queue.ticket(views[2].ticket.id)).est_wait_min == 4      # ceil(2×4/2)


async def test_priority_tickets_count_ahead_of_an_ordinary_one_but_not_behind(queue, clock):
    ordinary = await queue.issue("business")
    clock.advance(minutes=1)
    priority = await queue.issue("business", priority=True)
    assert (await queue.ticket(ordinary.ticket.id)).waiting_ahead == 1
    assert priority.waiting_ahead == 0
    other = await queue.issue("property")
    assert other.waiting_ahead == 0                         # another service's line


async def test_estimate_learns_the_real_service_time(queue, clock):
    # business is configured at 6 min; the clerks actually take 20, 10 and 15 min.
    for minutes in (20, 10, 15):
        await queue.issue("business")
        await queue.call_next("2")
        clock.advance(minutes=2)
        await queue.start("2")                              # service time starts here
        clock.advance(minutes=minutes)
        await queue.complete("2")
    views = [await queue.issue("business") for _ in range(4)]
    # m = 15, n = windows 1 and 2 → ceil(3 × 15 / 2) = 23
    assert views[3].waiting_ahead == 3
    assert views[3].est_wait_min == 23


async def test_estimate_uses_only_the_last_20_served(queue, clock):
    for minutes in [60] * 5 + [2] * 20:                       # the old slow ones drop out
        await queue.issue("social")
        await queue.call_next("3")
        clock.advance(minutes=minutes)
        await queue.complete("3")
    views = [await queue.issue("social") for _ in range(2)]
    assert views[1].est_wait_min == 2                          # ceil(1 × 2 / 1)


async def test_estimate_forgets_service_older_than_a_week(queue, clock):
    await queue.issue("social")
    await queue.call_next("3")
    clock.advance(minutes=45)
    await queue.complete("3")
    clock.advance(hours=24 * 8)
    views = [await queue.issue("social") for _ in range(2)]
    assert views[1].est_wait_min == 4                          # back to the configured 4


async def test_very_quick_service_counts_at_least_half_a_minute(queue, clock):
    for _ in range(3):
        await queue.issue("social")
        await queue.call_next("3")
        clock.advance(seconds=5)
        await queue.complete("3")
    views = [await queue.issue("social") for _ in range(4)]
    assert views[3].est_wait_min == math.ceil(3 * 0.5)


async def test_ticket_left_at_a_window_overnight_does_not_teach_a_17_hour_service(queue, clock):
    await queue.issue("social")
    await queue.call_next("3")
    await queue.start("3")                                 # the clerk went home
    clock.now = at(9, 0, day=1, month=12)
    views = [await queue.issue("social") for _ in range(3)]
    assert views[2].est_wait_min == 8                      # ceil(2 × 4 / 1), not 2 × 1440


async def test_no_estimate_once_a_ticket_is_called(queue):
    await queue.issue("social")
    called = await queue.call_next("3")
    assert (called.waiting_ahead, called.est_wait_min) == (None, None)
    looked_up = await queue.ticket(called.ticket.id)
    assert (looked_up.waiting_ahead, looked_up.est_wait_min) == (None, None)


async def test_waiting_ahead_shrinks_as_window_4_calls(queue, clock):
    views = await issue_spaced(queue, clock, "property", 5)
    last = views[-1].ticket.id
    seen = []
    for _ in range(4):
        seen.append((await queue.ticket(last)).waiting_ahead)
        await queue.call_next("4")
    assert seen == [4, 3, 2, 1]
    assert (await queue.ticket(last)).waiting_ahead == 0


# -- day rollover --------------------------------------------------------------------------

async def test_tickets_still_waiting_at_closing_are_cancelled_next_morning(queue, clock):
    clock.now = at(16, 50)
    left = [await queue.issue("property"), await queue.issue("social")]
    clock.now = at(8, 30, day=1, month=12)
    fresh = await queue.issue("property")
    assert fresh.ticket.number == "A001"
    for view in left:
        old = await queue.ticket(view.ticket.id)
        assert old.ticket.status is Status.CANCELLED
        assert old.ticket.closed_by == "day_end"
        assert old.ticket.day == "2026-11-30"
        assert old.ticket.issued_at == at(16, 50)
        assert old.ticket.number == view.ticket.number
    # yesterday's A001 is never called today
    assert await numbers_called(queue, "4") == ["A001"]
    assert (await queue.call_next("4")) is None
    cancelled = [e for e in await queue.events_after(0) if e.type == "ticket.cancelled"]
    assert {e.data["number"] for e in cancelled} == {"A001", "C001"}
    assert all(e.data["reason"] == "day_end" for e in cancelled)


async def test_ticket_still_at_a_window_at_midnight_is_finished_and_window_freed(queue, clock):
    clock.now = at(17, 0)
    c1 = await queue.issue("social")
    await queue.call_next("3")
    clock.now = at(9, 0, day=1, month=12)
    window = await queue.window("3")
    assert window.record.current is None
    old = await queue.ticket(c1.ticket.id)
    assert old.ticket.status is Status.DONE
    assert old.ticket.closed_by == "day_end"
    assert (await queue.close("3")).record.state is WindowState.CLOSED


async def test_rollover_happens_on_the_first_action_after_a_restart(hall_config, clock):
    async with hall_open(hall_config, clock) as q:
        waiting = await q.issue("business")
        await q.issue("property")
        await q.call_next("4")
    clock.now = at(8, 0, day=1, month=12)
    async with hall_open(hall_config, clock) as q:
        assert (await q.ticket(waiting.ticket.id)).ticket.status is Status.CANCELLED
        assert (await q.window("4")).current is None
        assert await q.call_next("1") is None
    stored = dump(hall_config, ("tickets", "windows"))
    assert sorted(t["status"] for t in stored["tickets"]) == ["cancelled", "done"]
    assert all(w["current"] is None for w in stored["windows"])


async def test_rollover_keeps_done_and_no_show_history_untouched(queue, clock):
    await queue.issue("property")
    await queue.call_next("4")
    await queue.complete("4")
    await queue.issue("property")
    await queue.call_next("4")
    await queue.no_show("4")
    before = tickets_stored(queue.config)
    clock.now = at(9, 0, day=1, month=12)
    await queue.issue("property")
    after = tickets_stored(queue.config)
    assert after[:2] == before


async def test_a_week_later_numbers_still_start_at_A001(queue, clock):
    await queue.issue("property")
    clock.advance(hours=24 * 7)
    assert (await queue.issue("property")).ticket.number == "A001"


# -- refused actions change nothing --------------------------------------------------------

REFUSED = [
    ("issue an unknown service", lambda q, t: q.issue("passport"), Invalid,
     "unknown service 'passport'"),
    ("call at a closed window", lambda q, t: q.call_next("9"), Conflict, "window 9 is closed"),
    ("call at an unknown window", lambda q, t: q.call_next("42"), NotFound, "unknown window '42'"),
    ("recall at an idle window", lambda q, t: q.recall("3"), Conflict, "no current ticket"),
    ("start at an idle window", lambda q, t: q.start("2"), Conflict, "no current ticket"),
    ("complete at an idle window", lambda q, t: q.complete("3"), Conflict, "no current ticket"),
    ("no-show at an idle window", lambda q, t: q.no_show("3"), Conflict, "no current ticket"),
    ("recall once serving", lambda q, t: q.recall("1"), Conflict, "already being served"),
    ("no-show once serving", lambda q, t: q.no_show("1"), Conflict, "being served"),
    ("transfer nowhere", lambda q, t: q.transfer("1"), Invalid, "name a service or a window"),
    ("transfer to unknown service", lambda q, t: q.transfer("1", service="x"), Invalid,
     "unknown service"),
    ("transfer to unknown window", lambda q, t: q.transfer("1", to_window="8"), Invalid,
     "unknown window"),
    ("transfer from idle window", lambda q, t: q.transfer("3", service="social"), Conflict,
     "no current"),
    ("cancel a served ticket", lambda q, t: q.cancel(t["serving"]), Conflict,
     "only a waiting ticket"),
    ("cancel an unknown ticket", lambda q, t: q.cancel("zzz"), NotFound, "no ticket 'zzz'"),
    ("readmit a waiting ticket", lambda q, t: q.readmit(t["waiting"]), Conflict, "only a no-show"),
    ("readmit a stale no-show", lambda q, t: q.readmit(t["stale"]), Conflict, "30 minutes"),
    ("close with a visitor", lambda q, t: q.close("1"), Conflict, "still has"),
    ("pause a closed window", lambda q, t: q.pause("9"), Conflict, "cannot pause"),
    ("resume a closed window", lambda q, t: q.resume("9"), Conflict, "supervisor opens it"),
]


@pytest.mark.parametrize("action, error, message", [r[1:] for r in REFUSED],
                         ids=[r[0] for r in REFUSED])
async def test_refused_action_leaves_the_hall_exactly_as_it_was(queue, clock, action, error,
                                                               message):
    stale = await queue.issue("property")
    await queue.call_next("4")
    await queue.no_show("4")
    clock.advance(minutes=45)
    serving = await queue.issue("property")
    waiting = await queue.issue("property")
    await queue.issue("business", priority=True)
    await queue.call_next("1")                             # B001 (priority)
    await queue.start("1")
    t = {"stale": stale.ticket.id, "serving": (await queue.window("1")).current.id,
         "waiting": waiting.ticket.id}
    assert serving.ticket.id != t["serving"]
    before = snapshot(queue.config)
    with pytest.raises(error, match=message):
        await action(queue, t)
    assert snapshot(queue.config) == before


async def test_refused_action_in_the_same_commit_as_good_ones_undoes_only_itself(
        queue, store_url):
    # Concurrent requests share one transaction on SQLite (group commit), served in
    # the order sent; on PostgreSQL each is a transaction of its own, side by side.
    # Either way the refused ones must roll back alone while the others are kept.
    results = await asyncio.gather(
        queue.issue("property"), queue.issue("passport"), queue.call_next("9"),
        queue.issue("property"), queue.cancel("missing"), queue.call_next("4"),
        return_exceptions=True)
    assert isinstance(results[1], Invalid)
    assert isinstance(results[2], Conflict)
    assert isinstance(results[4], NotFound)
    issued = [results[0].ticket, results[3].ticket]
    assert sorted(t.number for t in issued) == ["A001", "A002"]
    called = results[5]
    assert called is None or called.ticket.id in {t.id for t in issued}
    if store_url is None:                                 # one batch, in the order sent
        assert [t.number for t in issued] == ["A001", "A002"]
        assert called.ticket.number == "A001"
    stored = snapshot(queue.config)
    assert len(stored["tickets"]) == 2
    assert stored["sequences"] == [{"day": "2026-11-30", "prefix": "A", "last": 2}]
    assert {w["id"]: w["state"] for w in stored["windows"]}["9"] == "closed"
