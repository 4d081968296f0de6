#!/usr/bin/env python3
"""Call board benchmark: 100 windows call at once; how soon is each number on its board?

    .venv/bin/python benchmarks/boards.py          (part of: make bench)

Starts `kioskd run` on a throw-away hall of 100 windows, each with a Modbus
digit display; the displays hang 25 to a bus on 4 RS-485 buses at 9600 baud,
emulated in this process on pseudo-terminals whose wire model hands each
byte over when it would have arrived at 9600 baud. Once every board is
ready and blank and 100 tickets wait, 100 clerks (one thread and one HTTP
connection each) press call-next at the same moment.

For each call: from call-next's HTTP answer to the moment the last byte of the
frame that puts its number on its board was on the wire. A bus carries one
frame at a time, so most of that is waiting for the bus: the floor of each
call is what a driver with no overhead at all would achieve with the same
answers at the same times, each bus sending back to back (request, reply and
the 3.5-character gaps between, in the order the frames went out). The
overhead (measured minus floor) is what kioskd adds. Figures are printed, not
asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_daemon import ApiClient, Daemon, free_port
from bench_hall import one_service_hall
from bench_results import record
from bench_stats import percentile

from drivers.modbus_digits.emulator import BusEmulator
from drivers.serialbus import SerialLine

BAUD = 9600
WIDTH = 4
REQUEST_BYTES = 9 + 2 * WIDTH      # FC16: unit, function, address, count, byte count, data, CRC
REPLY_BYTES = 8                    # FC16 reply: unit, function, address, count, CRC


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def hall_toml(port: int, windows: int, buses: int, directory: Path) -> str:
    per_bus = -(-windows // buses)
    lines = one_service_hall(port, windows, lambda n: [f'board = "board_{n}"'])
    for n in range(1, windows + 1):
        bus, unit = divmod(n - 1, per_bus)
        lines += [f"[devices.board_{n}]", 'driver = "modbus_digits"',
                  f'port = "{directory / f"tty-bus{bus}"}"', f"baudrate = {BAUD}",
                  f"unit = {unit + 1}", f"width = {WIDTH}", "timeout = 5",
                  "poll_interval = 600", ""]          # no status polls during the burst
    return "\n".join(lines)


class Clerk(threading.Thread):
    """One window's clerk on one keep-alive connection: presses call-next once, on cue."""

    def __init__(self, port: int, window: int, start: threading.Barrier):
        super().__init__(daemon=True)
        self.api = ApiClient(port, timeout=60)
        self.request = self.api.request
        self.window = window
        self.start_line = start
        self.number = ""
        self.answered = 0.0

    def run(self) -> None:
        self.request("GET", "/livez")                      # connect before the cue
        self.start_line.wait()
        self.number = self.request("POST", f"/api/v1/windows/{self.window}/call-next")["number"]
        self.answered = time.monotonic()


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    return (f"p50 {percentile(ordered, 50) * 1000:7.1f} ms   p99 "
            f"{percentile(ordered, 99) * 1000:7.1f} ms   max {ordered[-1] * 1000:7.1f} ms")


def figures(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"p50_ms": percentile(ordered, 50) * 1000, "p99_ms": percentile(ordered, 99) * 1000,
            "max_ms": ordered[-1] * 1000, "n": len(values)}


def floors(calls: list[tuple[float, float]], line: SerialLine) -> list[float]:
    """For frames in wire order given as (answered, wire_end): the latency each
    would have had on a bus that sends back to back with no overhead. A request
    may start a gap after the bus fell silent; the unit answers a gap after the
    request's last byte, which is where a call's latency ends."""
    request, reply, gap = line.wire_s(REQUEST_BYTES), line.wire_s(REPLY_BYTES), line.gap_s
    silent_since = float("-inf")
    result = []
    for answered, _end in calls:
        start = max(answered, silent_since + gap)
        end = start + request
        silent_since = end + gap + reply
        result.append(end - answered)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=100)
    parser.add_argument("--buses", type=int, default=4)
    parser.add_argument("--single", type=int, default=20,
                        help="calls made one at a time afterwards (boards 1..N)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kioskd-bench-boards-") as tmp:
        directory = Path(tmp)
        per_bus = -(-args.windows // args.buses)
        buses = []
        for b in range(args.buses):
            link = directory / f"tty-bus{b}"
            bus = BusEmulator(SerialLine(str(link), BAUD), link=link, name=f"bus {b}")
            bus.start()
            for unit in range(1, per_bus + 1):
                bus.add_unit(unit, width=WIDTH)
            buses.append(bus)
        port = free_port()
        config = directory / "devices.toml"
        config.write_text(hall_toml(port, args.windows, args.buses, directory), encoding="utf-8")
        daemon = Daemon(config, port, directory / "daemon.log")
        daemon.start()
        try:
            setup = Clerk(port, 1, threading.Barrier(1))
            deadline = time.monotonic() + 60
            while any(d["state"] != "ready" for d in setup.request("GET", "/api/v1/devices")):
                if time.monotonic() > deadline:
                    raise RuntimeError("the boards did not all become ready within 60 s")
                time.sleep(0.1)
            for bus in buses:                   # each board written blank once it connected
                bus.wait_until(lambda: all(u.history for u in bus.units.values()), 60,
                               "every board written blank")
            for _ in range(args.windows):
                setup.request("POST", "/api/v1/tickets", {"service": "property"})
            cue = threading.Barrier(args.windows)
            clerks = [Clerk(port, n, cue) for n in range(1, args.windows + 1)]
            for clerk in clerks:
                clerk.start()
            for clerk in clerks:
                clerk.join(60)

            def on_board(clerk: Clerk):
                bus, unit = divmod(clerk.window - 1, per_bus)
                shown = [s for s in buses[bus].unit(unit + 1).history
                         if s.text.strip() == clerk.number]
                return shown[0].wire_end if shown else None

            for bus in buses:
                bus.wait_until(lambda: all(on_board(c) for c in clerks), 60,
                               "every called number on its board")
            latency, floor, overhead = [], [], []
            for b in range(args.buses):
                mine = sorted(((c.answered, on_board(c)) for c in clerks
                               if (c.window - 1) // per_bus == b), key=lambda pair: pair[1])
                for (answered, end), best in zip(mine, floors(mine, buses[b].line)):
                    latency.append(end - answered)
                    floor.append(best)
                    overhead.append(end - answered - best)
            answers = sorted(c.answered for c in clerks)
            spacing = []                     # between one burst write and the next on a bus
            for b in range(args.buses):
                ends = sorted(on_board(c) for c in clerks if (c.window - 1) // per_bus == b)
                spacing += [later - earlier for earlier, later in zip(ends, ends[1:])]

            # one call at a time: the bus is idle when each call is answered
            setup = Clerk(port, 1, threading.Barrier(1))    # the first one's connection idled out
            for _ in range(args.single):
                setup.request("POST", "/api/v1/tickets", {"service": "property"})
            single, single_floor = [], []
            for n in range(1, args.single + 1):
                time.sleep(0.1)         # the last write's reply off the (modelled) wire: idle
                clerk = Clerk(port, n, threading.Barrier(1))
                clerk.run()
                buses[0].wait_until(lambda: on_board(clerk) is not None, 30,
                                    f"window {n}'s board")
                single.append(on_board(clerk) - clerk.answered)
                single_floor.append(floors([(clerk.answered, 0.0)], buses[0].line)[0])
                clerk.api.http.close()
        finally:
            code, _ = daemon.stop()
            for bus in buses:
                bus.close()

    line = SerialLine("x", BAUD)
    frame = line.wire_s(REQUEST_BYTES + REPLY_BYTES) + 2 * line.gap_s
    print(f"\nkioskd board benchmark: {args.windows} windows call at once, {args.buses} "
          f"RS-485 buses at {BAUD} baud, {per_bus} Modbus displays on each")
    print(f"  one board write holds the bus        {frame * 1000:7.1f} ms  (FC16 {REQUEST_BYTES} "
          f"bytes + reply {REPLY_BYTES} + two 3.5-character gaps)")
    print(f"  call-next answers spread over        {(answers[-1] - answers[0]) * 1000:7.1f} ms")
    print(f"  answer → last byte on the wire       {ms(latency)}")
    print(f"  floor (bus busy back to back)        {ms(floor)}")
    print(f"  overhead (measured − floor)          {ms(overhead)}")
    print(f"  one write to the next on a bus       {ms(spacing)}")
    print(f"  one call at a time, answer → wire    {ms(single)}")
    print(f"  ... floor (the request on the wire)  {ms(single_floor)}")
    print(f"  ... overhead                         "
          f"{ms([a - b for a, b in zip(single, single_floor)])}")
    if code == 0:
        record("boards", {"windows": args.windows, "buses": args.buses, "baud": BAUD,
                          "frame_ms": frame * 1000,
                          "burst": figures(latency), "burst_floor": figures(floor),
                          "burst_overhead": figures(overhead),
                          "single": figures(single), "single_floor": figures(single_floor)})
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
