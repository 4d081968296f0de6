"""The announcement cache: finished WAVs under data_dir/audio, named by what made them.

A clip's name is a digest of everything that shapes its sound (the words,
the engine and its voice, rate and volume, the chime, the repeats), so a
change of any of them is a new file and a file found is always right. The
cache keeps an index of its clips in memory (read from the folder when the
device opens), so asking whether a call's WAV is ready touches no disk: it
is asked on the event loop. The folder is kept under `cache_mb`: when a new
clip takes it over, the clips used least recently go first (after a
restart, the ones written first).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .wav import WavError, duration_of

log = logging.getLogger("kioskd.devices")

SUFFIX = ".wav"


@dataclass
class _Entry:
    size: int                     # bytes on disk
    duration: float               # seconds
    used: float                   # when last asked for (at first: when written)


class ClipCache:
    """Finished announcement WAVs in one folder, bounded in size."""

    def __init__(self, folder: Path, limit_bytes: int):
        self.folder = folder
        self.limit = limit_bytes
        self.hits = 0                 # announcements whose WAV was ready when called
        self.misses = 0               # ... that had to wait for synthesis
        self._lock = threading.Lock()
        self._clips: dict[str, _Entry] = {}

    @staticmethod
    def key(recipe: dict[str, Any]) -> str:
        text = json.dumps(recipe, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.folder / f"{key}{SUFFIX}"

    def measure(self) -> None:
        """Index what the folder holds (clips kept from before); a file that is
        not a readable WAV is deleted. Blocking: run it where the device opens."""
        clips = {}
        for entry in os.scandir(self.folder):
            if not entry.name.endswith(SUFFIX) or not entry.is_file():
                continue
            try:
                stat = entry.stat()
                clips[entry.name[:-len(SUFFIX)]] = _Entry(stat.st_size,
                                                          duration_of(entry.path), stat.st_mtime)
            except (OSError, WavError):
                Path(entry.path).unlink(missing_ok=True)
        with self._lock:
            self._clips = clips

    def find(self, key: str) -> float | None:
        """The cached clip's length in seconds (and it is marked used), or None."""
        with self._lock:
            entry = self._clips.get(key)
            if entry is None:
                return None
            entry.used = time.time()
            return entry.duration

    def added(self, key: str, duration: float) -> None:
        """Index a clip just written at `path(key)`; make room if the folder is over the limit."""
        size = self.path(key).stat().st_size
        with self._lock:
            self._clips[key] = _Entry(size, duration, time.time())
            if self._bytes() > self.limit:
                self._prune(keep=key)

    def _bytes(self) -> int:
        return sum(entry.size for entry in self._clips.values())

    def _prune(self, keep: str) -> None:
        """Delete the least recently used clips until the folder is at 80 % of the limit."""
        total = self._bytes()
        removed = 0
        for key in sorted(self._clips, key=lambda k: self._clips[k].used):
            if total <= self.limit * 0.8:
                break
            if key == keep:
                continue
            try:
                self.path(key).unlink(missing_ok=True)
            except OSError:
                continue
            total -= self._clips.pop(key).size
            removed += 1
        log.info("voice: cache %s: removed %d least used clips, %d MB left", self.folder,
                 removed, total // 1_000_000)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            size, clips = self._bytes(), len(self._clips)
        return {"hits": self.hits, "misses": self.misses, "folder": str(self.folder),
                "clips": clips, "bytes": size}
