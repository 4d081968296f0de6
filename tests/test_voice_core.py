"""The voice core with real engines and files: words, WAVs, both synthesizers, the speaker emulator."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.voice.speaker import FAILURE, read_log
from drivers.voice.speech import announcement, check_template, spoken_number
from drivers.voice.synth import SynthesisError, Synthesizer, VoiceSettings, make_synthesizer
from drivers.voice.wav import (EmptyWav, Pcm, WavError, chime, join, read_wav, resample,
                               silence, write_wav)

from conftest import until

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ("pyttsx3", "espeak-ng")
MANDARIN = "sit/cmn-latn-pinyin"
TEMPLATE = "请{number}号到{window}办理"
CALL = "请A 零一二号到5号窗口办理"
# Measured: this call at rate 150 is 4.43 s long with an RMS level of 0.13
# (peak near full scale); the quietest words measured, "A七" alone, 0.086.
# 0.02 is far under any speech and far over silence or a click or two.
SPEECH_RMS = 0.02


def running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state not in "ZX"


def espeak_cli(tmp_path: Path, text: str, *, voice: str = MANDARIN, rate: int = 150,
               amplitude: int = 100) -> Pcm:
    """`text` as the espeak-ng program says it, run here by hand."""
    path = tmp_path / f"cli-{voice.replace('/', '_')}-{rate}-{amplitude}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-a", str(amplitude),
                    "-w", str(path), text], check=True, timeout=10)
    return read_wav(path)


@pytest.fixture
def synthesizers() -> Iterator[Callable[..., Synthesizer]]:
    """Makes synthesizers, started, and closes them after the test."""
    made: list[Synthesizer] = []

    def make(engine: str, *, timeout: float = 3.0, start: bool = True,
             espeak_command: tuple[str, ...] = ("espeak-ng",), **settings) -> Synthesizer:
        synth = make_synthesizer(VoiceSettings(engine, **settings), timeout=timeout,
                                 espeak_command=espeak_command)
        made.append(synth)
        if start:
            synth.start()
        return synth

    yield make
    for synth in made:
        synth.close()


# -- the words -----------------------------------------------------------------

@pytest.mark.parametrize("number, spoken", [
    ("A012", "A 零一二"),
    ("AB012", "A B 零一二"),
    ("7", "七"),
    ("0100", "零一零零"),
    ("B", "B"),
    ("A-01", "A-零一"),        # other characters pass through as they are
])
def test_a_number_is_read_letter_by_letter_and_digit_by_digit(number, spoken):
    assert spoken_number(number) == spoken


def test_an_announcement_fills_the_template_with_the_number_as_spoken():
    assert announcement(TEMPLATE, number="A012", window="5号窗口") == CALL
    assert announcement("{number}号请到{target}，{service}", number="C7", target="3号窗口",
                        service="社保业务") == "C 七号请到3号窗口，社保业务"


def test_template_problems_are_named():
    assert check_template(TEMPLATE) is None
    assert check_template("请{number}号到{window}办理{service}{target}") is None
    assert "{windw}" in check_template("请{number}号到{windw}办理")
    assert "not a valid template" in check_template("请{number号")
    with pytest.raises(ValueError, match=r"unknown field \{counter\}"):
        announcement("请{number}号到{counter}办理", number="A012")


# -- WAV files -----------------------------------------------------------------

def write_raw_wav(path: Path, *, channels: int, width: int, rate: int, frames: bytes) -> None:
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(frames)


def test_espeak_ng_output_is_read_whole_even_with_a_streaming_header(tmp_path):
    spoken = espeak_cli(tmp_path, CALL)
    assert spoken.rate == 22050 and 2 < spoken.duration < 8 and spoken.rms > SPEECH_RMS
    # Written to a pipe, espeak-ng cannot go back to fill in the sizes: its
    # header claims about 2 GB of audio.
    streamed = tmp_path / "streamed.wav"
    with streamed.open("wb") as out:
        subprocess.run(["espeak-ng", "-v", MANDARIN, "-s", "150", "--stdout", CALL],
                       stdout=out, check=True, timeout=10)
    assert struct.unpack("<I", streamed.read_bytes()[40:44])[0] > 1_000_000_000
    tracemalloc.start()
    try:
        assert read_wav(streamed) == spoken
        assert tracemalloc.get_traced_memory()[1] < 50_000_000    # not 2 GB "just in case"
    finally:
        tracemalloc.stop()


def test_an_8_bit_stereo_wav_becomes_mono_16_bit_at_its_own_rate(tmp_path):
    path = tmp_path / "stereo8.wav"
    # left 200 (+72 from the unsigned midpoint 128), right 100 (-28)
    write_raw_wav(path, channels=2, width=1, rate=44100, frames=bytes([200, 100]) * 4410)
    pcm = read_wav(path)
    assert (pcm.rate, pcm.samples) == (44100, 4410)
    assert set(struct.unpack(f"<{pcm.samples}h", pcm.frames)) == {(72 * 256 - 28 * 256) // 2}


@pytest.mark.parametrize("width, sample, expected", [
    (3, bytes([0x56, 0x34, 0x12]), 0x1234),
    (4, bytes([0x78, 0x56, 0x34, 0x12]), 0x1234),
    (4, bytes([0x00, 0x00, 0x00, 0x80]), -32768),
])
def test_24_and_32_bit_samples_keep_their_top_16_bits(tmp_path, width, sample, expected):
    path = tmp_path / f"wide{width}.wav"
    write_raw_wav(path, channels=1, width=width, rate=8000, frames=sample * 10)
    assert read_wav(path).frames == struct.pack("<h", expected) * 10


def test_wavs_that_cannot_be_used_say_why(tmp_path):
    empty = tmp_path / "empty.wav"
    write_raw_wav(empty, channels=1, width=2, rate=22050, frames=b"")
    with pytest.raises(EmptyWav, match="has no audio frames"):
        read_wav(empty)
    text = tmp_path / "notes.wav"
    text.write_text("请A012号到5号窗口办理\n")
    with pytest.raises(WavError, match="not a WAV file"):
        read_wav(text)
    with pytest.raises(WavError, match="no such file"):
        read_wav(tmp_path / "missing.wav")
    floats = tmp_path / "float.wav"           # WAVE_FORMAT_IEEE_FLOAT, 32-bit mono
    data = struct.pack("<4f", 0.0, 0.5, -0.5, 0.0)
    floats.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
                       + b"fmt " + struct.pack("<IHHIIHH", 16, 3, 1, 8000, 32000, 4, 32)
                       + b"data" + struct.pack("<I", len(data)) + data)
    with pytest.raises(WavError, match="not integer PCM"):
        read_wav(floats)


def test_a_written_wav_reads_back_the_same_and_leaves_no_temporary_file(tmp_path):
    pcm = espeak_cli(tmp_path, "五号窗口")
    path = tmp_path / "out" / "clip.wav"
    path.parent.mkdir()
    write_wav(path, pcm)
    write_wav(path, pcm)                      # over an existing file
    assert read_wav(path) == pcm
    assert os.listdir(path.parent) == ["clip.wav"]


def test_the_chime_is_a_soft_ding_dong_the_same_every_time():
    ding_dong = chime()
    assert chime.__wrapped__(22050) == ding_dong            # computed again, not cached
    assert 1.0 <= ding_dong.duration <= 1.3
    assert 0.55 <= ding_dong.peak <= 0.65
    assert ding_dong.rms > 0.1
    samples = struct.unpack(f"<{ding_dong.samples}h", ding_dong.frames)
    # no click: it starts and ends at silence, and ramps in over the attack
    assert samples[0] == 0 and samples[-1] == 0
    assert max(map(abs, samples[:22])) < 0.05 * 32768      # the first millisecond
    assert max(map(abs, samples[-22:])) < 0.01 * 32768
    assert chime(44100).rate == 44100 and abs(chime(44100).duration - ding_dong.duration) < 0.001


def test_resampling_changes_the_rate_and_keeps_the_length_and_level():
    ding_dong = chime()
    assert resample(ding_dong, ding_dong.rate) is ding_dong
    for rate in (16000, 44100):
        other = resample(ding_dong, rate)
        assert other.rate == rate
        assert abs(other.duration - ding_dong.duration) <= 1 / rate
        assert abs(other.rms - ding_dong.rms) < 0.02 * ding_dong.rms


def test_clips_join_only_at_one_rate():
    ding_dong, pause = chime(), silence(22050, 0.5)
    joined = join([ding_dong, pause, ding_dong])
    assert joined.samples == 2 * ding_dong.samples + 11025
    assert joined.frames.startswith(ding_dong.frames)
    with pytest.raises(ValueError, match="resample"):
        join([ding_dong, silence(16000, 0.5)])


def test_a_ten_second_clip_is_joined_and_measured_quickly():
    # Measured: 20 ms. The bound catches a slide into a Python loop per
    # sample (ten times slower) without failing on a busy machine.
    parts = [chime(), silence(22050, 1.0)] * 5
    started = time.perf_counter()
    clip = join(parts)
    clip.rms, clip.peak
    assert clip.duration > 10
    assert time.perf_counter() - started < 0.5


# -- both engines --------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_a_call_is_spoken_in_mandarin_at_the_rate_and_volume_set(engine, synthesizers,
                                                                   tmp_path):
    synth = synthesizers(engine, rate=170, volume=0.8)
    spoken = synth.synthesize(CALL, tmp_path / "call.wav")
    assert spoken.rms > SPEECH_RMS
    assert 2 < spoken.duration < 8
    # The first synthesis of an engine is the espeak-ng program's, sample for
    # sample, with the same voice, rate and amplitude; a later one in the same
    # pyttsx3 worker differs a little (libespeak-ng carries state between utterances).
    assert spoken == espeak_cli(tmp_path, CALL, rate=170, amplitude=80)
    assert spoken != espeak_cli(tmp_path, CALL, rate=150, amplitude=80)
    assert spoken != espeak_cli(tmp_path, CALL, voice="en", rate=170, amplitude=80)
    assert read_wav(tmp_path / "call.wav") == spoken
    assert synth.describe()["failed_attempts"] == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_the_digits_of_a_number_are_read_one_by_one(engine, synthesizers, tmp_path):
    # Counting syllables in the audio is fragile (espeak-ng runs them
    # together); length is not: A 零一二 is one syllable more than A十二 (0.28 s
    # measured at rate 150), A 零零七 two more than A七 (0.68 s).
    synth = synthesizers(engine)

    def seconds(text: str) -> float:
        return synth.synthesize(text, tmp_path / "words.wav").duration

    by_digit = seconds(announcement(TEMPLATE, number="A012", window="5号窗口"))
    assert by_digit - seconds("请A十二号到5号窗口办理") > 0.15
    assert seconds(announcement(TEMPLATE, number="A007", window="5号窗口")) \
        - seconds("请A七号到5号窗口办理") > 0.4


@pytest.mark.parametrize("engine", ENGINES)
def test_a_voice_that_is_not_installed_fails_at_start(engine, synthesizers):
    synth = synthesizers(engine, voice="xx/klingon", start=False)
    with pytest.raises(SynthesisError, match="voice 'xx/klingon' is not installed"):
        synth.start()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_file_that_cannot_be_written_fails_after_exactly_one_retry(engine, synthesizers,
                                                                     tmp_path):
    synth = synthesizers(engine)
    with pytest.raises(SynthesisError, match=r"tried twice"):
        synth.synthesize(CALL, tmp_path / "no-such-folder" / "call.wav")
    assert synth.describe()["failed_attempts"] == 2
    assert synth.synthesize(CALL, tmp_path / "call.wav").rms > SPEECH_RMS


def test_no_words_is_an_error(synthesizers, tmp_path):
    with pytest.raises(SynthesisError, match="no words"):
        synthesizers("espeak-ng").synthesize("  ", tmp_path / "call.wav")


# -- the pyttsx3 worker --------------------------------------------------------

def test_the_daemon_never_imports_pyttsx3(tmp_path):
    program = f"""if True:
        import sys
        from pathlib import Path
        from drivers.voice.synth import VoiceSettings, make_synthesizer
        synth = make_synthesizer(VoiceSettings("pyttsx3"), timeout=5)
        synth.start()
        pcm = synth.synthesize("请A 零一二号", Path({str(tmp_path / 'call.wav')!r}))
        synth.close()
        print(pcm.samples > 0, "pyttsx3" in sys.modules)
    """
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert done.stdout.split() == ["True", "False"], done.stderr


def test_a_hung_worker_is_replaced_and_the_call_still_made(synthesizers, tmp_path):
    synth = synthesizers("pyttsx3", timeout=1.5)
    hung = synth.pid
    os.kill(hung, signal.SIGSTOP)
    started = time.monotonic()
    spoken = synth.synthesize(CALL, tmp_path / "call.wav")
    assert time.monotonic() - started < 1.5 + 3       # the timeout, a restart, the retry
    assert spoken.rms > SPEECH_RMS
    assert synth.pid not in (None, hung)
    assert synth.describe()["replaced"] == 1 and synth.describe()["failed_attempts"] == 1
    with pytest.raises(ProcessLookupError):           # killed and reaped, not left stopped
        os.kill(hung, 0)


def test_a_killed_worker_is_replaced_and_the_call_still_made(synthesizers, tmp_path):
    synth = synthesizers("pyttsx3")
    killed = synth.pid
    os.kill(killed, signal.SIGKILL)
    until(lambda: not running(killed), "the killed player to die", 5)           # dead, not yet reaped
    spoken = synth.synthesize(CALL, tmp_path / "call.wav")
    assert spoken.rms > SPEECH_RMS
    assert synth.pid not in (None, killed)
    assert synth.describe()["replaced"] == 1 and synth.describe()["failed_attempts"] == 1


def test_close_ends_a_stuck_synthesis_from_another_thread(synthesizers, tmp_path):
    synth = synthesizers("pyttsx3", timeout=30)
    stuck = synth.pid
    os.kill(stuck, signal.SIGSTOP)
    outcome: list[BaseException] = []

    def synthesize() -> None:
        try:
            synth.synthesize(CALL, tmp_path / "call.wav")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=synthesize)
    thread.start()
    until(lambda: synth._in_use is not None, "the request to reach the engine", 5)      # the request is on its way
    started = time.monotonic()
    synth.close()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert isinstance(outcome[0], SynthesisError)
    assert "closed during a synthesis" in str(outcome[0])
    assert synth.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(stuck, 0)


# -- the espeak-ng program -----------------------------------------------------

def test_a_hanging_espeak_ng_is_stopped_and_tried_once_more(synthesizers, tmp_path):
    # The espeak_command parameter exists for this: a stand-in that lists
    # voices as espeak-ng does but, asked to speak, hangs in a child process
    # that holds its output open (so killing the script alone would not do),
    # noting the child's pid.
    pids = tmp_path / "pids"
    stand_in = tmp_path / "espeak-ng-hanging"
    stand_in.write_text(f"""#!/bin/sh
case "$1" in --voices|--version) exec espeak-ng "$@";; esac
sleep 5 &
echo $! >> {pids}
wait
""")
    stand_in.chmod(0o755)
    synth = synthesizers("espeak-ng", timeout=0.5, espeak_command=(str(stand_in),))
    started = time.monotonic()
    with pytest.raises(SynthesisError, match=r"took longer than 0.5 s \(tried twice\)"):
        synth.synthesize(CALL, tmp_path / "call.wav")
    assert time.monotonic() - started < 2 * 0.5 + 2
    hung = [int(pid) for pid in pids.read_text().split()]
    assert len(hung) == 2                          # the attempt and exactly one retry
    until(lambda: not any(map(running, hung)), "the hung players to end", 2)   # SIGKILLed: ending now


def test_a_missing_espeak_ng_is_named(synthesizers):
    synth = synthesizers("espeak-ng", start=False, espeak_command=("espeak-ng-not-here",))
    with pytest.raises(SynthesisError, match="espeak-ng-not-here not found"):
        synth.start()


# -- the speaker emulator ------------------------------------------------------

def run_speaker(*arguments: str, wait: bool = True) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-m", "drivers.voice.speaker", *arguments],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    if wait:
        process.wait(20)
    return process


def test_the_speaker_plays_in_order_and_logs_what_it_played(tmp_path):
    clip = tmp_path / "call.wav"
    write_wav(clip, espeak_cli(tmp_path, CALL))
    log = tmp_path / "played.jsonl"
    for _ in range(2):
        assert run_speaker("--log", str(log), "--speed", "20", str(clip)).returncode == 0
    first, second = read_log(log)
    pcm = read_wav(clip)
    for played in (first, second):
        assert played.wav == str(clip)
        assert played.duration_s == pcm.duration and played.rate == pcm.rate
        assert played.rms == pytest.approx(pcm.rms)
        assert played.ended_at - played.started_at >= pcm.duration / 20
    assert first.ended_at <= second.started_at and first.pid != second.pid


def test_a_failing_speaker_says_so_after_starting(tmp_path):
    clip = tmp_path / "chime.wav"
    write_wav(clip, chime())
    log = tmp_path / "played.jsonl"
    done = run_speaker("--log", str(log), "--fail", str(clip))
    assert done.returncode == 1 and FAILURE in done.stderr.read()
    [played] = read_log(log)
    assert played.ended_at is None


def test_a_hanging_speaker_can_be_killed(tmp_path):
    clip = tmp_path / "chime.wav"
    write_wav(clip, chime())
    log = tmp_path / "played.jsonl"
    process = run_speaker("--log", str(log), "--hang", str(clip), wait=False)
    try:
        until(lambda: log.exists() and log.read_text(), "the player's log", 5)
        assert process.poll() is None
    finally:
        process.kill()
    assert process.wait(5) == -signal.SIGKILL
    [played] = read_log(log)
    assert played.pid == process.pid and played.ended_at is None


def test_a_speaker_given_a_bad_wav_exits_2(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    done = run_speaker("--log", str(tmp_path / "played.jsonl"), str(bad))
    assert done.returncode == 2 and "not a WAV file" in done.stderr.read()
    assert not (tmp_path / "played.jsonl").exists()


def test_the_log_keeps_concurrent_players_apart(tmp_path):
    clip = tmp_path / "chime.wav"
    write_wav(clip, chime())
    log = tmp_path / "played.jsonl"
    players = [run_speaker("--log", str(log), "--speed", "4", str(clip), wait=False)
               for _ in range(3)]
    for player in players:
        assert player.wait(20) == 0
    played = read_log(log)
    assert sorted(p.pid for p in played) == sorted(p.pid for p in players)
    assert all(p.ended_at is not None for p in played)
    assert [json.loads(line)["event"] for line in log.read_text().splitlines()].count("end") == 3
