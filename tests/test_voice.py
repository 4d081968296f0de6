"""The voice caller in a running hall: clerks call through the HTTP API; the real
engine (pyttsx3 driving espeak-ng's Mandarin, in its own process) makes real WAVs;
the player is the loudspeaker emulator (`drivers/voice/speaker.py`), a program the
daemon runs like `aplay`, which reads each WAV and logs when it played it, for how
long and how loud. The tests read that log ("A001 was said, then A002, never at
once") and the WAVs themselves.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from drivers.voice.driver import GAP_AFTER_CHIME_S, GAP_BETWEEN_S
from drivers.voice.speaker import read_log
from drivers.voice.speech import announcement
from drivers.voice.wav import chime, read_wav
from kioskd.config import Config, loads_config
from daemon import free_port
from conftest import Clock, HallClient, demo_hall, eventually, hall_toml, serving

API = "/api/v1"
WAIT = 20.0              # how long a test waits for the voice before it fails

# the minimal hall's window 1, and window 5: both serve 不动产登记 (A)
WINDOW_5 = """
[[windows]]
id = "5"
name = "5号窗口"
services = ["property"]
{window_5}
"""


def speaker(log: Path, *flags: str, speed: float = 20) -> str:
    """The loudspeaker emulator as a player command (TOML), `speed` times real time."""
    command = [sys.executable, "-m", "drivers.voice.speaker", "--log", str(log),
               "--speed", str(speed), *flags]
    return json.dumps(command, ensure_ascii=False)


def voice_table(device_id: str = "voice", *, player: str, **options) -> str:
    lines = [f"[devices.{device_id}]", 'driver = "voice"', f"player = {player}",
             "poll_interval = 0.2"]
    lines += [f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


def hall_text(devices: str, *, window_1: str = "", window_5: str = "") -> str:
    return hall_toml(WINDOW_5.format(window_5=window_5) + textwrap.dedent(devices),
                     window=window_1)


def hall_config(tmp_path: Path, devices: str, *, window_1: str = "", window_5: str = "") -> Config:
    return loads_config(hall_text(devices, window_1=window_1, window_5=window_5),
                        base_dir=tmp_path)


class Hall(HallClient):
    """The daemon in-process, the clerks' buttons, and what the loudspeaker heard."""

    wait = WAIT

    def __init__(self, app, client: httpx.AsyncClient, log: Path | None):
        super().__init__(app, client)
        self.log = log

    def driver(self, device_id: str = "voice"):
        return self.app.state.devices.get(device_id).driver

    def wav_of(self, text_template: str, number: str, window: str, device_id: str = "voice"
               ) -> Path:
        """The cached announcement WAV of these words (made by now: a cache lookup)."""
        words = announcement(text_template, number=number, window=window)
        return self.driver(device_id).prepare(words, urgent=False).result(WAIT).path

    def played(self) -> list:
        return read_log(self.log) if self.log and self.log.exists() else []

    async def said(self, count: int) -> list:
        """The first `count` playbacks, once all of them have ended."""
        await self.until(lambda: len([p for p in self.played() if p.ended_at]) >= count,
                         f"{count} announcements to be played (log: {self.played()})")
        return self.played()[:count]

    async def detail_until(self, condition: Callable[[dict], bool], what: str,
                           device_id: str = "voice") -> dict:
        async def detail() -> dict:
            return (await self.device(device_id))["detail"]
        return await eventually(detail, condition, what, WAIT)


@asynccontextmanager
async def hall(config: Config, log: Path | None = None, clock: Clock | None = None,
               devices: tuple[str, ...] = ("voice",)) -> AsyncIterator[Hall]:
    async with serving(config, clock or time.time) as (app, client):
        h = Hall(app, client, log)
        for device_id in devices:
            await h.state(device_id, "ready")
        yield h


def espeak_speech(text: str, path: Path, rate: int = 150) -> Path:
    """The engine's words made by espeak-ng's own command line."""
    subprocess.run(["espeak-ng", "-v", "sit/cmn-latn-pinyin", "-s", str(rate), "-a", "100",
                    "-w", str(path), text], check=True, timeout=30)
    return path


# -- what is said ---------------------------------------------------------------------

async def test_a_call_is_said_after_a_chime_twice_in_mandarin_and_not_silent(tmp_path):
    log = tmp_path / "speaker.jsonl"
    config = hall_config(tmp_path, voice_table(player=speaker(log)))
    async with hall(config, log) as h:
        tickets = await h.issue(12, ids=True)
        for ticket in tickets[:11]:             # A001 … A011 give up and leave
            r = await h.client.post(f"{API}/tickets/{ticket}/cancel")
            assert r.status_code == 200, r.text
        assert await h.call("5") == "A012"
        [played] = await h.said(1)
        detail = await h.detail_until(lambda d: d["said"] == 1, "A012 said")
        last = detail["last_announcement"]
        assert last["text"] == "请A012号到5号窗口办理"
        assert last["spoken"] == "请A 零一二号到5号窗口办理"     # letters as letters, digits one by one
        assert last["wav"] == played.wav and last["played"] is True
        assert detail["voice"] == "sit/cmn-latn-pinyin"

    clip = read_wav(played.wav)
    assert played.rms > 0.05 and clip.rms > 0.05                # not silent
    assert 5.0 < clip.duration < 15.0, clip.duration          # chime, words, pause, words
    # chime, a pause, the words, a longer pause, the same words again
    bell = chime(clip.rate)
    assert clip.frames.startswith(bell.frames)
    gap, between = (round(s * clip.rate) * 2 for s in (GAP_AFTER_CHIME_S, GAP_BETWEEN_S))
    first = len(bell.frames) + gap
    length = (len(clip.frames) - first - between) // 2
    said = [clip.frames[first:first + length], clip.frames[first + length + between:]]
    assert said[0] == said[1] and len(said[1]) == length
    assert not any(clip.frames[first - gap:first])                       # silent pauses
    assert not any(clip.frames[first + length:first + length + between])
    # espeak-ng's Mandarin says these words this long (pyttsx3 drives the same
    # library, a few samples apart once its worker has spoken before)
    words = read_wav(espeak_speech("请A 零一二号到5号窗口办理", tmp_path / "words.wav"))
    assert length / 2 == pytest.approx(words.samples, abs=50)


async def test_a_recall_says_it_again_and_a_transfer_has_its_own_words(tmp_path):
    log = tmp_path / "speaker.jsonl"
    config = hall_config(tmp_path, voice_table(
        player=speaker(log), merge_s=0, recall="请{number}号尽快到{window}办理",
        transfer="请{number}号到{target}等候"))
    async with hall(config, log) as h:
        await h.issue(1)
        await h.call("1")
        await h.press("1", "recall")
        await h.press("1", "transfer", window="5")
        played = await h.said(3)
        last = (await h.detail_until(lambda d: d["said"] == 3, "three said"))["last_announcement"]
        assert [p.wav for p in played] == [
            str(h.wav_of("请{number}号到{window}办理", "A001", "1号窗口")),
            str(h.wav_of("请{number}号尽快到{window}办理", "A001", "1号窗口")),
            str(h.wav_of("请{number}号到{window}等候", "A001", "5号窗口"))]
        assert (last["kind"], last["text"]) == ("transfer", "请A001号到5号窗口等候")


async def test_the_technicians_test_says_the_test_words(tmp_path):
    log = tmp_path / "speaker.jsonl"
    async with hall(hall_config(tmp_path, voice_table(player=speaker(log))), log) as h:
        r = await h.client.post(f"{API}/devices/voice/test")
        assert r.status_code == 200, r.text
        test = r.json()["detail"]["self_test"]
        assert test["text"] == "语音测试。请A001号到1号窗口办理" and test["played"] is True
        assert test["spoken"] == "语音测试。请A 零零一号到1号窗口办理"
        assert [p.wav for p in await h.said(1)] == [test["wav"]]


# -- order and timing ------------------------------------------------------------------

async def test_two_calls_in_quick_succession_are_said_in_order_and_never_overlap(tmp_path):
    log = tmp_path / "speaker.jsonl"
    config = hall_config(tmp_path, voice_table(player=speaker(log, speed=8)))
    async with hall(config, log) as h:
        await h.issue(3)
        await asyncio.gather(h.call("1"), h.call("5"))
        await h.call("1")                         # finishes A001 (or A002), calls A003
        played = await h.said(3)
        calls = [(e.data["number"], e.data["window_name"])
                 for e in h.app.state.bus.recent(("ticket.called",), 10)]
        calls.reverse()                            # oldest first
        assert [p.wav for p in played] == [
            str(h.wav_of("请{number}号到{window}办理", number, window)) for number, window in calls]
        for before, after in zip(played, played[1:]):
            assert after.started_at >= before.ended_at, "two announcements overlapped"


async def test_the_same_call_again_within_seconds_is_said_once(tmp_path):
    log = tmp_path / "speaker.jsonl"
    clock = Clock()
    config = hall_config(tmp_path, voice_table(player=speaker(log), merge_s=5))
    async with hall(config, log, clock) as h:
        await h.issue(1)
        await h.call("1")
        await h.press("1", "recall")              # a nervous second press, at once
        await h.detail_until(lambda d: d["merged"] == 1, "the recall to be merged")
        clock.advance(10)
        await h.press("1", "recall")              # ten seconds on: said again
        played = await h.said(2)
        assert played[0].wav == played[1].wav
        detail = await h.detail_until(lambda d: d["said"] == 2 and d["queue"] == 0, "two said")
        assert detail["merged"] == 1


async def test_a_call_that_waited_too_long_is_dropped_with_an_event(tmp_path):
    log = tmp_path / "speaker.jsonl"
    clock = Clock()
    config = hall_config(tmp_path, voice_table(player=speaker(log, speed=2), max_age_s=30))
    async with hall(config, log, clock) as h:
        await h.issue(2)
        await h.call("1")
        await h.until(lambda: len(h.played()) == 1, "A001 to begin")
        await h.call("5")                          # A002 waits behind A001 …
        clock.advance(31)                          # … longer than max_age_s
        await h.detail_until(lambda d: d["dropped"] == 1 and d["queue"] == 0, "A002 dropped")
        dropped = h.app.state.bus.recent(("announcement.dropped",), 5)
        assert [(e.data["number"], e.data["window"], e.data["device"]) for e in dropped] == \
            [("A002", "5", "voice")]
        assert "waited too long" in dropped[0].data["reason"]
        await h.said(1)
        assert len(h.played()) == 1                # A002 was never said late


# -- zones -------------------------------------------------------------------------------

async def test_each_window_is_called_by_the_voice_of_its_zone(tmp_path):
    logs = {zone: tmp_path / f"{zone}.jsonl" for zone in ("floor_1", "floor_2")}
    config = hall_config(
        tmp_path, voice_table("floor_1", player=speaker(logs["floor_1"])) +
        voice_table("floor_2", player=speaker(logs["floor_2"])),
        window_1='voice = "floor_1"', window_5='voice = "floor_2"')
    async with hall(config, devices=("floor_1", "floor_2")) as h:
        await h.issue(2)
        await h.call("1")
        await h.call("5")
        for zone, text in (("floor_1", "请A001号到1号窗口办理"), ("floor_2", "请A002号到5号窗口办理")):
            detail = await h.detail_until(lambda d: d["said"] >= 1, f"{zone} to speak", zone)
            assert detail["last_announcement"]["text"] == text
            assert detail["said"] == 1
            assert len(read_log(logs[zone])) == 1


# -- speed: the cache and the words made ahead --------------------------------------------

async def test_the_next_call_is_synthesised_ahead_and_said_from_the_cache(tmp_path):
    log = tmp_path / "speaker.jsonl"
    async with hall(hall_config(tmp_path, voice_table(player=speaker(log))), log) as h:
        await h.issue(1)
        # window 1 and window 5 both serve property: the head of the line, A001, is
        # made ahead for each of them
        await h.detail_until(lambda d: d["synthesised"] == 2, "A001 to be made ahead twice")
        await h.call("5")
        last = (await h.detail_until(lambda d: d["said"] == 1, "A001 said"))["last_announcement"]
        assert last["cached"] is True
        cache = (await h.device("voice"))["detail"]["cache"]
        assert (cache["hits"], cache["misses"]) == (1, 0)
        assert Path(last["wav"]).parent == tmp_path / "var" / "audio"


def test_the_cache_stays_under_its_limit_dropping_the_clips_used_least_recently(tmp_path):
    from drivers.voice.cache import ClipCache
    from drivers.voice.wav import silence, write_wav
    clip = silence(8000, 0.125)                   # 1000 samples: a 2044-byte file
    size = 44 + 2 * clip.samples
    cache = ClipCache(tmp_path, limit_bytes=5 * size)
    (tmp_path / "left-over.wav").write_bytes(b"not a WAV")
    keys = [cache.key({"words": f"请A 零零{n}号"}) for n in range(6)]
    for age, key in enumerate(keys):              # 6 clips, oldest first
        write_wav(cache.path(key), clip)
        os.utime(cache.path(key), (1_000_000 + age, 1_000_000 + age))
    cache.measure()
    assert not (tmp_path / "left-over.wav").exists()
    assert cache.find(keys[0]) == 0.125           # the oldest is used again: kept
    write_wav(cache.path(newest := cache.key({"words": "请B 零零一号"})), clip)
    cache.added(newest, clip.duration)            # 7 clips: over the limit of 5
    kept = {key for key in keys + [newest] if cache.path(key).exists()}
    assert kept == {keys[0], keys[4], keys[5], newest}     # down to 4, 80 % of the limit
    assert cache.stats()["bytes"] == 4 * size
    assert cache.find(keys[1]) is None


async def test_without_a_player_the_wavs_are_kept_and_nothing_plays(tmp_path):
    async with hall(hall_config(tmp_path, voice_table(player="[]", ahead=False))) as h:
        await h.issue(1)
        await h.call("1")
        detail = await h.detail_until(lambda d: d["said"] == 1, "A001 made")
        last = detail["last_announcement"]
        assert last["played"] is False and last["problem"] is None
        assert read_wav(last["wav"]).rms > 0.05
        assert (await h.device("voice"))["state"] == "ready"


async def test_the_demo_halls_voice_writes_real_wavs(tmp_path):
    async with hall(demo_hall(tmp_path, printer_port=free_port())) as h:
        r = await h.client.post(f"{API}/tickets", json={"service": "property"})
        assert r.status_code == 201, r.text
        assert await h.call("3") == "A001"
        detail = await h.detail_until(lambda d: d["said"] == 1, "A001 to be said")
        last = detail["last_announcement"]
        assert last["text"] == "请A001号到3号窗口办理"
        assert last["played"] is False             # player = []: the WAVs are kept
        wav = Path(last["wav"])
        assert wav.parent == tmp_path / "var" / "audio"
        clip = read_wav(wav)
        assert clip.rms > 0.05 and clip.duration == pytest.approx(last["duration_s"], abs=0.01)


# -- failures ----------------------------------------------------------------------------

async def test_a_hung_synthesis_worker_is_replaced_and_the_call_is_still_said(tmp_path):
    log = tmp_path / "speaker.jsonl"
    config = hall_config(tmp_path, voice_table(player=speaker(log), ahead=False, timeout=2))
    async with hall(config, log) as h:
        worker = h.driver()._synth.pid
        os.kill(worker, signal.SIGSTOP)           # the engine hangs
        try:
            await h.issue(1)
            r = await h.press("1", "call-next")
            assert r.json()["number"] == "A001"   # the call itself never waits for the voice
            played = await h.said(1)
        finally:
            try:
                os.kill(worker, signal.SIGKILL)
            except ProcessLookupError:
                pass
        detail = await h.detail_until(lambda d: d["said"] == 1, "A001 said")
        synth = detail["synthesizer"]
        assert synth["replaced"] == 1 and synth["pid"] != worker
        assert played[0].wav == str(h.wav_of("请{number}号到{window}办理", "A001", "1号窗口"))
        assert (await h.device("voice"))["state"] == "ready"


async def test_calls_waiting_while_the_voice_reconnects_are_all_said_in_order(tmp_path):
    log = tmp_path / "speaker.jsonl"
    config = hall_config(tmp_path, voice_table(player=speaker(log), ahead=False, timeout=2))
    async with hall(config, log) as h:
        worker = h.driver()._synth.pid
        os.kill(worker, signal.SIGSTOP)           # the engine hangs on the first call's words
        await h.issue(2)
        await h.call("1")
        await h.call("5")
        r = await h.client.post(f"{API}/devices/voice/reconnect")   # a technician steps in
        assert r.status_code == 200, r.text
        played = await h.said(2)
        assert [p.wav for p in played] == [
            str(h.wav_of("请{number}号到{window}办理", "A001", "1号窗口")),
            str(h.wav_of("请{number}号到{window}办理", "A002", "5号窗口"))]
        detail = await h.detail_until(lambda d: d["said"] == 2, "both said")
        assert detail["dropped"] == 0
        assert not Path(f"/proc/{worker}").exists() or \
            Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z"    # the hung one is gone


async def test_a_failing_player_degrades_the_device_and_calls_go_on(tmp_path):
    log = tmp_path / "speaker.jsonl"
    broken = tmp_path / "amplifier-off"
    script = tmp_path / "player.sh"                # a player that fails while the amplifier is off
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        if [ -e {broken} ]; then echo "player: no output device" >&2; exit 1; fi
        exec {sys.executable} -m drivers.voice.speaker --log {log} --speed 20 "$1"
        """))
    script.chmod(0o755)
    broken.touch()
    async with hall(hall_config(tmp_path, voice_table(player=json.dumps([str(script)]))), log) as h:
        await h.issue(3)
        await h.call("1")
        degraded = await h.state("voice", "degraded")
        assert degraded["last_error"] == "player " + str(script) + \
            " failed (exit 1): player: no output device"
        assert await h.call("5") == "A002"        # calls go on
        await h.detail_until(lambda d: d["said"] == 2, "the second call to be tried")
        broken.unlink()
        await h.call("1")
        await h.state("voice", "ready")
        assert len(await h.said(1)) == 1


async def test_a_hung_player_is_stopped_and_the_device_degraded(tmp_path):
    log = tmp_path / "speaker.jsonl"
    config = hall_config(tmp_path, voice_table(
        player=speaker(log, "--hang"), template="{number}", repeat=1, chime="", timeout=2))
    async with hall(config, log) as h:
        await h.issue(2)
        await h.call("1")
        degraded = await h.state("voice", "degraded")
        assert "did not finish within" in degraded["last_error"]
        await h.call("5")
        await h.detail_until(lambda d: d["said"] == 2, "the next call to be tried too")
        pids = [p.pid for p in h.played()]
    for pid in pids:                               # each hung player was killed
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


# -- configuration -------------------------------------------------------------------------

def problems(tmp_path: Path, voice: str, window_5: str = "") -> list[str]:
    from kioskd.config import ConfigError
    text = hall_text(voice, window_5=window_5)
    with pytest.raises(ConfigError) as caught:
        loads_config(text, base_dir=tmp_path)
    return caught.value.problems


def test_bad_voice_options_are_named(tmp_path):
    assert problems(tmp_path, """
        [devices.voice]
        driver = "voice"
        engine = "festival"
        volume = 1.5
        template = "请{number}号到{counter}办理"
        transfer = "{target}"
        chime = "sounds/ding.wav"
        repeat = 0
        rate = 20
        colour = "red"
    """) == [
        "[devices.voice] engine: 'festival' is not one of pyttsx3, espeak-ng",
        "[devices.voice] rate: 20 is out of range; expected 60 to 450",
        "[devices.voice] volume: 1.5 is out of range; expected 0 to 1",
        "[devices.voice] template: unknown field {counter}; this template takes {number}, "
        "{window}, {service}",
        "[devices.voice] repeat: 0 is out of range; expected 1 to 5",
        f"[devices.voice] chime: no file at {tmp_path}/sounds/ding.wav; give a WAV file, "
        "\"builtin\" or \"\" for no chime",
        "[devices.voice]: unknown key 'colour'",
    ]


def test_a_windows_voice_must_be_a_voice_device(tmp_path):
    assert problems(tmp_path, """
        [devices.printer]
        driver = "escpos"
        connection = "tcp://127.0.0.1:9100"
    """, window_5='voice = "printer"') == [
        "[windows.5] voice: device 'printer' is an escpos device, not a voice caller"]
