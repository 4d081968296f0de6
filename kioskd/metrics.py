"""Prometheus metrics (`GET /metrics`): what the hall did since the daemon started, how it stands.

Counters and histograms follow the queue's events as each commit publishes
them (`EventBus.listen`): an increment per event, nothing on the disk, so an
issue or a call pays next to nothing for them. How the hall stands — device
states, the voice's queues, event-stream clients, the lines and the windows —
is read when Prometheus asks, by a collector of the same registry.

Each application has its own registry, never the process's default one (tests
build many applications in one process). Counters start from zero with the
process, as Prometheus expects: `rate()` and `increase()` read a restart as a
reset. They are deliberately not seeded with the day's counts from the store:
a counter that came back at the day's total would be read either as a reset
(after days of running) or as the whole day happening again in one scrape;
the day's totals are what `/api/v1/stats` answers. A ticket's wait is timed
from its issue to its first call when both happen in this run: one still in
line across a restart is counted when called, its wait is not observed.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from typing import Any

from prometheus_client import (CollectorRegistry, Counter, Histogram, ProcessCollector,
                               disable_created_metrics)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from drivers.base import State

from .aio import within
from .config import Config
from .devices import Supervisor
from .events import EventBus
from .queue import Queue
from .records import Event, WindowState
from .store import StoreClosed, StoreUnavailable, Tx
from .voice import Voices

log = logging.getLogger("kioskd.metrics")

# Each counter's `_created` twin doubles a scrape's lines (and the time the loop spends
# writing them); no hall dashboard reads them. This switch is the client's, process-wide.
disable_created_metrics()

MINUTE = 60.0
# A hall's waits run from a minute to a morning.
WAIT_BUCKETS = tuple(m * MINUTE for m in (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240))
# call-next answers in milliseconds (the aim is a p99 under 20 ms)
CALL_BUCKETS = (.001, .002, .005, .01, .015, .02, .03, .05, .1, .25, .5, 1.0)
# from a call to its first word: synthesis, then any announcement ahead of it (60 s: dropped)
SAY_BUCKETS = (.1, .25, .5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 30.0, 60.0)
ENDS = {"ticket.done", "ticket.no_show", "ticket.cancelled"}
SAID_KINDS = ("said", "merged", "dropped")          # an announcer's counts
LINES_READ_S = 2.0     # a scrape waits this long for the lines, then answers without them


class Metrics:
    """One application's registry, fed by its bus and read live at each scrape."""

    def __init__(self, config: Config, queue: Queue, bus: EventBus, devices: Supervisor,
                 voices: Voices):
        self.config = config
        self.queue = queue
        self.bus = bus
        self.devices = devices
        self.voices = voices
        self.registry = CollectorRegistry()
        registry = self.registry
        self.issued = Counter("kioskd_tickets_issued", "Tickets issued",
                              ["service", "priority"], registry=registry)
        self.called = Counter("kioskd_tickets_called", "Calls made (a ticket called again "
                              "after a transfer or a re-admission counts again)",
                              ["service", "window"], registry=registry)
        self.recalled = Counter("kioskd_tickets_recalled", "Recalls of the ticket at a window",
                                ["window"], registry=registry)
        self.finished = Counter("kioskd_tickets_finished", "Tickets that left a line or a "
                                "window, by outcome: done, no_show, cancelled, transferred, "
                                "day_end (closed by the day's end)", ["service", "outcome"],
                                registry=registry)
        self.print_failures = Counter("kioskd_print_failures", "Tickets a printer did not "
                                      "print (issue or reprint)", ["device"], registry=registry)
        self.refused = Counter("kioskd_issues_refused", "Issues refused by [limits] (429), "
                               "by the limit that was reached", ["limit"], registry=registry)
        for limit in ("terminal", "address"):
            self.refused.labels(limit)
        self.wait = Histogram("kioskd_ticket_wait_seconds", "From issue to first call",
                              ["service"], buckets=WAIT_BUCKETS, registry=registry)
        self.call_next = Histogram("kioskd_call_next_duration_seconds", "POST call-next, from "
                                   "the request to the committed answer (200 or 204)",
                                   buckets=CALL_BUCKETS, registry=registry)
        self.said = Histogram("kioskd_announcement_latency_seconds", "From a call (recall, "
                              "transfer) to the start of its announcement", ["device"],
                              buckets=SAY_BUCKETS, registry=registry)
        for service in config.services:            # every series there from the start
            for priority in ("false", "true"):
                self.issued.labels(service.id, priority)
            for outcome in ("done", "no_show", "cancelled", "transferred", "day_end"):
                self.finished.labels(service.id, outcome)
            self.wait.labels(service.id)
        for window in config.windows:
            self.recalled.labels(window.id)
            for service_id in window.services:
                self.called.labels(service_id, window.id)
        for device in config.devices.values():
            if device.driver == "terminal":
                for key in ("printer", "fallback_printer"):
                    if printer := device.options.get(key):
                        self.print_failures.labels(printer)
            elif device.driver == "voice" and device.enabled:
                self.said.labels(device.id)
        registry.register(_Now(self))
        ProcessCollector(registry=registry)     # process_*: memory, CPU, start time, fds
        self._window_ids = {w.id for w in config.windows}
        # tickets waiting per service and windows per state, read at each scrape
        self.lines: tuple[dict[str, int], dict[str, int]] | None = None
        self._unread = False                    # the last scrape could not read them
        self._in_line: dict[str, float] = {}    # ticket id → issue time, until its first call
        bus.listen(self._heard)
        voices.on_said.append(self._announced)

    async def scrape(self, accept: str | None) -> tuple[bytes, str]:
        """The registry in the format Prometheus asked for (`Accept`), and its type."""
        try:
            self.lines = await within(self.queue.store.read(self._read_lines), LINES_READ_S)
            self._unread = False
        except (TimeoutError, StoreClosed, StoreUnavailable, sqlite3.Error) as exc:
            if not self._unread:
                log.warning("metrics: the lines could not be read (%s); scrapes answer "
                            "without them until they can", str(exc) or "no answer in time")
            self._unread = True
            self.lines = None
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type

    def _read_lines(self, tx: Tx) -> tuple[dict[str, int], dict[str, int]]:
        """Tickets waiting per service, and the hall's windows per state."""
        states: dict[str, int] = {}
        for record in tx.windows():
            if record.id in self._window_ids:
                states[record.state.value] = states.get(record.state.value, 0) + 1
        return tx.waiting_counts(), states

    def _heard(self, events: list[Event]) -> None:
        for event in events:
            data = event.data
            if event.type == "ticket.issued":
                self._in_line[data["ticket"]] = event.at    # whoever issued it: its wait
                if event.local:
                    self.issued.labels(data["service"],
                                       "true" if data["priority"] else "false").inc()
            elif event.type == "ticket.called":
                issued_at = self._in_line.pop(data["ticket"], None)
                if event.local:
                    self.called.labels(data["service"], data["window"]).inc()
                    if issued_at is not None:
                        self.wait.labels(data["service"]).observe(max(event.at - issued_at, 0.0))
            elif event.type in ENDS:
                self._in_line.pop(data["ticket"], None)
                if event.local:
                    outcome = ("day_end" if data.get("reason") == "day_end"
                               else event.type.removeprefix("ticket."))
                    self.finished.labels(data["service"], outcome).inc()
            elif not event.local:        # another daemon's doing: its own counters count it
                continue
            elif event.type == "ticket.recalled":
                self.recalled.labels(data["window"]).inc()
            elif event.type == "ticket.transferred":
                self.finished.labels(data["from_service"], "transferred").inc()
            elif event.type == "ticket.printed" and data.get("print") == "failed":
                self.print_failures.labels(data["device"]).inc()

    def _announced(self, device_id: str, said: dict[str, Any]) -> None:
        if said["kind"] != "test":
            self.said.labels(device_id).observe(max(said["waited_s"], 0.0))


class _Now:
    """The collector of how the hall stands at the scrape."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        states = GaugeMetricFamily("kioskd_device_state", "1 for the device's current state",
                                   labels=["device", "driver", "state"])
        for device_id, driver, now in m.devices.states():
            for state in State:
                states.add_metric([device_id, driver, state.value], float(state is now))
        yield states

        queued = GaugeMetricFamily("kioskd_announcements_queued", "Announcements waiting to "
                                   "be said (not the one being said)", labels=["device"])
        said = CounterMetricFamily("kioskd_announcements", "Announcements by outcome: said, "
                                   "merged (the same call again), dropped (too late)",
                                   labels=["device", "outcome"])
        for device_id, announcer in m.voices.announcers.items():
            queued.add_metric([device_id], len(announcer.queue))
            for outcome in SAID_KINDS:
                said.add_metric([device_id, outcome], announcer.counts[outcome])
        yield queued
        yield said

        yield GaugeMetricFamily("kioskd_event_stream_clients",
                                "Clients reading GET /api/v1/events", value=m.bus.subscriber_count)

        if m.lines is not None:
            waiting, windows = m.lines
            line = GaugeMetricFamily("kioskd_tickets_waiting", "Tickets in line",
                                     labels=["service"])
            for service in m.config.services:
                line.add_metric([service.id], waiting.get(service.id, 0))
            yield line
            states = GaugeMetricFamily("kioskd_windows", "Windows by state",
                                       labels=["state"])
            for state in WindowState:
                states.add_metric([state.value], windows.get(state.value, 0))
            yield states
