#!/usr/bin/env python3
"""Event stream fan-out: a window calls; how soon do 500 hall displays all have it?

    .venv/bin/python benchmarks/fanout.py [--displays 500] [--calls 100]   (part of: make bench)

Starts `kioskd run` on a throw-away hall and opens `--displays` event streams
(GET /api/v1/events, one TCP connection each, as a display page's EventSource
does) from `--procs` subscriber processes of their own, each an asyncio loop of
raw HTTP/1.1 protocols that only look for `event: ticket.called` in what
arrives. Then a clerk calls, one call at a time: for each call, from just before
call-next is sent to the moment the LAST display's socket handed over the
`ticket.called` event (time.monotonic: CLOCK_MONOTONIC, one clock for every
process), and to the first. The next call waits until every display had the last
one, then a short random pause. The same runs first with one display: what a
single stream takes, the floor the 500 are compared with.

The clients must not be what is measured. Checked, and printed: the subscribers'
CPU per call (all processes together; the most they can add to a call's delay
is their share of it), and each subscriber loop's lag (how late a 5 ms timer
fires while the events pour in: how long an arrival can wait to be read).
Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import sys
import tempfile
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path

from bench_daemon import ApiClient, Daemon, free_port
from bench_hall import one_service_hall
from bench_results import record
from bench_stats import percentile

MARK = b"event: ticket.called"
LAG_TICK = 0.005               # the subscriber loops' lag probe


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- a subscriber process -----------------------------------------------------------------------

class Stream(asyncio.Protocol):
    """One display's event stream: when each `ticket.called` arrived."""

    def __init__(self, request: bytes, on_status, on_called):
        self.request = request
        self.on_status = on_status
        self.on_called = on_called
        self.head = b""
        self.tail = b""
        self.times: list[float] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self.head is not None:               # the answer's status line first
            self.head += data
            if b"\r\n" not in self.head:
                return
            status_line = self.head.split(b"\r\n", 1)[0]
            data, self.head = self.head, None
            self.on_status(status_line)
        seen = (self.tail + data).count(MARK)
        self.tail = data[-(len(MARK) - 1):]
        for _ in range(seen):
            self.times.append(now)
            self.on_called(len(self.times))

    def connection_lost(self, exc) -> None:
        self.transport = None


def subscriber(port: int, count: int, pipe: Connection) -> None:
    """Open `count` event streams and answer the parent over `pipe` (runs in its own process)."""
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_subscribe(port, count, pipe))


async def _subscribe(port: int, count: int, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    request = (f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n").encode()
    answered: list[bytes] = []
    reached: dict[int, int] = {}
    lags: list[float] = []
    done = asyncio.Event()
    counting = [False]

    def on_status(line: bytes) -> None:
        answered.append(line)
        if len(answered) == count:
            bad = [a.decode(errors="replace") for a in answered if b" 200 " not in a + b" "]
            pipe.send(("ready", bad[:3]))

    def on_called(k: int) -> None:
        reached[k] = reached.get(k, 0) + 1
        if reached[k] == count:
            pipe.send(("called", k))

    streams = [Stream(request, on_status, on_called) for _ in range(count)]
    for start in range(0, count, 50):          # a few at a time: no SYN flood
        await asyncio.gather(*(loop.create_connection(lambda s=s: s, "127.0.0.1", port)
                               for s in streams[start:start + 50]))

    async def probe() -> None:
        while not done.is_set():
            asked = time.monotonic()
            await asyncio.sleep(LAG_TICK)
            if counting[0]:
                lags.append(time.monotonic() - asked - LAG_TICK)

    def on_message() -> None:
        message = pipe.recv()
        if message == "count":
            counting[0] = True
            pipe.send(("cpu", time.process_time()))
        elif message == "stop":
            pipe.send(("result", {"cpu": time.process_time(),
                                  "times": [s.times for s in streams], "lags": lags,
                                  "lost": sum(s.transport is None for s in streams)}))
            done.set()

    loop.add_reader(pipe.fileno(), on_message)
    prober = asyncio.create_task(probe())
    await done.wait()
    loop.remove_reader(pipe.fileno())
    await prober
    for s in streams:
        if s.transport is not None:
            s.transport.close()


# -- the clerk ----------------------------------------------------------------------------------

class Displays:
    """`count` event streams spread over `procs` subscriber processes."""

    def __init__(self, port: int, count: int, procs: int):
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs = []
        for i in range(min(procs, count)):
            share = count // procs + (1 if i < count % procs else 0)
            mine, theirs = context.Pipe()
            proc = context.Process(target=subscriber, args=(port, share, theirs), daemon=True)
            proc.start()
            self.pipes.append(mine)
            self.procs.append(proc)
        self.count = count

    def expect(self, kind: str, timeout: float, what: str) -> list:
        """One message of `kind` from every subscriber."""
        got: dict[Connection, object] = {}
        deadline = time.monotonic() + timeout
        while len(got) < len(self.pipes):
            left = deadline - time.monotonic()
            ready = wait([p for p in self.pipes if p not in got], max(0.0, left))
            if not ready:
                if any(not proc.is_alive() for proc in self.procs):
                    raise RuntimeError(f"a subscriber process died waiting for {what}")
                raise RuntimeError(f"waited {timeout:.0f} s for {what}")
            for pipe in ready:
                message = pipe.recv()
                if message[0] != kind:
                    raise RuntimeError(f"a subscriber said {message!r} waiting for {what}")
                got[pipe] = message[1]
        return [got[p] for p in self.pipes]

    def close(self) -> None:
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()


def run_calls(api: ApiClient, daemon: Daemon, port: int, displays: int, procs: int,
              calls: int, window: str) -> dict:
    """`calls` call-nexts at `window` with `displays` streams open: per call the delay
    to the first and the last display (seconds), and what the clients cost."""
    subs = Displays(port, displays, procs)
    try:
        bad = [b for answer in subs.expect("ready", 60, f"{displays} streams to open")
               for b in answer]
        if bad:
            raise RuntimeError(f"GET /api/v1/events answered {bad[0]!r}")
        for pipe in subs.pipes:
            pipe.send("count")
        cpu0 = sum(subs.expect("cpu", 10, "the subscribers' CPU time"))
        daemon0 = daemon.cpu()
        rng = random.Random(5)
        sent, answered = [], []
        for k in range(1, calls + 1):
            sent.append(time.monotonic())
            ticket = api.request("POST", f"/api/v1/windows/{window}/call-next")
            answered.append(time.monotonic())
            if not ticket:
                raise RuntimeError(f"window {window} found nothing to call")
            subs.expect("called", 30, f"call {k} to reach every display")
            time.sleep(0.02 + 0.04 * rng.random())
        daemon1 = daemon.cpu()
        for pipe in subs.pipes:
            pipe.send("stop")
        results = subs.expect("result", 30, "the subscribers' figures")
    finally:
        subs.close()
    times = [t for r in results for t in r["times"]]
    if any(len(t) != calls for t in times):
        raise RuntimeError("a display saw a different number of calls than were made")
    last = [max(t[k] for t in times) - sent[k] for k in range(calls)]
    first = [min(t[k] for t in times) - sent[k] for k in range(calls)]
    client_cpu = sum(r["cpu"] for r in results) - cpu0
    lags = sorted(lag for r in results for lag in r["lags"])
    return {"last": last, "first": first,
            "answer": [a - s for a, s in zip(answered, sent)],
            "client_cpu_per_call": client_cpu / calls,
            "lag_p99": percentile(lags, 99), "lag_max": lags[-1] if lags else 0.0,
            "daemon_cpu_per_call": ((daemon1.total - daemon0.total) / calls
                                    if daemon0 and daemon1 else None),
            "lost": sum(r["lost"] for r in results)}


def figures(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"p50_ms": percentile(ordered, 50) * 1000, "p99_ms": percentile(ordered, 99) * 1000,
            "max_ms": ordered[-1] * 1000, "n": len(values)}


def ms(values: list[float]) -> str:
    f = figures(values)
    return f"p50 {f['p50_ms']:7.1f} ms   p99 {f['p99_ms']:7.1f} ms   max {f['max_ms']:7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--displays", type=int, default=500)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--single-calls", type=int, default=50,
                        help="calls with one display first (the floor)")
    parser.add_argument("--procs", type=int, default=4, help="subscriber processes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kioskd-bench-fanout-") as tmp:
        directory = Path(tmp)
        port = free_port()
        config = directory / "devices.toml"
        config.write_text("\n".join(one_service_hall(port, 2)), encoding="utf-8")
        daemon = Daemon(config, port, directory / "daemon.log")
        daemon.start()
        try:
            api = ApiClient(port)
            for _ in range(args.single_calls + args.calls + 1):
                api.request("POST", "/api/v1/tickets", {"service": "property"})
            log(f"one display, {args.single_calls} calls")
            one = run_calls(api, daemon, port, 1, 1, args.single_calls, "1")
            log(f"{args.displays} displays in {args.procs} processes, {args.calls} calls")
            api = ApiClient(port)                 # the first connection may have idled out
            many = run_calls(api, daemon, port, args.displays, args.procs, args.calls, "2")
        finally:
            code, _ = daemon.stop()
            if code != 0:
                log("daemon output:\n" + daemon.log_tail())

    print("\nkioskd event fan-out benchmark: call-next → ticket.called on every display's "
          "event stream, one call at a time")
    print(f"  1 display ({args.single_calls} calls)")
    print(f"    call → the display           {ms(one['last'])}")
    print(f"    call-next answered           {ms(one['answer'])}")
    print(f"  {args.displays} displays ({args.calls} calls, {args.procs} subscriber processes)")
    print(f"    call → the last display      {ms(many['last'])}")
    print(f"    call → the first display     {ms(many['first'])}")
    print(f"    call-next answered           {ms(many['answer'])}")
    if many["daemon_cpu_per_call"] is not None:
        print(f"    daemon CPU per call          {many['daemon_cpu_per_call'] * 1000:7.1f} ms "
              f"(1 display: {one['daemon_cpu_per_call'] * 1000:.1f} ms)")
    share = many["client_cpu_per_call"] * 1000 / figures(many["last"])["p50_ms"]
    print(f"  the clients: {many['client_cpu_per_call'] * 1000:.1f} ms CPU per call, all "
          f"subscribers together ({100 * share:.0f}% "
          f"of the p50 to the last display); their loops' lag p99 "
          f"{many['lag_p99'] * 1000:.1f} ms, max {many['lag_max'] * 1000:.1f} ms; "
          f"streams lost: {many['lost']}")
    if code == 0:
        record("fanout", {"displays": args.displays, "calls": args.calls, "procs": args.procs,
                          "last": figures(many["last"]), "first": figures(many["first"]),
                          "answer": figures(many["answer"]),
                          "one_display": figures(one["last"]),
                          "client_cpu_per_call_ms": many["client_cpu_per_call"] * 1000,
                          "client_lag_p99_ms": many["lag_p99"] * 1000,
                          "client_lag_max_ms": many["lag_max"] * 1000,
                          "daemon_cpu_per_call_ms": None if many["daemon_cpu_per_call"] is None
                          else many["daemon_cpu_per_call"] * 1000})
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
