#!/usr/bin/env python3
"""Every benchmark, one after another, then the hall's table: what `make bench` runs.

    .venv/bin/python benchmarks/suite.py [--quick] [--only NAME ...] [--results DIR]
    make bench            (make bench QUICK=1 for --quick)

Each benchmark runs as its own process, its detailed printout going to this
terminal as before, with KIOSKD_BENCH_RESULTS naming this run's folder
(artifacts/bench/DATE-TIME/ unless --results): each records its figures there
(bench_results.py), and this records how each ended (status.json) and the
machine (machine.json). The table (table.py) is printed last and kept in the
folder as table.md. `--quick` runs each benchmark small and short, to check
the wiring in a few minutes: its figures are not the ones to quote.

A benchmark that fails, or outlasts its time (it is interrupted, so it stops its
daemon), is marked failed and the run goes on; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench_daemon import REPO, venv_python
from bench_results import ENV
from table import RESULTS_ROOT, machine, render


@dataclass(frozen=True)
class Benchmark:
    name: str                    # its script is benchmarks/NAME.py; its figures NAME.json
    quick: tuple[str, ...]       # arguments for --quick
    full: tuple[str, ...] = ()   # arguments for the real run (the scripts' defaults)


# In this order: the load benchmark first, on a machine nothing else has warmed or filled.
BENCHMARKS = [
    Benchmark("run", ("--duration", "1", "--warmup", "0.3", "--backlog", "200",
                      "--commit-seconds", "0.3")),
    Benchmark("fanout", ("--displays", "50", "--calls", "10", "--single-calls", "5")),
    Benchmark("printing", ("--tickets", "10")),
    Benchmark("boards", ("--windows", "8", "--buses", "2", "--single", "3")),
    Benchmark("keypads", ("--windows", "4", "--presses", "3", "--flood-s", "1")),
    Benchmark("voice", ("--calls", "3")),
    Benchmark("startup", ("--starts", "1")),
    Benchmark("memory", ("--load-seconds", "1")),
    Benchmark("alerts_check", ("--rounds", "3", "--waiting", "50")),
    Benchmark("history", ("--history", "20000", "--rounds", "50")),
    Benchmark("stats_year", ("--days", "7", "--tickets", "20000", "--rounds", "3",
                             "--engine-rounds", "50")),
    Benchmark("backup", ("--history", "20000", "--rounds", "50")),
]
TIMEOUT_S = {False: 45 * 60, True: 5 * 60}      # one benchmark, full and quick
STOP_GRACE_S = 60                               # after SIGINT, to stop its daemon


def run_one(bench: Benchmark, quick: bool, results: Path, directory: Path) -> dict:
    """Run one benchmark; how it ended: {"exit": code | "timeout" | "interrupted", ...}."""
    command = [venv_python(), str(directory / f"{bench.name}.py"),
               *(bench.quick if quick else bench.full)]
    (results / f"{bench.name}.json").unlink(missing_ok=True)     # no figures but this run's
    began = time.monotonic()
    proc = subprocess.Popen(command, cwd=REPO, env={**os.environ, ENV: str(results)})
    try:
        code: int | str = proc.wait(TIMEOUT_S[quick])
    except subprocess.TimeoutExpired:
        code = "timeout"
        proc.send_signal(signal.SIGINT)           # its finally blocks stop its daemon
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    except KeyboardInterrupt:                     # the terminal interrupted both of us
        code = "interrupted"
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {"exit": code, "seconds": round(time.monotonic() - began, 1),
            "command": command[1:]}


def main(argv: list[str] | None = None, benchmarks: list[Benchmark] | None = None,
         directory: Path | None = None) -> int:
    """`benchmarks` and `directory` (where their scripts are) are for tests."""
    benchmarks = BENCHMARKS if benchmarks is None else benchmarks
    directory = Path(__file__).resolve().parent if directory is None else directory
    names = [b.name for b in benchmarks]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="each benchmark small and short")
    parser.add_argument("--only", nargs="+", choices=names, metavar="NAME",
                        help=f"run only these: {', '.join(names)}")
    parser.add_argument("--results", type=Path, help="the folder for this run's results")
    args = parser.parse_args(argv)
    chosen = [b for b in benchmarks if not args.only or b.name in args.only]
    results = args.results or RESULTS_ROOT / (time.strftime("%Y%m%d-%H%M%S")
                                              + ("-quick" if args.quick else ""))
    results.mkdir(parents=True, exist_ok=True)
    (results / "machine.json").write_text(json.dumps({**machine(), "quick": args.quick},
                                                     indent=2, ensure_ascii=False))
    statuses: dict[str, dict] = {}
    began = time.monotonic()
    for n, bench in enumerate(chosen, 1):
        print(f"\n=== {bench.name}.py ({n}/{len(chosen)}"
              f"{', quick' if args.quick else ''}) ===", flush=True)
        statuses[bench.name] = status = run_one(bench, args.quick, results, directory)
        (results / "status.json").write_text(json.dumps(statuses, indent=2))
        print(f"=== {bench.name}.py: "
              f"{'ok' if status['exit'] == 0 else 'FAILED (' + str(status['exit']) + ')'} "
              f"in {status['seconds']:.0f} s ===", flush=True)
        if status["exit"] == "interrupted":
            break
    table = render(results)
    (results / "table.md").write_text(table + "\n", encoding="utf-8")
    failed = [name for name, s in statuses.items() if s["exit"] != 0]
    print("\n" + table)
    print(f"\n{len(chosen)} benchmarks in {time.monotonic() - began:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else "") + f". Results: {results}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
