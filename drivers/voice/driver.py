"""The voice caller: words to a cached announcement WAV (chime, then the words, twice), and that WAV to the player.

Synthesis runs in the engine's own process (`synth.py`) from one thread of
this driver, taking the most urgent words first: a call being made now goes
before the likely next calls synthesised ahead of time, and words asked for
twice are synthesised once. A finished announcement is one WAV in the
cache, so a call whose words were made ahead plays without waiting.

`play` runs the player command on the caller's thread (kioskd gives each
voice one thread for it, so announcements never overlap), checks its exit
code and kills it when it runs past the clip's length plus `timeout`; a
player that fails leaves the device `degraded` with the reason until one
succeeds. With `player = []` the WAVs are only kept.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from queue import PriorityQueue
from typing import Any

from ..base import DeviceError, DeviceUnavailable, Health, State
from . import BUILTIN_CHIME, TEST_WORDS, Settings
from .cache import ClipCache
from .speech import announcement
from .synth import SynthesisError, Synthesizer, kill_group, last_line, make_synthesizer
from .wav import Pcm, WavError, chime, join, read_wav, resample, silence, write_wav

log = logging.getLogger("kioskd.devices")

GAP_AFTER_CHIME_S = 0.3
GAP_BETWEEN_S = 0.8           # between the repeats of the words
CLIP_FORMAT = 1               # bump when the way clips are put together changes
URGENT, AHEAD, STOP = 0, 1, -1
STDERR_KEPT = 400             # characters of a failing player's complaint kept


class Closed(DeviceUnavailable):
    """Words asked for while the device was closed or closing: ask again once it is open."""


@dataclass(frozen=True)
class Clip:
    """A finished announcement on disk."""

    spoken: str                # the words as the engine was given them
    path: Path
    duration: float            # seconds
    cached: bool               # it was on disk before it was asked for


class Voice:
    """One voice caller: a synthesis engine, its cache, and a player."""

    def __init__(self, device_id: str, settings: Settings, timeout: float, data_dir: Path):
        self.id = device_id
        self.settings = settings
        self.timeout = timeout
        self.cache = ClipCache(Path(data_dir) / "audio", settings.cache_mb * 1_000_000)
        self.player_problem: str | None = None
        self.made = 0                      # clips synthesised
        self.generation = 0                # times opened: words asked for before were lost
        self._synth = None
        self._chime: Pcm | None = None
        self._chime_id = ""
        self._chimes: dict[int, Pcm] = {}  # the chime at each speech rate
        self._jobs: PriorityQueue[tuple[int, int, str | None, str]] = PriorityQueue()
        self._order = itertools.count()
        self._pending: dict[str, Future[Clip]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- the Driver lifecycle --------------------------------------------------

    def open(self) -> None:
        settings = self.settings
        try:
            self.cache.folder.mkdir(parents=True, exist_ok=True)
            self.cache.measure()
        except OSError as exc:
            raise DeviceUnavailable(f"cannot write the audio cache at {self.cache.folder}: "
                                    f"{exc.strerror}") from None
        self._load_chime()
        if settings.player and shutil.which(settings.player[0]) is None:
            raise DeviceUnavailable(f"player '{settings.player[0]}' not found; install it "
                                    "(aplay is in alsa-utils) or set player")
        synth = make_synthesizer(settings.speech, timeout=self.timeout, device=self.id)
        try:
            synth.start()
        except SynthesisError as exc:
            synth.close()
            raise DeviceUnavailable(str(exc)) from None
        self._synth = synth
        self.generation += 1
        self._jobs = PriorityQueue()
        self._thread = threading.Thread(target=self._synthesize_in_turn, daemon=True,
                                        args=(self._jobs, synth), name=f"synth-{self.id}")
        self._thread.start()

    def identify(self) -> dict[str, Any]:
        settings = self.settings
        return {"engine": settings.speech.engine, "voice": settings.speech.voice,
                "rate": settings.speech.rate, "volume": settings.speech.volume,
                "player": list(settings.player) or None,
                "chime": self._chime_id or None, "cache_folder": str(self.cache.folder)}

    def poll(self) -> Health:
        return self.health()

    def health(self) -> Health:
        """What the last playback left; no I/O."""
        detail = {"cache": self.cache.stats(), "synthesised": self.made,
                  "synthesizer": self._synth.describe() if self._synth else None}
        if self.player_problem:
            return Health(State.DEGRADED, detail, self.player_problem)
        return Health(State.READY, detail)

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put((STOP, next(self._order), None, ""))
        if self._synth is not None:
            self._synth.close()             # unblocks a synthesis stuck in the engine
        with self._lock:
            pending, self._pending = self._pending, {}
            for future in pending.values():   # one being made fails as the engine closes
                if not future.running() and future.set_running_or_notify_cancel():
                    future.set_exception(Closed("the voice device was closed"))

    def self_test(self) -> dict[str, Any]:
        """Say the test words now (the daemon queues its tests like calls instead)."""
        clip = self.prepare(self.test_words()[1], urgent=True).result(4 * self.timeout + 5)
        return self.said(clip, self.play(clip))

    # -- words to a clip --------------------------------------------------------

    def test_words(self) -> tuple[str, str]:
        """What a technician's test says, as written and as spoken."""
        words = dict(number="A001", window="1号窗口", service="不动产登记", target="")
        return (TEST_WORDS + self.settings.template.format(**words),
                TEST_WORDS + announcement(self.settings.template, **words))

    def prepare(self, spoken: str, *, urgent: bool) -> Future[Clip]:
        """The announcement of `spoken` (words ready for the engine), from the
        cache or synthesised: urgent for a call being made, else ahead of time."""
        key = self.cache.key(self._recipe(spoken))
        with self._lock:
            future = self._pending.get(key)
            queued = future is not None
            if not queued:
                duration = self.cache.find(key)
                if duration is not None:
                    if urgent:
                        self.cache.hits += 1
                    return _done(Clip(spoken, self.cache.path(key), duration, cached=True))
                if self._thread is None:
                    return _failed(Closed("the voice device is not open"))
                future = self._pending[key] = Future()
            if urgent:
                self.cache.misses += 1
            # Words queued ahead and now called go first in line: a second, urgent
            # entry; whichever entry comes out later finds them made and is skipped.
            if not queued or (urgent and not future.running()):
                self._jobs.put((URGENT if urgent else AHEAD, next(self._order), key, spoken))
            return future

    def _synthesize_in_turn(self, jobs: PriorityQueue, synth: Synthesizer) -> None:
        """One opening's thread: its own queue and engine, so a thread left
        finishing a synthesis after a close never shares the next opening's."""
        while True:
            rank, _, key, spoken = jobs.get()
            if rank == STOP:
                return
            with self._lock:
                future = self._pending.get(key)
                if future is None or not future.set_running_or_notify_cancel():
                    continue                   # already made, or abandoned
            try:
                clip: Clip | DeviceError = self._make(synth, key, spoken)
            except DeviceError as exc:
                clip = exc
            except Exception as exc:           # a bug here must not kill the thread
                log.exception("%s: could not make the announcement", self.id)
                clip = DeviceUnavailable(f"driver error: {type(exc).__name__}: {exc}")
            with self._lock:
                if self._pending.get(key) is future:      # not a later opening's
                    del self._pending[key]
            if isinstance(clip, DeviceError):
                future.set_exception(clip)
            else:
                future.set_result(clip)

    def _make(self, synth: Synthesizer, key: str, spoken: str) -> Clip:
        speech_path = self.cache.folder / f"{key}.speech.part"
        try:
            speech = synth.synthesize(spoken, speech_path)
        except SynthesisError as exc:
            closing = self._thread is None or self._synth is not synth
            raise (Closed if closing else DeviceUnavailable)(str(exc)) from None
        finally:
            speech_path.unlink(missing_ok=True)
        parts: list[Pcm] = []
        if self._chime is not None:
            parts += [self._chime_at(speech.rate), silence(speech.rate, GAP_AFTER_CHIME_S)]
        for turn in range(self.settings.repeat):
            if turn:
                parts.append(silence(speech.rate, GAP_BETWEEN_S))
            parts.append(speech)
        pcm = join(parts)
        path = self.cache.path(key)
        try:
            write_wav(path, pcm)
        except OSError as exc:
            raise DeviceUnavailable(f"cannot write {path}: {exc.strerror}") from None
        self.cache.added(key, pcm.duration)
        self.made += 1
        return Clip(spoken, path, pcm.duration, cached=False)

    def _recipe(self, spoken: str) -> dict[str, Any]:
        speech = self.settings.speech
        return {"format": CLIP_FORMAT, "words": spoken, "engine": speech.engine,
                "voice": speech.voice, "rate": speech.rate, "volume": speech.volume,
                "repeat": self.settings.repeat, "chime": self._chime_id}

    def _load_chime(self) -> None:
        source = self.settings.chime
        if not source:
            self._chime, self._chime_id = None, ""
        elif source == BUILTIN_CHIME:
            self._chime, self._chime_id = chime(), BUILTIN_CHIME
        else:
            try:
                self._chime = read_wav(Path(source))
                stat = os.stat(source)
            except (WavError, OSError) as exc:
                raise DeviceUnavailable(f"chime {source}: {exc}") from None
            self._chime_id = f"{source}:{stat.st_size}:{stat.st_mtime_ns}"
        self._chimes = {}

    def _chime_at(self, rate: int) -> Pcm:
        if rate not in self._chimes:
            self._chimes[rate] = resample(self._chime, rate)
        return self._chimes[rate]

    # -- a clip to the loudspeaker ----------------------------------------------

    def play(self, clip: Clip) -> dict[str, Any]:
        """Play `clip` and wait for the player to end; what happened (plain data).
        Never raises: a failing player is this device's `degraded` problem."""
        player = self.settings.player
        started = time.time()
        if not player:
            return {"started_at": started, "ended_at": started, "played": False,
                    "problem": None}
        limit = clip.duration + self.timeout
        problem = None
        try:
            process = subprocess.Popen([*player, str(clip.path)], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       start_new_session=True)
        except OSError as exc:
            problem = f"player {player[0]} could not start: {exc.strerror or exc}"
        else:
            try:
                _, complaint = process.communicate(timeout=limit)
                if process.returncode != 0:
                    why = last_line(complaint)[:STDERR_KEPT] or "no message"
                    problem = f"player {player[0]} failed (exit {process.returncode}): {why}"
            except subprocess.TimeoutExpired:
                kill_group(process)
                process.communicate()
                problem = (f"player {player[0]} did not finish within {limit:.1f} s "
                           f"({clip.duration:.1f} s of audio); it was stopped")
        if problem and problem != self.player_problem:
            log.warning("%s: %s", self.id, problem)
        self.player_problem = problem
        return {"started_at": started, "ended_at": time.time(), "played": problem is None,
                "problem": problem}

    @staticmethod
    def said(clip: Clip, outcome: dict[str, Any]) -> dict[str, Any]:
        """A clip and its playback, as `/devices` shows the last announcement."""
        return {"spoken": clip.spoken, "wav": str(clip.path), "duration_s": round(clip.duration, 2),
                "cached": clip.cached, **outcome}


def _done(clip: Clip) -> Future[Clip]:
    future: Future[Clip] = Future()
    future.set_result(clip)
    return future


def _failed(error: Exception) -> Future[Clip]:
    future: Future[Clip] = Future()
    future.set_exception(error)
    return future

