"""The early warnings' look at a big hall: how long does one check take on the event loop?

    .venv/bin/python benchmarks/alerts_check.py          (part of: make bench)

150 windows, 10 services, a ticket at 140 of the windows and 500 waiting, the hall's
clock 45 minutes on (so long waits, crowding and long services are all seen). One
check reads the waiting index, the windows and the tickets at windows and reconciles
the open alerts, in one transaction on the loop; the first check raises the alerts,
the ones after find them open. Prints the median of the later checks, whole and in
the transaction. The aim: well under 100 ms, since every call waits behind it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_results import record

from kioskd.app import create_app
from kioskd.config import Alerts, Config, Hall, Service, Thresholds, Window

AIM_MS = 100.0


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def big_hall(data_dir: Path, windows: int, services: int) -> Config:
    limits = Thresholds(wait_min=30, serve_min=30, waiting_per_window=1)
    return Config(
        hall=Hall(name="基准测试大厅", data_dir=data_dir),
        alerts=Alerts(check_every_s=3600, device_offline_s=0, thresholds=limits),
        services=tuple(Service(f"s{i}", f"事项{i}", chr(ord("A") + i), f"640100-{i:03d}-01",
                               thresholds=limits) for i in range(services)),
        windows=tuple(Window(str(i), f"{i}号窗口", (f"s{i % services}",
                                                  f"s{(i + 3) % services}"),
                             temporary=i > windows - 10) for i in range(1, windows + 1)))


async def measure(config: Config, clock: Clock, waiting: int, rounds: int
                  ) -> tuple[list[float], list[float], int]:
    app = create_app(config, clock=clock)
    async with app.router.lifespan_context(app):
        queue, watch = app.state.queue, app.state.alerts
        for window in config.windows[:-10]:
            await queue.issue(window.services[0])
            await queue.call_next(window.id)
        for n in range(waiting):
            await queue.issue(config.services[n % len(config.services)].id)
        clock.now += 45 * 60
        whole, inside = [], []
        for _ in range(rounds + 1):
            began = time.perf_counter()
            await watch.check()
            whole.append(time.perf_counter() - began)
            inside.append(watch.last_check_s)
        open_now = await queue.store.read(lambda tx: tx.open_alert_records())
        return whole[1:], inside[1:], len(open_now)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=150)
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--waiting", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = big_hall(Path(tmp), args.windows, args.services)
        whole, inside, alerts = asyncio.run(measure(config, Clock(), args.waiting,
                                                    args.rounds))
    inside_ms = statistics.median(inside) * 1e3
    print(f"alerts: one check of {args.windows} windows, {args.waiting} waiting, "
          f"{alerts} alerts open; median of {args.rounds}:")
    print(f"  whole {statistics.median(whole) * 1e3:.1f} ms, in the transaction on the loop "
          f"{inside_ms:.1f} ms (aim < {AIM_MS:.0f} ms: "
          f"{'met' if inside_ms < AIM_MS else 'MISSED'})")
    record("alerts_check", {"windows": args.windows, "waiting": args.waiting,
                            "rounds": args.rounds, "alerts_open": alerts,
                            "whole_ms": statistics.median(whole) * 1e3,
                            "in_transaction_ms": inside_ms, "aim_ms": AIM_MS})
    return 0


if __name__ == "__main__":
    sys.exit(main())
