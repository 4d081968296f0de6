"""Window keypads: the clerk's caller keypad (呼叫器) and the citizen's rating keypad (评价器) (`driver = "keypad"`).

A keypad is a client of the queue like the clerk's console: each keypad acts
for one window, and each of its keys is an action (call the next ticket, rate
the service 满意). One device is one way keypads reach the daemon:

- **a serial link** — an RS-485 bus the keypads hang on, or the serial port a
  wireless receiver shows up as. Keypads send key frames the vendor defines,
  described in `[devices.ID.frame]` like a text board's (drivers/frames.py),
  with a "key" field for the key's code. Each keypad has an address: the
  `keypads` table maps caller keypads to windows, `raters` the rating keypads.
  Where keypads have a small display or a buzzer, `[devices.ID.answer]`
  describes the frame kioskd answers with: the number just called, or a
  short beep when there is nothing to do.

      [devices.keypads]
      driver = "keypad"
      port = "/dev/ttyUSB2"      # baudrate, bytesize, parity, stopbits too
      debounce_s = 0.8           # one key again within this long (held, pressed twice) acts once
      emulate = false            # true: kioskd runs emulated keypads behind `port` (the demo)
      [devices.keypads.frame]    # what a keypad sends
      layout = ["header", "address", "key", "checksum", "trailer"]
      header = "AA"
      checksum = "xor8"
      trailer = "55"
      [devices.keypads.answer]   # optional: what kioskd sends a keypad
      layout = ["header", "address", "command", "length", "text", "checksum", "trailer"]
      header = "AA"
      command = "31"             # show the text on the keypad's display
      beep = "32"                # beep (the text empty)
      rate_prompt = "{number}请评价"   # a rating keypad's display once its window completed
      thanks = "谢谢"            # ... once that ticket is rated (cleared when its time is up)
      [devices.keypads.poll]     # optional: keypads that speak only when asked, in turn
      command = "50"             # the poll, in the answer frame (its text empty)
      reply_timeout = 0.05       # seconds each keypad has to answer
      idle_key = "00"            # what a keypad answers when nothing was pressed
      ...
      [devices.keypads.keypads]  # caller keypads: address = window
      3 = "3"
      [devices.keypads.keys]     # their keys: code (hex, as the frame carries it) = action
      "01" = "call-next"
      "02" = "recall"
      [devices.keypads.raters]   # rating keypads: address = window
      103 = "3"
      [devices.keypads.rater_keys]
      "01" = "rate:5"

- **a USB keypad that types like a keyboard**, read through evdev with an
  exclusive grab, so its keys never reach the kiosk's screen. It is one keypad
  for one window; its keys are evdev's names:

      [devices.keypad_3]
      driver = "keypad"
      input = "/dev/input/by-id/usb-0483_5750-event-kbd"
      window = "3"
      [devices.keypad_3.keys]
      KEY_KP1 = "call-next"

Actions: call-next, recall, start, complete, no-show, pause, resume,
pause-resume (one key for both), transfer:SERVICE (the current ticket to that
service) and rate:1 … rate:5 (5 非常满意 … 1 非常不满意).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..base import Options
from ..frames import FrameSpec, hex_bytes, read_frame, read_frame_table, read_hex
from ..serialbus import SerialLine, emulation_problem, read_line
from ..templates import template_problem

ACTIONS = ("call-next", "recall", "start", "complete", "no-show", "pause", "resume",
           "pause-resume")
LEVELS = range(1, 6)
DEBOUNCE_S = 0.8


@dataclass(frozen=True)
class Action:
    """What a key does: one of ACTIONS, a transfer to a service, or a rating level."""

    kind: str                     # an ACTIONS name, "transfer" or "rate"
    service: str | None = None    # transfer: the service the ticket goes to
    level: int | None = None      # rate: 1-5

    def __str__(self) -> str:
        if self.kind == "transfer":
            return f"transfer:{self.service}"
        if self.kind == "rate":
            return f"rate:{self.level}"
        return self.kind


def parse_action(text: str) -> Action | str:
    """The action `text` names, or why it names none."""
    if text in ACTIONS:
        return Action(text)
    kind, _, argument = text.partition(":")
    if kind == "transfer" and argument:
        return Action("transfer", service=argument)
    if kind == "rate" and argument.isdigit() and int(argument) in LEVELS:
        return Action("rate", level=int(argument))
    if kind == "rate":
        return f"'{text}': a rating is rate:1 to rate:5 (5 非常满意 … 1 非常不满意)"
    return (f"'{text}' is not an action; actions are {', '.join(ACTIONS)}, "
            f"transfer:SERVICE and rate:1 to rate:5")


@dataclass(frozen=True)
class Keypad:
    """One keypad: where it is, the window it acts for, what its keys do."""

    address: int | None           # on its bus; None for a keyboard keypad
    window: str
    keys: Mapping[str, Action]    # key code ("01", "KEY_KP1") -> action
    kind: str = "caller"          # "caller" (呼叫器) or "rater" (评价器)


RATE_PROMPT = "{number}请评价"
THANKS = "谢谢"


@dataclass(frozen=True)
class Answer:
    """How kioskd answers a keypad: a frame, its commands, and what a rating keypad shows."""

    frame: FrameSpec
    show: bytes                   # the frame's `command`: show the text on the display
    beep: bytes | None            # a short beep, where the keypad has a buzzer
    rate_prompt: str = RATE_PROMPT    # a rating keypad, once its window completed a ticket
    thanks: str = THANKS              # ... once that ticket is rated


@dataclass(frozen=True)
class Poll:
    """Keypads that speak only when asked: kioskd asks each in turn (a polled RS-485 bus)."""

    command: bytes                # the poll: the answer frame with this command, its text empty
    reply_timeout: float = 0.05   # seconds a keypad has to answer before the next is asked
    idle_key: str | None = None   # the key code a keypad answers when nothing was pressed


@dataclass(frozen=True)
class Settings:
    BUS_ADDRESS: ClassVar[str | None] = None   # the whole port is this device's: no address

    keypads: Mapping[int | None, Keypad]
    line: SerialLine | None = None            # a serial link ...
    frame: FrameSpec | None = None
    answer: Answer | None = None
    poll: Poll | None = None                  # None: keypads send when pressed
    input: str | None = None                  # ... or an evdev input device
    debounce_s: float = DEBOUNCE_S
    emulate: bool = False


def configure(options: Options) -> Settings | None:
    """Read `[devices.ID]` for keypads; None when it has problems."""
    has_port = options.string("port") is not None
    has_input = options.string("input") is not None
    ways = ("`port` (keypads on a serial link: an RS-485 bus or a receiver's port) or "
            "`input` (a USB keypad that types like a keyboard)")
    if has_port and has_input:
        options.problem("port", f"give either {ways}, not both")
        return None
    if not has_port and not has_input:
        options.problem(None, f"missing {ways}")
        return None
    debounce_s = options.number("debounce_s", DEBOUNCE_S)
    if not 0 <= debounce_s <= 10:
        options.problem("debounce_s", f"{debounce_s:g} is out of range; expected 0 to 10 "
                                      "seconds")
        debounce_s = DEBOUNCE_S
    if has_input:
        return _configure_keyboard(options, debounce_s)
    return _configure_serial(options, debounce_s)


def _configure_serial(options: Options, debounce_s: float) -> Settings | None:
    line = read_line(options)
    frame = read_frame(options, keys=True)
    answer = _read_answer(options, frame)
    poll = _read_poll(options, frame, answer)
    emulate = options.boolean("emulate", False)
    keypads: dict[int | None, Keypad] = {}
    ok = line is not None and frame is not None and answer is not False and poll is not False
    for kind, table_name, keys_name in (("caller", "keypads", "keys"),
                                        ("rater", "raters", "rater_keys")):
        addresses = options.table(table_name)
        keys_table = options.table(keys_name)
        if addresses is None:
            if keys_table is not None:
                options.problem(keys_name, f"is set but there is no [{table_name}] table "
                                           "mapping keypad addresses to windows")
            continue
        keys = _read_keys(keys_table, options, keys_name,
                          lambda text: _key_code(text, frame), table_name)
        if keys is None:
            ok = False
            continue
        for text in addresses.keys():
            window = addresses.string(text, required=True)
            address = _address(text, frame)
            if isinstance(address, str):
                addresses.problem(text, address)
                ok = False
            elif address in keypads:
                addresses.problem(text, f"keypad address {address} is also a "
                                        f"{keypads[address].kind} keypad's; every keypad on "
                                        "a bus needs its own")
                ok = False
            elif window is not None:
                keypads[address] = Keypad(address, window, keys, kind)
            else:
                ok = False
    if ok and not keypads:
        options.problem("keypads", "no keypads: map each keypad's address to its window in "
                                   "[devices.ID.keypads] (callers) or [devices.ID.raters]")
        ok = False
    problem = emulation_problem(line.port) if emulate and line is not None else None
    if problem:
        options.problem("emulate", problem)
        ok = False
    if not ok:
        return None
    return Settings(keypads=keypads, line=line, frame=frame, answer=answer or None,
                    poll=poll or None, debounce_s=debounce_s, emulate=emulate)


def _configure_keyboard(options: Options, debounce_s: float) -> Settings | None:
    path = options.path("input", required=True)
    window = options.string("window", required=True)
    keys = _read_keys(options.table("keys"), options, "keys", _key_name, None)
    if path is None or window is None or keys is None:
        return None
    return Settings(keypads={None: Keypad(None, window, keys)}, input=path,
                    debounce_s=debounce_s)


def _read_answer(options: Options, frame: FrameSpec | None) -> Answer | None | bool:
    """The answer frame, None when there is none, False when it is broken."""
    table = options.table("answer")
    if table is None:
        return None
    beep = read_hex(table, "beep")
    texts = {}
    for key, default in (("rate_prompt", RATE_PROMPT), ("thanks", THANKS)):
        text = table.string(key, default, allow_empty=True)
        problem = template_problem(text, ("number", "window"), "a keypad's text")
        if problem:
            table.problem(key, problem)
            text = default
        texts[key] = text
    spec = read_frame_table(table)
    table.finish_unread()
    if spec is None:
        return False
    if spec.ack is not None:
        table.problem("ack", "kioskd does not wait for a keypad to acknowledge an answer "
                             "(a missed number is shown again by the next key); leave it out")
        return False
    if beep is not None and len(beep) != len(spec.command):
        table.problem("beep", f"is {len(beep)} bytes but the command is "
                              f"{len(spec.command)}; a command field has one width")
        return False
    if frame is not None and spec.address_bytes != frame.address_bytes:
        table.problem("address_bytes", f"is {spec.address_bytes} but the key frame's is "
                                       f"{frame.address_bytes}: one keypad, one address")
        return False
    return Answer(spec, spec.command, beep, **texts)


def _read_poll(options: Options, frame: FrameSpec | None,
               answer: Answer | None | bool) -> Poll | None | bool:
    """The poll table, None when there is none, False when it is broken."""
    table = options.table("poll")
    if table is None:
        return None
    command = read_hex(table, "command", required=True)
    reply_timeout = table.number("reply_timeout", Poll.reply_timeout, above=0)
    idle = table.string("idle_key")
    table.finish_unread()
    if answer is None:
        options.problem("poll", "needs an [devices.ID.answer] table: a poll is sent in the "
                                "frame kioskd answers keypads with")
        return False
    if command is None or answer is False:
        return False
    if len(command) != len(answer.show):
        table.problem("command", f"is {len(command)} bytes but the answer frame's command is "
                                 f"{len(answer.show)}")
        return False
    if command in (answer.show, answer.beep):
        table.problem("command", "is the answer frame's show or beep command too")
        return False
    idle_key = None
    if idle is not None:
        idle_key = _key_code(idle, frame)
        if isinstance(idle_key, tuple):
            table.problem("idle_key", idle_key[0])
            return False
    return Poll(command, reply_timeout, idle_key)


def _read_keys(table: Options | None, options: Options, name: str, code, addresses: str | None
               ) -> dict[str, Action] | None:
    """A key map: code -> action; None (reported) when missing or broken."""
    if table is None:
        whose = f"the keypads in [{addresses}]" if addresses else "this keypad"
        options.problem(name, f"missing table: say what each key of {whose} does "
                              '("01" = "call-next", "02" = "recall", ...)')
        return None
    keys: dict[str, Action] = {}
    ok = True
    for text in table.keys():
        value = table.string(text, required=True)
        key = code(text)
        if key is None:
            ok = False
            continue
        if isinstance(key, tuple):             # (problem,)
            table.problem(text, key[0])
            ok = False
            continue
        if value is None:
            ok = False
            continue
        action = parse_action(value)
        if isinstance(action, str):
            table.problem(text, action)
            ok = False
        elif key in keys:
            table.problem(text, f"is the key {key} again")
            ok = False
        else:
            keys[key] = action
    if ok and not keys:
        table.problem(None, "is empty: a keypad needs at least one key")
        return None
    return keys if ok else None


def _key_code(text: str, frame: FrameSpec | None) -> str | tuple[str] | None:
    """A serial key code as written ("01", "0x01", "01 02"), in the form /devices shows."""
    try:
        data = bytes.fromhex(text.removeprefix("0x").removeprefix("0X"))
    except ValueError:
        return (f"'{text}' is not a key code: write the code's hex bytes as the frame "
                'carries them, e.g. "01"',)
    if frame is None:
        return None
    if len(data) != frame.key_bytes:
        return (f"'{text}' is {len(data)} bytes; the frame's key field is {frame.key_bytes}",)
    return hex_bytes(data)


def _key_name(text: str) -> str | tuple[str]:
    try:
        from evdev import ecodes     # here: only a keyboard keypad needs evdev
    except ImportError:
        return ("cannot be checked: the evdev package is missing (keyboard keypads need "
                "Linux and `pip install evdev`)",)

    if text not in ecodes.ecodes or not text.startswith(("KEY_", "BTN_")):
        return (f"'{text}' is not a key's evdev name (KEY_KP1, KEY_F1, KEY_ENTER, ...; "
                "`evtest` shows them)",)
    return text


def _address(text: str, frame: FrameSpec | None) -> int | str:
    if not text.isdigit():
        return f"'{text}' is not a keypad address: write its number, e.g. 3 = \"3\""
    address = int(text)
    if frame is not None and address >= 256 ** frame.address_bytes:
        return (f"address {address} does not fit the frame's {frame.address_bytes}-byte "
                "address field")
    return address


def create(device_id: str, settings: Settings, *, timeout: float, data_dir: Path):
    if settings.input is not None:
        from .keyboard import KeyboardKeypad
        return KeyboardKeypad(device_id, settings, timeout)
    from .serial_link import SerialKeypads
    return SerialKeypads(device_id, settings, timeout)


def emulate(device_id: str, settings: Settings, *, data_dir: Path):
    """The emulated keypads an `emulate = true` device reads; None otherwise."""
    if not settings.emulate:
        return None
    from .emulator import EmulatedKeypads
    return EmulatedKeypads(device_id, settings)
