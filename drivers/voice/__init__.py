"""The voice caller (`driver = "voice"`): a chime, then "请A012号到5号窗口办理", twice.

    [devices.voice]
    driver = "voice"
    engine = "pyttsx3"              # or "espeak-ng" (its command line)
    voice = "sit/cmn-latn-pinyin"   # espeak-ng's Mandarin that reads Latin letters by name
    rate = 150                      # words per minute
    volume = 1.0                    # 0 … 1
    player = ["aplay", "-q"]        # the WAV's path is added last; [] = keep the files, play nothing
    template = "请{number}号到{window}办理"
    recall = ""                     # a recall's words; "" = the template again
    transfer = ""                   # said at the window a ticket leaves; "" = say nothing
    repeat = 2                      # times the words are said after the chime
    chime = "builtin"               # a generated ding-dong, a path to a WAV, or "" for none
    merge_s = 5                     # the same words again within this many seconds: said once
    max_age_s = 60                  # an announcement not begun this long after its call is dropped
    ahead = true                    # synthesise the likely next calls before they are made
    cache_mb = 256                  # the WAV cache under data_dir/audio is kept below this

Templates take `{number}` (read A 零一二), `{window}` (the window's name),
`{service}` (the service's name) and, in `transfer`, `{target}` (the window
or service the ticket goes to). The device's `timeout` bounds one synthesis;
a player may take the clip's length plus `timeout`. Each window's `voice`
key says which voice device (zone) calls it; a window without one is
called by every voice device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..base import Options
from .speech import check_template
from .synth import VoiceSettings

ENGINES = ("pyttsx3", "espeak-ng")
BUILTIN_CHIME = "builtin"
TEMPLATE = "请{number}号到{window}办理"
CALL_FIELDS = ("number", "window", "service")
TRANSFER_FIELDS = CALL_FIELDS + ("target",)
TEST_WORDS = "语音测试。"                 # said before the template in a technician's test


@dataclass(frozen=True)
class Settings:
    speech: VoiceSettings
    player: tuple[str, ...] = ("aplay", "-q")
    template: str = TEMPLATE
    recall: str = ""
    transfer: str = ""
    repeat: int = 2
    chime: str = BUILTIN_CHIME          # BUILTIN_CHIME, "" or a WAV's path
    merge_s: float = 5.0
    max_age_s: float = 60.0
    ahead: bool = True
    cache_mb: int = 256

    @property
    def recall_template(self) -> str:
        return self.recall or self.template


def configure(options: Options) -> Settings | None:
    """Read `[devices.ID]` for a voice caller; None when it has problems."""
    ok = True
    default = Settings(VoiceSettings("pyttsx3"))
    engine = options.string("engine", default.speech.engine)
    if engine not in ENGINES:
        options.problem("engine", f"'{engine}' is not one of {', '.join(ENGINES)}")
        ok = False
    voice = options.string("voice", default.speech.voice)
    rate = options.integer("rate", default.speech.rate, low=60, high=450)
    volume = options.number("volume", default.speech.volume)
    if not 0 <= volume <= 1:
        options.problem("volume", f"{volume:g} is out of range; expected 0 to 1")
        ok = False
    player = options.strings("player", default.player)
    if player and not player[0].strip():
        options.problem("player", "the first item must be the program to run")
        ok = False
    templates = {}
    for key, fields, allow_empty in (("template", CALL_FIELDS, False),
                                     ("recall", CALL_FIELDS, True),
                                     ("transfer", TRANSFER_FIELDS, True)):
        text = options.string(key, getattr(default, key), allow_empty=allow_empty)
        problem = check_template(text, fields) if text else None
        if problem:
            options.problem(key, problem)
            ok = False
        templates[key] = text
    repeat = options.integer("repeat", default.repeat, low=1, high=5)
    chime = options.string("chime", default.chime, allow_empty=True)
    if chime and chime != BUILTIN_CHIME:
        chime = options.path("chime")
        if not Path(chime).is_file():
            options.problem("chime", f"no file at {chime}; give a WAV file, "
                                     f"\"{BUILTIN_CHIME}\" or \"\" for no chime")
            ok = False
    merge_s = options.number("merge_s", default.merge_s)
    if merge_s < 0:
        options.problem("merge_s", f"{merge_s:g} is out of range; expected 0 (never merge) or more")
        ok = False
    max_age_s = options.number("max_age_s", default.max_age_s, above=0)
    ahead = options.boolean("ahead", default.ahead)
    cache_mb = options.integer("cache_mb", default.cache_mb, low=1)
    if not ok:
        return None
    return Settings(VoiceSettings(engine, voice, rate, volume), player or (), repeat=repeat,
                    chime=chime or "", merge_s=merge_s, max_age_s=max_age_s, ahead=ahead,
                    cache_mb=cache_mb, **templates)


def create(device_id: str, settings: Settings, *, timeout: float, data_dir: Path):
    from .driver import Voice
    return Voice(device_id, settings, timeout, data_dir)
