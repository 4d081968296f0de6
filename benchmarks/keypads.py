#!/usr/bin/env python3
"""Keypad benchmark: a clerk presses call-next on a caller keypad; how soon is the number on its display?

    .venv/bin/python benchmarks/keypads.py          (part of: make bench)

Starts `kioskd run` on a throw-away hall of 20 windows, each with a caller
keypad on one RS-485 bus at 9600 baud, emulated in this process on a
pseudo-terminal whose wire model hands each byte over when it would have
arrived. The keypads send `AA | address | key | xor8 | 55`; kioskd answers
`AA | address | 31 | length | text | xor8 | 55` (the number called, 10 bytes).

- One press at a time: from the key frame's last byte on the wire to the
  answer's last byte back on the keypad, against the floor of the two frames'
  wire time (what a daemon taking no time at all would achieve).
- A burst: all 20 keypads press at once (their frames back to back on the bus):
  until the last display shows its number.
- A polled bus: the same 20 keypads speak only when asked; kioskd polls each in
  turn and each answers its key or `00`: polls a second, and a press (from the
  moment it is pressed: it waits for its keypad's turn) to the display.
- A flood: the bus at 115200 baud carries nothing but garbage (a third of it
  frame headers) while a clerk calls through the HTTP API: call-next's
  latency with and without the flood, and the daemon's CPU while it pours.

Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_daemon import ApiClient, Daemon, free_port
from bench_hall import one_service_hall
from bench_results import record
from bench_stats import percentile

from drivers.keypad.emulator import EmulatedKeypads
from kioskd.config import loads_config

KEY_BYTES, ANSWER_BYTES = 5, 10


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def hall_toml(port: int, windows: int, tty: Path, baudrate: int, polled: bool) -> str:
    lines = one_service_hall(port, windows)
    lines += ["[devices.keypads]", 'driver = "keypad"', f'port = "{tty}"',
              f"baudrate = {baudrate}", "debounce_s = 0.8", "poll_interval = 1", "",
              "[devices.keypads.frame]",
              'layout = ["header", "address", "key", "checksum", "trailer"]',
              'header = "AA"', 'checksum = "xor8"', 'trailer = "55"', "",
              "[devices.keypads.answer]",
              'layout = ["header", "address", "command", "length", "text", "checksum", '
              '"trailer"]',
              'header = "AA"', 'command = "31"', 'beep = "32"', 'checksum = "xor8"',
              'trailer = "55"', "",
              *(["[devices.keypads.poll]", 'command = "50"', 'idle_key = "00"', ""]
                if polled else []),
              "[devices.keypads.keys]", '"01" = "call-next"', "",
              "[devices.keypads.keypads]"]
    lines += [f'{n} = "{n}"' for n in range(1, windows + 1)]
    return "\n".join(lines) + "\n"


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    return (f"p50 {percentile(ordered, 50) * 1000:7.1f} ms   p99 "
            f"{percentile(ordered, 99) * 1000:7.1f} ms   max {ordered[-1] * 1000:7.1f} ms")


class Hall:
    """The daemon and its emulated keypad bus, at one baudrate."""

    def __init__(self, directory: Path, windows: int, baudrate: int, polled: bool = False):
        self.windows = windows
        self.port = free_port()
        tty = directory / "tty-keypads"
        config = directory / "devices.toml"
        config.write_text(hall_toml(self.port, windows, tty, baudrate, polled), encoding="utf-8")
        settings = loads_config(config.read_text(encoding="utf-8"),
                                base_dir=directory).devices["keypads"].settings
        self.pads = EmulatedKeypads("keypads", settings)
        self.line = settings.line
        self.pads.start()
        self.daemon = Daemon(config, self.port, directory / "daemon.log")
        self.daemon.start()
        self.api = ApiClient(self.port, timeout=60)
        deadline = time.monotonic() + 60
        while self.api.request("GET", "/api/v1/devices/keypads")["state"] != "ready":
            if time.monotonic() > deadline:
                raise RuntimeError("the keypads did not become ready within 60 s")
            time.sleep(0.05)

    def issue(self, count: int) -> None:
        for _ in range(count):
            self.api.request("POST", "/api/v1/tickets", {"service": "property"})

    def shown(self, address: int, after: int) -> float | None:
        """When keypad `address` showed its answer number `after` (0-based), if it has."""
        answers = self.pads.keypad(address).answers
        return answers[after][1] if len(answers) > after else None

    def close(self) -> None:
        self.daemon.stop()
        self.pads.close()


def figures(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"p50_ms": percentile(ordered, 50) * 1000, "p99_ms": percentile(ordered, 99) * 1000,
            "max_ms": ordered[-1] * 1000, "n": len(values)}


def single_presses(hall: Hall, count: int) -> list[float]:
    latencies = []
    rng = random.Random(3)
    for n in range(count):
        address = n % hall.windows + 1
        before = len(hall.pads.keypad(address).answers)
        hall.issue(1)
        # past the keypad's debounce_s, and at a random moment of a polled bus's round
        time.sleep(0.85 + rng.random() * 0.5)
        pressed = hall.pads.press(address, "01")
        hall.pads.wait_until(lambda: hall.shown(address, before) is not None, 30,
                             f"keypad {address}'s answer")
        latencies.append(hall.shown(address, before) - pressed)
    return latencies


def burst(hall: Hall) -> tuple[float, float]:
    """Every keypad presses at once; (until the last display, the floor)."""
    before = {a: len(hall.pads.keypad(a).answers) for a in range(1, hall.windows + 1)}
    hall.issue(hall.windows)
    time.sleep(0.85)
    frames = b"".join(hall.pads.frame(a, "01") for a in range(1, hall.windows + 1))
    sent = hall.pads.send(frames)
    hall.pads.wait_until(lambda: all(hall.shown(a, before[a]) is not None for a in before), 30,
                         "every keypad's answer")
    last = max(hall.shown(a, before[a]) for a in before)
    # floor: the last key frame arrives at `sent`; then all answers back to back
    floor = hall.line.wire_s(ANSWER_BYTES * hall.windows)
    return last - sent, floor


def calls(api: ApiClient, count: int) -> list[float]:
    api.request("POST", "/api/v1/windows/1/pause")
    api.request("POST", "/api/v1/windows/1/resume")
    out = []
    for _ in range(count):
        api.request("POST", "/api/v1/tickets", {"service": "property"})
        start = time.perf_counter()
        api.request("POST", "/api/v1/windows/1/call-next")
        out.append(time.perf_counter() - start)
    return out


def polled(directory: Path, windows: int, presses: int) -> tuple[float, list[float]]:
    """(polls a second, press → display latencies) on a polled bus."""
    hall = Hall(directory / "polled", windows, 9600, polled=True)
    try:
        def polls() -> int:          # a new connection: an idle one is closed after 5 s
            detail = ApiClient(hall.port).request("GET", "/api/v1/devices/keypads")["detail"]
            return detail["counts"].get("polls", 0)
        time.sleep(3)                        # start-up's own work over (it halves the rate)
        first, started = polls(), time.monotonic()
        time.sleep(5)
        rate = (polls() - first) / (time.monotonic() - started)
        hall.api = ApiClient(hall.port, timeout=60)
        return rate, single_presses(hall, presses)
    finally:
        hall.close()


def flood(directory: Path, seconds: float, count: int) -> tuple[list[float], list[float], float]:
    hall = Hall(directory / "flood", 4, 115200)
    try:
        quiet = calls(hall.api, count)
        rng = random.Random(8)
        noise = bytes(0xAA if i % 3 == 0 else rng.randrange(256) for i in range(4096))
        stop = threading.Event()

        def pour() -> None:
            while not stop.is_set():
                hall.pads.send(noise)        # each chunk at the wire's pace

        pourer = threading.Thread(target=pour, daemon=True)
        cpu_before, started = hall.daemon.cpu(), time.monotonic()
        pourer.start()
        flooded = calls(hall.api, count)
        while time.monotonic() - started < seconds:
            time.sleep(0.1)
        cpu_after = hall.daemon.cpu()
        stop.set()
        pourer.join(5)
        cpu = ((cpu_after.total - cpu_before.total) / (cpu_after.at - cpu_before.at)
               if cpu_before and cpu_after else float("nan"))
        rejected = hall.api.request("GET", "/api/v1/devices/keypads")["detail"]["counts"]
        log(f"flood: {rejected.get('rejected', 0)} pieces of garbage skipped")
        return quiet, flooded, cpu
    finally:
        hall.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--presses", type=int, default=40)
    parser.add_argument("--flood-s", type=float, default=5.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kioskd-bench-keypads-") as tmp:
        directory = Path(tmp)
        (directory / "flood").mkdir()
        (directory / "polled").mkdir()
        hall = Hall(directory, args.windows, 9600)
        try:
            log(f"{args.presses} presses, one at a time")
            single = single_presses(hall, args.presses)
            log(f"{args.windows} keypads at once")
            whole, floor = burst(hall)
        finally:
            hall.close()
        log("a polled bus")
        polls, asked = polled(directory, args.windows, args.presses)
        log("a flood of garbage at 115200 baud")
        quiet, flooded, cpu = flood(directory, args.flood_s, 200)

    line = hall.line
    line_floor = line.wire_s(ANSWER_BYTES)
    print(f"\nkioskd keypad benchmark: {args.windows} caller keypads on one bus at 9600 baud")
    print(f"  press → number on the keypad's display, one at a time ({args.presses}):")
    print(f"    measured   {ms(single)}")
    print(f"    floor      {line_floor * 1000:7.1f} ms   (the answer's {ANSWER_BYTES} bytes on "
          f"the wire; the key frame's {KEY_BYTES} are before the clock starts)")
    print(f"    overhead   {ms([s - line_floor for s in single])}")
    print(f"  {args.windows} keypads press at once: the last display shows its number "
          f"{whole * 1000:.0f} ms after the last key frame arrived (floor {floor * 1000:.0f} "
          f"ms: {args.windows} answers back to back), ×{whole / floor:.2f}")
    one = (line.wire_s(ANSWER_BYTES - 4) + line.wire_s(KEY_BYTES) + 2 * line.gap_s)
    print(f"  the same keypads polled in turn (each answers its key or 00): {polls:.1f} polls/s "
          f"(floor {1 / one:.1f}: poll, gap, reply, gap on the wire), a round of {args.windows} "
          f"every {args.windows / polls * 1000:.0f} ms")
    print(f"    press → number on the display   {ms(asked)}")
    print(f"  a flood of garbage at 115200 baud ({args.flood_s:g} s, a third of it headers):")
    print(f"    call-next over HTTP, quiet bus   {ms(quiet)}")
    print(f"    call-next over HTTP, flooded bus {ms(flooded)}")
    print(f"    daemon CPU while it pours: {cpu * 100:.0f}% of one core")
    record("keypads", {"windows": args.windows, "single": figures(single),
                       "single_floor_ms": line_floor * 1000,
                       "burst_ms": whole * 1000, "burst_floor_ms": floor * 1000,
                       "polls_per_s": polls, "polled": figures(asked),
                       "call_quiet": figures(quiet), "call_flooded": figures(flooded),
                       "flood_cpu_pct": cpu * 100})
    return 0


if __name__ == "__main__":
    sys.exit(main())
