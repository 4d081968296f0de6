"""Speech synthesis outside the daemon's process: words in, a WAV file out.

Two engines. `espeak-ng` runs the espeak-ng program once per synthesis.
`pyttsx3` keeps one worker process (`worker.py`, a fresh interpreter) that
holds pyttsx3 and libespeak-ng, so the daemon never imports pyttsx3 and a
hang or crash in the library costs only the worker. Every attempt is
bounded by `timeout`: a program or worker that overruns is killed, a worker
that dies or talks nonsense is replaced, and the synthesis is tried once
more before `SynthesisError` says what happened.

One thread at a time calls `synthesize`; `close` may come from another
thread while a synthesis is stuck, and makes it end with SynthesisError.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import drivers

from .wav import EmptyWav, Pcm, WavError, read_wav

log = logging.getLogger("kioskd.devices")

EXIT_WAIT_S = 0.5          # for a worker that closed its pipe to finish exiting
REAP_WAIT_S = 5.0          # for a killed process to be reaped
PACKAGE_ROOT = str(Path(drivers.__file__).resolve().parent.parent)   # holds `drivers`


class SynthesisError(Exception):
    """Words could not be made into audio; the message says why, plainly."""


class _AttemptFailed(Exception):
    """One attempt failed (another may not); the message says how."""


@dataclass(frozen=True)
class VoiceSettings:
    engine: str                          # "pyttsx3" or "espeak-ng"
    voice: str = "sit/cmn-latn-pinyin"   # espeak-ng's Mandarin reading Latin letters by name
    rate: int = 150                      # words per minute
    volume: float = 1.0                  # 0 … 1

    @property
    def amplitude(self) -> int:
        """The volume as espeak-ng's amplitude (-a), as pyttsx3 maps it."""
        return round(self.volume * 100)


class Synthesizer(ABC):
    """A speech engine: `start`, then `synthesize` from one thread at a time,
    `close` from any thread. Raises only SynthesisError."""

    engine = ""

    def __init__(self, settings: VoiceSettings, timeout: float, device: str = "voice"):
        self.settings = settings
        self.timeout = timeout
        self.device = device                 # the voice device it speaks for, in log lines
        self.failed_attempts = 0
        self._lock = threading.Lock()
        self._closed = False

    @abstractmethod
    def start(self) -> None:
        """Get ready to synthesise and check the voice is installed."""

    def synthesize(self, text: str, path: Path) -> Pcm:
        """Speak `text` into a WAV at `path` and return what it holds; a failed
        attempt is tried once more."""
        if not text.strip():
            raise SynthesisError("there are no words to say")
        path = Path(path).absolute()
        try:
            return self._attempt(text, path)
        except _AttemptFailed as exc:
            self.failed_attempts += 1
            log.warning("%s: %s; trying once more", self.device, exc)
        try:
            return self._attempt(text, path)
        except _AttemptFailed as exc:
            self.failed_attempts += 1
            raise SynthesisError(f"{exc} (tried twice)") from None

    @abstractmethod
    def close(self) -> None:
        """Stop whatever runs; never raises, safe to call twice."""

    @property
    def pid(self) -> int | None:
        """The worker process's id while one runs."""
        return None

    def describe(self) -> dict[str, Any]:
        settings = self.settings
        return {"engine": self.engine, "voice": settings.voice, "rate": settings.rate,
                "volume": settings.volume, "failed_attempts": self.failed_attempts}

    def _attempt(self, text: str, path: Path) -> Pcm:
        with self._lock:
            if self._closed:
                raise SynthesisError("the synthesizer is closed")
        try:
            path.unlink(missing_ok=True)   # a file left from before must not pass for this one
        except OSError as exc:
            raise SynthesisError(f"cannot replace {path}: {exc.strerror}") from None
        self._speak(text, path)
        try:
            return read_wav(path)
        except EmptyWav:
            raise _AttemptFailed("the engine wrote no audio") from None
        except WavError as exc:
            if not path.exists():
                raise _AttemptFailed("the engine wrote no audio") from None
            raise _AttemptFailed(f"the engine wrote a bad WAV: {exc}") from None

    @abstractmethod
    def _speak(self, text: str, path: Path) -> None:
        """Have the engine write `text` to `path`; _AttemptFailed when it did not."""


def make_synthesizer(settings: VoiceSettings, *, timeout: float, device: str = "voice",
                     espeak_command: Sequence[str] = ("espeak-ng",)) -> Synthesizer:
    """The synthesizer for `settings.engine`; `espeak_command` runs espeak-ng
    (a test puts a stand-in there)."""
    if settings.engine == "espeak-ng":
        return EspeakNg(settings, timeout, espeak_command, device)
    if settings.engine == "pyttsx3":
        return Pyttsx3(settings, timeout, device)
    raise SynthesisError(f"unknown speech engine '{settings.engine}'")


class EspeakNg(Synthesizer):
    """The espeak-ng program, run once per synthesis."""

    engine = "espeak-ng"

    def __init__(self, settings: VoiceSettings, timeout: float, command: Sequence[str],
                 device: str = "voice"):
        super().__init__(settings, timeout, device)
        self.command = tuple(command)
        self.version: str | None = None
        self._running: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._lock:
            self._closed = False
        if shutil.which(self.command[0]) is None:
            raise SynthesisError(f"{self.command[0]} not found; install espeak-ng")
        try:
            listing, _ = self._run("--voices")
            about, _ = self._run("--version")
        except _AttemptFailed as exc:
            raise SynthesisError(str(exc)) from None
        found = re.search(r"text-to-speech: (\S+)", about)
        self.version = found.group(1) if found else None
        if self.settings.voice.casefold() not in _voice_files(listing):
            raise SynthesisError(f"voice '{self.settings.voice}' is not installed in espeak-ng "
                                 "(see espeak-ng --voices)")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            running = self._running
        if running is not None:
            kill_group(running)

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"version": self.version}

    def _speak(self, text: str, path: Path) -> None:
        settings = self.settings
        _, errors = self._run("-v", settings.voice, "-s", str(settings.rate),
                              "-a", str(settings.amplitude), "-w", str(path), "--", text)
        if not path.exists() and errors:   # it exits 0 when it cannot write the file
            raise _AttemptFailed(f"espeak-ng wrote no audio: {errors}")

    def _run(self, *arguments: str) -> tuple[str, str]:
        """espeak-ng's output and the last line of its errors for `arguments`,
        within the timeout; _AttemptFailed when it fails or overruns."""
        try:
            # its own process group, so a stand-in script dies with its children
            process = subprocess.Popen([*self.command, *arguments], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       start_new_session=True)
        except OSError as exc:
            raise _AttemptFailed(f"cannot run {self.command[0]}: {exc.strerror}") from None
        with self._lock:
            self._running = process
            closed = self._closed
        if closed:                       # close() came before there was this to kill
            kill_group(process)
        try:
            output, errors = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            kill_group(process)
            process.communicate()
            raise _AttemptFailed(f"espeak-ng took longer than {self.timeout:g} s") from None
        finally:
            with self._lock:
                self._running = None
        last_error = last_line(errors)
        if process.returncode:
            raise _AttemptFailed(f"espeak-ng {_ended(process.returncode)}"
                                 + (f": {last_error}" if last_error else ""))
        return output.decode("utf-8", "replace"), last_error


class Pyttsx3(Synthesizer):
    """pyttsx3 in a worker process, started on demand and replaced when it fails."""

    engine = "pyttsx3"

    def __init__(self, settings: VoiceSettings, timeout: float, device: str = "voice"):
        super().__init__(settings, timeout, device)
        self.version: str | None = None
        self.launched = 0                    # workers started
        self._worker: _Worker | None = None
        self._in_use: _Worker | None = None  # the worker a synthesis is talking to

    def start(self) -> None:
        with self._lock:
            self._closed = False
        try:
            with self._worker_in_use():
                pass
        except _AttemptFailed as exc:
            raise SynthesisError(str(exc)) from None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            worker, self._worker = self._worker, None
            in_use = worker is not None and worker is self._in_use
        if in_use:
            worker.kill()                    # the synthesis sees it die and cleans up
        elif worker is not None:
            worker.dispose()

    @property
    def pid(self) -> int | None:
        worker = self._worker
        return worker.process.pid if worker is not None else None

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"pid": self.pid, "replaced": max(self.launched - 1, 0),
                                     "version": self.version}

    def _speak(self, text: str, path: Path) -> None:
        settings = self.settings
        request = {"text": text, "path": str(path), "voice": settings.voice,
                   "rate": settings.rate, "volume": settings.volume}
        with self._worker_in_use() as worker:
            answer = worker.ask(request, self.timeout, "synthesis")
            if "error" in answer:
                raise _AttemptFailed(f"pyttsx3: {answer['error']}")
            if answer.get("ok") is not True:
                raise _AttemptFailed(f"the pyttsx3 worker answered {answer!r}")

    @contextmanager
    def _worker_in_use(self) -> Iterator[_Worker]:
        """The worker, started and greeted if there is none; a failure in its
        use discards it, and the next attempt starts another."""
        with self._lock:
            if self._closed:
                raise SynthesisError("the synthesizer is closed")
            worker = self._worker
            fresh = worker is None
            if fresh:
                worker = self._worker = _Worker.launch()
                self.launched += 1
            self._in_use = worker
        try:
            if fresh:
                self._greet(worker)
            yield worker
        except _AttemptFailed:
            with self._lock:
                if self._worker is worker:
                    self._worker = None
                closed = self._closed
            if closed:
                raise SynthesisError("the synthesizer was closed during a synthesis") from None
            raise
        finally:
            with self._lock:
                self._in_use = None
                discarded = self._worker is not worker
            if discarded:
                worker.dispose()

    def _greet(self, worker: _Worker) -> None:
        """Read the worker's hello; _AttemptFailed unless it is ready with our voice."""
        hello = worker.ask(None, self.timeout, "starting the pyttsx3 worker")
        if "error" in hello:
            raise _AttemptFailed(str(hello["error"]))
        voices = hello.get("voices")
        if hello.get("ready") is not True or not isinstance(voices, list):
            raise _AttemptFailed(f"the pyttsx3 worker said {hello!r} instead of hello")
        self.version = hello.get("version")
        if self.settings.voice.casefold() not in {str(voice).casefold() for voice in voices}:
            raise _AttemptFailed(f"voice '{self.settings.voice}' is not installed "
                                 "(see espeak-ng --voices)")


class _Worker:
    """One worker process: requests on its stdin, answers read from its stdout."""

    def __init__(self, process: subprocess.Popen[bytes]):
        self.process = process
        self._unread = b""

    @classmethod
    def launch(cls) -> _Worker:
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [PACKAGE_ROOT, environment.get("PYTHONPATH")]))
        try:
            # its own session: a Ctrl-C meant for the daemon does not reach it
            process = subprocess.Popen([sys.executable, "-m", "drivers.voice.worker"],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, cwd=PACKAGE_ROOT,
                                       env=environment, start_new_session=True)
        except OSError as exc:
            raise _AttemptFailed(f"cannot start the pyttsx3 worker: {exc.strerror}") from None
        return cls(process)

    def ask(self, request: dict[str, Any] | None, timeout: float, doing: str) -> dict[str, Any]:
        """Send `request` (None: only read) and return the answer; _AttemptFailed
        when none comes within `timeout` seconds, the worker is gone, or the
        answer is not a JSON object."""
        if request is not None:
            try:
                self.process.stdin.write(json.dumps(request).encode() + b"\n")
                self.process.stdin.flush()
            except OSError:                  # a broken pipe: it has died
                raise _AttemptFailed(self._gone()) from None
        line = self._read_line(time.monotonic() + timeout, f"{doing} took longer than "
                                                           f"{timeout:g} s")
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise _AttemptFailed(f"the pyttsx3 worker answered {line[:80]!r}, not JSON")
        return answer

    def kill(self) -> None:
        """SIGKILL and reap; from any thread, safe to repeat."""
        with suppress(ProcessLookupError):
            self.process.kill()
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(REAP_WAIT_S)

    def dispose(self) -> None:
        """Kill it and close its pipes."""
        self.kill()
        for pipe in (self.process.stdin, self.process.stdout):
            with suppress(OSError):
                pipe.close()

    def _read_line(self, deadline: float, overrun: str) -> bytes:
        descriptor = self.process.stdout.fileno()
        poller = select.poll()               # not select(): the daemon may hold fds past 1024
        poller.register(descriptor, select.POLLIN)
        while b"\n" not in self._unread:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _AttemptFailed(overrun)
            if poller.poll(remaining * 1000):
                chunk = os.read(descriptor, 65536)
                if not chunk:
                    raise _AttemptFailed(self._gone())
                self._unread += chunk
        line, _, self._unread = self._unread.partition(b"\n")
        return line

    def _gone(self) -> str:
        """How the worker left, having closed its pipe."""
        try:
            code = self.process.wait(EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            return "the pyttsx3 worker stopped answering"
        return f"the pyttsx3 worker {_ended(code)}"


def _voice_files(listing: str) -> set[str]:
    """The File column of `espeak-ng --voices`, casefolded."""
    lines = listing.splitlines()
    if not lines or "File" not in lines[0].split():
        return set()
    column = lines[0].split().index("File")
    return {fields[column].casefold() for fields in map(str.split, lines[1:])
            if len(fields) > column}


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process started in a session of its own, and what it started."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _ended(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def last_line(output: bytes) -> str:
    """The last line a program wrote that says something (its complaint)."""
    lines = output.decode("utf-8", "replace").strip().splitlines()
    return lines[-1].strip() if lines else ""
