#!/usr/bin/env python3
"""Voice benchmark: from a clerk's call-next to the start of the announcement's playback.

    .venv/bin/python benchmarks/voice.py          (part of: make bench)

Starts `kioskd run` on a throw-away hall of one window with a voice device
(pyttsx3 driving espeak-ng's Mandarin in its worker process). The player is a
bash script that writes the moment it starts (bash's $EPOCHREALTIME, no fork)
and the WAV's path to a log, then exits: playback starts when the player does.

Warm: after each ticket is issued the daemon makes its call's WAV ahead (the
head of the window's line); once it is made, call-next. Cold: a second daemon
with `ahead = false`, so every call waits for its synthesis. For each call:
from just before call-next is sent to the player's start. One call at a time,
the voice idle between them. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench_daemon import ApiClient, Daemon, free_port
from bench_results import record
from bench_stats import percentile

PLAYER = """#!/bin/bash
printf '%s %s\\n' "$EPOCHREALTIME" "$1" >> {log}
"""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def hall_toml(port: int, player: Path, ahead: bool) -> str:
    return f"""
[hall]
name = "基准测试大厅"
data_dir = "var"

[server]
host = "127.0.0.1"
port = {port}

[limits]
issue_per_terminal = 0
issue_per_address = 0

[[services]]
id = "property"
name = "不动产登记"
prefix = "A"
code = "640000-000-01"

[[windows]]
id = "5"
name = "5号窗口"
services = ["property"]

[devices.voice]
driver = "voice"
engine = "pyttsx3"
player = ["{player}"]
ahead = {"true" if ahead else "false"}
"""


def started(log_path: Path) -> list[tuple[float, str]]:
    if not log_path.exists():
        return []
    lines = log_path.read_text().splitlines()
    return [(float(at), wav) for at, wav in (line.split(" ", 1) for line in lines)]


def wait_for(condition, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.002)
    return result


def run_calls(directory: Path, calls: int, ahead: bool) -> tuple[list[float], dict]:
    """`calls` call-nexts, one at a time; call-next → player start for each (seconds)."""
    directory.mkdir()
    player_log = directory / "played.log"
    player = directory / "player.sh"
    player.write_text(PLAYER.format(log=player_log))
    player.chmod(0o755)
    port = free_port()
    config = directory / "devices.toml"
    config.write_text(hall_toml(port, player, ahead), encoding="utf-8")
    daemon = Daemon(config, port, directory / "daemon.log")
    daemon.start()
    latencies = []
    try:
        api = ApiClient(port)
        wait_for(lambda: api.request("GET", "/api/v1/devices/voice")["state"] == "ready",
                 "the voice to be ready")
        for n in range(calls):
            api.request("POST", "/api/v1/tickets", {"service": "property"})
            if ahead:
                wait_for(lambda: api.request("GET", "/api/v1/devices/voice")["detail"]
                         ["synthesised"] == n + 1, "the next call's WAV to be made ahead")
            sent = time.time()
            api.request("POST", "/api/v1/windows/5/call-next")
            at, _ = wait_for(lambda: started(player_log)[n:n + 1], "the player to start")[0]
            latencies.append(at - sent)
        detail = api.request("GET", "/api/v1/devices/voice")["detail"]
    finally:
        daemon.stop()
    return latencies, detail


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    return (f"p50 {percentile(ordered, 50) * 1000:6.1f} ms   p99 "
            f"{percentile(ordered, 99) * 1000:6.1f} ms   max {ordered[-1] * 1000:6.1f} ms")


def figures(values: list[float], detail: dict) -> dict:
    ordered = sorted(values)
    return {"p50_ms": percentile(ordered, 50) * 1000, "p99_ms": percentile(ordered, 99) * 1000,
            "max_ms": ordered[-1] * 1000, "n": len(values),
            "cache_hits": detail["cache"]["hits"], "cache_misses": detail["cache"]["misses"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kioskd-bench-voice-") as tmp:
        log("warm: each call's WAV made ahead")
        warm, warm_detail = run_calls(Path(tmp) / "warm", args.calls, ahead=True)
        log("cold: nothing made ahead")
        cold, cold_detail = run_calls(Path(tmp) / "cold", args.calls, ahead=False)
    print(f"\nkioskd voice benchmark: call-next → player start, {args.calls} calls one at a "
          f"time, pyttsx3 + espeak-ng sit/cmn-latn-pinyin")
    print(f"  warm cache   {ms(warm)}   (cache hits {warm_detail['cache']['hits']}, "
          f"misses {warm_detail['cache']['misses']})")
    print(f"  cold cache   {ms(cold)}   (cache hits {cold_detail['cache']['hits']}, "
          f"misses {cold_detail['cache']['misses']})")
    print("  aim: warm p99 under 100 ms")
    record("voice", {"warm": figures(warm, warm_detail), "cold": figures(cold, cold_detail),
                     "aim_warm_p99_ms": 100.0})
    return 0


if __name__ == "__main__":
    sys.exit(main())
