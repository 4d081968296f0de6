"""Figures as data: every benchmark hands its figures to `record`, which table.py reads.

With KIOSKD_BENCH_RESULTS naming a folder (suite.py, hence `make bench`, sets it to a
new folder per run) `record("voice", {...})` writes FOLDER/voice.json; without it,
nothing is written and the benchmark only prints, as it always did. A benchmark
records once, after it measured everything, so a benchmark that failed half-way
leaves no figures behind to be mistaken for this run's.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

ENV = "KIOSKD_BENCH_RESULTS"


def folder() -> Path | None:
    value = os.environ.get(ENV, "")
    return Path(value) if value else None


def record(name: str, figures: dict[str, Any]) -> Path | None:
    """Write `figures` (JSON-able: numbers in seconds or per second, as named) as this
    run's result of benchmark `name`; returns the file, or None outside a run."""
    where = folder()
    if where is None:
        return None
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{name}.json"
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps({"benchmark": name, "recorded_at": time.time(),
                                   "figures": figures}, indent=2, ensure_ascii=False),
                       encoding="utf-8")
    partial.replace(path)           # whole or not at all
    return path


def read(where: Path, name: str) -> dict[str, Any] | None:
    """The figures benchmark `name` recorded in `where`, or None."""
    try:
        return json.loads((where / f"{name}.json").read_text(encoding="utf-8"))["figures"]
    except (FileNotFoundError, ValueError, KeyError):
        return None
