"""The loudspeaker emulator: a player program that logs what it "plays", for tests and benchmarks.

kioskd runs a player as `PLAYER... WAV_PATH`; this one is

    python -m drivers.voice.speaker --log LOG.jsonl [--speed S] [--fail] [--hang] WAV

It reads the WAV (a bad one: a message on stderr, exit 2), logs a start
line, waits the clip's length divided by `speed` as if playing it, and logs
an end line with what it played. `--fail` stops after the start line as a
player without a sound card does (exit 1); `--hang` never ends. Each log
line is one O_APPEND write, so players running at once interleave whole
lines. `read_log` turns the log into one `Played` per playback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .wav import WavError, read_wav

FAILURE = "speaker: no output device"


@dataclass(frozen=True)
class Played:
    """One playback: when it started and, once it ended, what was played."""

    wav: str
    started_at: float
    ended_at: float | None        # None: failed, hung or still playing
    duration_s: float | None
    rms: float | None
    rate: int | None
    pid: int


def read_log(path: str | os.PathLike[str]) -> list[Played]:
    """The playbacks in `path`, in the order they started."""
    started: dict[int, dict[str, Any]] = {}
    ended: dict[int, dict[str, Any]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        (started if event["event"] == "start" else ended)[event["pid"]] = event
    played = []
    for pid, start in started.items():
        end = ended.get(pid, {})
        played.append(Played(start["wav"], start["at"], end.get("at"), end.get("duration_s"),
                             end.get("rms"), end.get("rate"), pid))
    return played


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drivers.voice.speaker",
                                     description="Play a WAV into a log instead of a loudspeaker.")
    parser.add_argument("--log", required=True, help="the JSON-lines log to append to")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="play this many times faster than real time")
    parser.add_argument("--fail", action="store_true", help="fail as a player without a device")
    parser.add_argument("--hang", action="store_true", help="never finish")
    parser.add_argument("wav")
    options = parser.parse_args(arguments)
    if options.speed <= 0:
        parser.error("--speed must be above 0")
    try:
        pcm = read_wav(options.wav)
    except WavError as exc:
        print(f"speaker: {options.wav}: {exc}", file=sys.stderr)
        return 2
    _log(options.log, {"event": "start", "wav": options.wav, "at": time.time(),
                       "pid": os.getpid()})
    if options.fail:
        print(FAILURE, file=sys.stderr)
        return 1
    if options.hang:
        while True:
            signal.pause()
    time.sleep(pcm.duration / options.speed)
    _log(options.log, {"event": "end", "wav": options.wav, "at": time.time(),
                       "duration_s": pcm.duration, "rms": pcm.rms, "rate": pcm.rate,
                       "pid": os.getpid()})
    return 0


def _log(path: str, event: dict[str, Any]) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, (json.dumps(event, ensure_ascii=False) + "\n").encode())
    finally:
        os.close(descriptor)


if __name__ == "__main__":
    sys.exit(main())
