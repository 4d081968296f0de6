"""WAV audio as data: read, write, resample and join clips, and the hall's chime.

Inside kioskd audio is a `Pcm`: one channel of signed 16-bit little-endian
samples at some rate. `read_wav` brings any integer PCM WAV to that form
(8 to 32 bits, any number of channels, mixed down by averaging). Pure
Python: whole clips move as bytes, and sample arithmetic runs on `array`.
"""

from __future__ import annotations

import functools
import math
import operator
import os
import sys
import threading
import wave
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

FULL_SCALE = 32768
READ_BLOCK = 65536                 # frames read at a time
_FLIP_SIGN = bytes(value ^ 0x80 for value in range(256))   # unsigned 8-bit to signed


class WavError(Exception):
    """A WAV that cannot be used; the message says why ("not a WAV file")."""


class EmptyWav(WavError):
    """A WAV with a header but no audio frames."""


@dataclass(frozen=True)
class Pcm:
    """A mono clip: signed 16-bit little-endian `frames` at `rate` samples a second."""

    rate: int
    frames: bytes

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"a sample rate must be positive, not {self.rate}")
        if len(self.frames) % 2:
            raise ValueError("16-bit frames must be an even number of bytes")

    @property
    def samples(self) -> int:
        return len(self.frames) // 2

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples / self.rate

    @property
    def rms(self) -> float:
        """Root mean square level, 0 (silence) to 1 (full scale)."""
        values = _samples(self.frames)
        if not values:
            return 0.0
        return math.sqrt(sum(map(operator.mul, values, values)) / len(values)) / FULL_SCALE

    @property
    def peak(self) -> float:
        """The loudest sample, 0 to 1."""
        values = _samples(self.frames)
        if not values:
            return 0.0
        return max(max(values), -min(values)) / FULL_SCALE


def read_wav(path: str | os.PathLike[str]) -> Pcm:
    """The integer PCM WAV at `path` as a mono 16-bit clip at its own rate.
    Raises WavError when it is missing, unreadable, not PCM or has no frames."""
    try:
        with wave.open(os.fspath(path), "rb") as reader:
            channels, width, rate = (reader.getnchannels(), reader.getsampwidth(),
                                     reader.getframerate())
            # Not getnframes(): a WAV written to a stream (espeak-ng --stdout)
            # gives a data size of about 2 GB; read what is there.
            blocks = []
            while block := reader.readframes(READ_BLOCK):
                blocks.append(block)
    except FileNotFoundError:
        raise WavError("no such file") from None
    except OSError as exc:
        raise WavError(f"cannot be read: {exc.strerror or exc}") from None
    except EOFError:
        raise WavError("is cut short: the header is incomplete") from None
    except wave.Error as exc:
        raise WavError(_wave_problem(str(exc))) from None
    except RuntimeError:              # wave's word for a chunk whose size runs past its end
        raise WavError(_wave_problem("a chunk is larger than the file")) from None
    data = b"".join(blocks)
    data = data[:len(data) - len(data) % (channels * width)]   # a cut-off last frame
    if not data:
        raise EmptyWav("has no audio frames")
    if rate <= 0:
        raise WavError(f"has an impossible sample rate {rate}")
    return Pcm(rate, _mono(_to_16_bit(data, width), channels))


def duration_of(path: str | os.PathLike[str]) -> float:
    """The length in seconds of a WAV whose header is exact (one kioskd wrote),
    read from the header alone. WavError when it cannot be read."""
    try:
        with wave.open(os.fspath(path), "rb") as reader:
            frames, rate = reader.getnframes(), reader.getframerate()
    except OSError as exc:
        raise WavError(f"cannot be read: {exc.strerror or exc}") from None
    except (EOFError, wave.Error) as exc:
        raise WavError(_wave_problem(str(exc) or "the header is incomplete")) from None
    except RuntimeError:              # wave's word for a chunk whose size runs past its end
        raise WavError(_wave_problem("a chunk is larger than the file")) from None
    if rate <= 0:
        raise WavError(f"has an impossible sample rate {rate}")
    return frames / rate


def write_wav(path: str | os.PathLike[str], pcm: Pcm) -> None:
    """Write `pcm` to `path` as a mono 16-bit WAV: whole or not at all (a
    temporary file in the same folder, then renamed). Raises OSError."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with wave.open(str(temporary), "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(pcm.rate)
            writer.writeframes(pcm.frames)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def resample(pcm: Pcm, rate: int) -> Pcm:
    """`pcm` at another sample rate (linear interpolation), the same length in time."""
    if rate == pcm.rate:
        return pcm
    source = _samples(pcm.frames)
    source.append(source[-1] if source else 0)   # the last sample, to interpolate past it
    count = round((len(source) - 1) * rate / pcm.rate)
    step = pcm.rate / rate
    result = array("h", bytes(2 * count))
    for index in range(count):
        position = index * step
        before = int(position)
        start = source[before]
        result[index] = round(start + (source[before + 1] - start) * (position - before))
    return Pcm(rate, _frames(result))


def silence(rate: int, seconds: float) -> Pcm:
    return Pcm(rate, bytes(2 * round(rate * seconds)))


def join(parts: Sequence[Pcm]) -> Pcm:
    """The clips one after another; ValueError unless they share one rate
    (`resample` them first)."""
    if not parts:
        raise ValueError("no clips to join")
    rates = sorted({part.rate for part in parts})
    if len(rates) > 1:
        raise ValueError(f"clips at different rates ({', '.join(map(str, rates))} Hz) "
                         "cannot be joined; resample them first")
    return Pcm(rates[0], b"".join(part.frames for part in parts))


# The chime: "ding" (E5) then "dong" (C5), struck like a bell.
CHIME_TONES = ((0.0, 659.25, 0.22), (0.42, 523.25, 0.30))   # (start s, Hz, decay time s)
CHIME_S = 1.2
CHIME_ATTACK_S = 0.01
CHIME_FADE_S = 0.05                   # to exact silence at the end
CHIME_OVERTONE = 0.25                 # the second harmonic, relative to the tone
CHIME_PEAK = 0.6                      # of full scale


@functools.lru_cache(maxsize=None)
def chime(rate: int = 22050) -> Pcm:
    """The hall's "ding-dong" before an announcement: 1.2 s, peaking at 0.6 of
    full scale, starting and ending at silence. The same samples every time."""
    count = round(CHIME_S * rate)
    mix = [0.0] * count
    for start_s, frequency, decay_s in CHIME_TONES:
        first = round(start_s * rate)
        for index in range(first, count):
            t = (index - first) / rate
            envelope = math.exp(-t / decay_s) * min(1.0, t / CHIME_ATTACK_S)
            phase = 2 * math.pi * frequency * t
            mix[index] += envelope * (math.sin(phase) + CHIME_OVERTONE * math.sin(2 * phase))
    fade = round(CHIME_FADE_S * rate)
    for index in range(count - fade, count):
        mix[index] *= 0.5 - 0.5 * math.cos(math.pi * (count - 1 - index) / fade)
    scale = CHIME_PEAK * (FULL_SCALE - 1) / max(map(abs, mix))
    return Pcm(rate, _frames(array("h", (round(value * scale) for value in mix))))


def _wave_problem(message: str) -> str:
    """The `wave` module's complaint, for a technician."""
    if message in ("file does not start with RIFF id", "not a WAVE file"):
        return "not a WAV file"
    if message.startswith("unknown format:"):
        code = message.partition(":")[2].strip()
        return f"is not integer PCM (format {code}); save it as 16-bit PCM"
    return f"is not a readable WAV ({message})"


def _to_16_bit(data: bytes, width: int) -> bytes:
    """Little-endian samples of `width` bytes as signed 16-bit little-endian."""
    if width == 2:
        return data
    result = bytearray(2 * (len(data) // width))
    if width == 1:                    # unsigned 8-bit: the sample is the high byte
        result[1::2] = data.translate(_FLIP_SIGN)
    elif width in (3, 4):             # keep the two most significant bytes
        result[0::2] = data[width - 2::width]
        result[1::2] = data[width - 1::width]
    else:
        raise WavError(f"unsupported sample width {width}")
    return bytes(result)


def _mono(data: bytes, channels: int) -> bytes:
    """Interleaved 16-bit frames of `channels` channels, averaged to one."""
    if channels == 1:
        return data
    values = _samples(data)
    columns = [values[channel::channels] for channel in range(channels)]
    return _frames(array("h", (sum(frame) // channels for frame in zip(*columns))))


def _samples(frames: bytes) -> array:
    values = array("h", frames)
    if sys.byteorder == "big":
        values.byteswap()
    return values


def _frames(values: array) -> bytes:
    if sys.byteorder == "big":
        values = array("h", values)
        values.byteswap()
    return values.tobytes()
