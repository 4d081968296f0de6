"""The pyttsx3 worker: a child process that turns text into WAV files for `synth.py`.

Run as `python -m drivers.voice.worker`; the daemon never imports pyttsx3
itself, so a hang or crash inside the speech library takes only this process
with it. It reads one JSON request a line on stdin,

    {"text": "...", "path": "/abs/file.wav", "voice": "...", "rate": 150, "volume": 1.0}

and writes one JSON answer a line, `{"ok": true}` or `{"error": "..."}`, on
what was its stdout. Its first line is a hello: `{"ready": true, "voices":
[ids], "version": "1.51"}`, or `{"error": "..."}` when pyttsx3 cannot start.
pyttsx3 prints ("Audio saved to ...") on stdout, so the answers go to a
copy of the original stdout and fd 1 is pointed at stderr first.

Two pyttsx3 2.99 habits are worked around here. `runAndWait` calls
`espeak_Cancel` when libespeak-ng's command queue is not yet empty: that
drops a rate or volume change queued just before (measured: a quarter of
rate changes lost) and leaves a flag set that cancels the next utterance
(seen under load: the words never finish). So before every `runAndWait`
the worker waits for libespeak-ng to take what is queued
(`espeak_Synchronize`), starting with one empty run at startup, after which
pyttsx3 applies properties at once instead of holding them in its own
queue. And a WAV that cannot be written raises inside pyttsx3's audio
callback, where nothing catches it and `runAndWait` never returns: the
file is opened here first, so that failure is an answer rather than a hang.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any


class Speaker:
    """pyttsx3's espeak driver, one WAV at a time."""

    def __init__(self) -> None:
        import pyttsx3
        from pyttsx3.drivers import _espeak

        self._espeak = _espeak
        self.engine = pyttsx3.init("espeak")
        self.voices = [voice.id for voice in self.engine.getProperty("voices")]
        self.version = _espeak.Info().decode("ascii", "replace")
        self._properties: dict[str, Any] = {}
        self._errors: list[str] = []
        self._finished = False
        self.engine.connect("error", self._on_error)
        self.engine.connect("finished-utterance", self._on_finished)
        self._espeak.Synchronize()         # libespeak-ng has taken the driver's first settings
        self.engine.runAndWait()           # from now on, properties apply at once

    def save(self, text: str, path: str, voice: str, rate: int, volume: float) -> None:
        """Write `text` spoken to a WAV at `path`; ValueError or OSError saying why not."""
        installed = [known for known in self.voices if known.casefold() == voice.casefold()]
        if not installed:
            raise ValueError(f"voice '{voice}' is not installed")
        voice = installed[0]
        self._errors.clear()
        for name, value in (("voice", voice), ("rate", rate), ("volume", volume)):
            if self._properties.get(name) != value:
                self.engine.setProperty(name, value)
                self._properties[name] = value
        self._espeak.Synchronize()         # libespeak-ng has taken the changes
        if self._errors:
            self._properties.clear()       # set them all again next time
            raise ValueError(self._errors[0])
        with open(path, "wb"):             # fails here, not in pyttsx3's callback
            pass
        self._finished = False
        self.engine.save_to_file(text, path)
        self.engine.runAndWait()
        if self._errors:
            raise ValueError(self._errors[0])
        if not self._finished:
            raise ValueError("pyttsx3 did not finish the words")

    def _on_error(self, exception: Exception, **_: Any) -> None:
        self._errors.append(str(exception))

    def _on_finished(self, completed: bool, **_: Any) -> None:
        self._finished = completed


def main() -> int:
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())   # prints go where stderr goes
    try:
        speaker = Speaker()
    except Exception as exc:   # anything pyttsx3 or libespeak-ng raises: say it, then stop
        _answer(answers, {"error": f"pyttsx3 could not start: {exc}"})
        return 1
    _answer(answers, {"ready": True, "voices": speaker.voices, "version": speaker.version})
    for line in sys.stdin:
        try:
            request = json.loads(line)
            speaker.save(request["text"], request["path"], request["voice"],
                         request["rate"], request["volume"])
        except OSError as exc:
            _answer(answers, {"error": f"cannot write {exc.filename}: {exc.strerror}"})
        except Exception as exc:   # a bad request or a library error: answered, not fatal
            _answer(answers, {"error": str(exc) or type(exc).__name__})
        else:
            _answer(answers, {"ok": True})
    return 0


def _answer(answers: IO[str], message: dict[str, Any]) -> None:
    answers.write(json.dumps(message) + "\n")
    answers.flush()


if __name__ == "__main__":
    sys.exit(main())
