"""The announcement cache: finished WAVs under data_dir/audio, named by what made them.

A clip's name is a digest of everything that shapes its sound (the words,
the engine and its voice, rate and volume, the chime, the repeats), so a
change of any of them is a new file and a file found is always right. The
cache is kept under `cache_mb`: when a new clip takes it over, the clips
used least recently go first (a hit touches its file's mtime).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("kioskd.devices")

SUFFIX = ".wav"


class ClipCache:
    """Finished announcement WAVs in one folder, bounded in size."""

    def __init__(self, folder: Path, limit_bytes: int):
        self.folder = folder
        self.limit = limit_bytes
        self.hits = 0                 # announcements whose WAV was ready when called
        self.misses = 0               # ... that had to wait for synthesis
        self._lock = threading.Lock()
        self._bytes: int | None = None   # the folder's size, once measured

    @staticmethod
    def key(recipe: dict[str, Any]) -> str:
        text = json.dumps(recipe, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.folder / f"{key}{SUFFIX}"

    def find(self, key: str) -> Path | None:
        """The clip's file when it is cached (and marks it used), else None."""
        path = self.path(key)
        try:
            os.utime(path)
        except OSError:
            return None
        return path

    def measure(self) -> None:
        """Count what the folder holds (at start: clips kept from before)."""
        with self._lock:
            self._bytes = sum(size for _, size, _ in self._files())

    def added(self, path: Path) -> None:
        """Count a file just written into the folder; make room if it is over the limit."""
        with self._lock:
            self._bytes = (self._bytes or 0) + path.stat().st_size
            if self._bytes > self.limit:
                self._prune(keep=path)

    def _files(self) -> list[tuple[Path, int, float]]:
        files = []
        for entry in os.scandir(self.folder):
            if entry.name.endswith(SUFFIX) and entry.is_file():
                stat = entry.stat()
                files.append((Path(entry.path), stat.st_size, stat.st_mtime))
        return files

    def _prune(self, keep: Path) -> None:
        """Delete the least recently used clips until the folder is at 80 % of the limit."""
        files = sorted(self._files(), key=lambda f: f[2])
        total = sum(size for _, size, _ in files)
        removed = 0
        for path, size, _ in files:
            if total <= self.limit * 0.8:
                break
            if path == keep:
                continue
            try:
                path.unlink()
            except OSError:
                continue
            total -= size
            removed += 1
        self._bytes = total
        log.info("voice cache %s: removed %d least used clips, %d MB left", self.folder,
                 removed, total // 1_000_000)

    def stats(self) -> dict[str, Any]:
        return {"hits": self.hits, "misses": self.misses, "folder": str(self.folder),
                "bytes": self._bytes}
