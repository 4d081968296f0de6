"""The in-process event bus: listeners hear each event as it is published, before subscribers."""

from __future__ import annotations

from kioskd.events import EventBus
from kioskd.records import Event


def event(event_id: int, type: str = "ticket.called") -> Event:
    return Event(event_id, type, 1000.0 + event_id, {"window": "5"})


async def test_a_listener_hears_each_commits_new_events_once_in_order_and_a_failing_one_harms_nobody():
    bus = EventBus()
    heard: list[list[int]] = []

    def broken(_: list[Event]) -> None:
        raise RuntimeError("a listener's bug")

    bus.listen(broken)
    bus.listen(lambda events: heard.append([e.id for e in events]))
    async with bus.subscribe() as subscription:
        bus.publish([event(1), event(2)])
        bus.publish([event(2), event(3)])             # 2 again: already published
        bus.publish([event(3)])                       # nothing new: no call
        assert heard == [[1, 2], [3]]
        assert [(await subscription.get()).id for _ in range(3)] == [1, 2, 3]
    bus.unlisten(broken)
    bus.publish([event(4)])
    assert heard == [[1, 2], [3], [4]]


def test_recent_finds_the_latest_events_of_some_types_newest_first():
    bus = EventBus()
    bus.remember([event(1), event(2, "window.changed"), event(3), event(4, "ticket.recalled")])
    assert [e.id for e in bus.recent(("ticket.called", "ticket.recalled"), 2)] == [4, 3]
    assert [e.id for e in bus.recent(("ticket.called",), 5, since_at=1002.0)] == [3]
