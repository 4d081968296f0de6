"""Vendor-defined serial frames: read from devices.toml, encoded, and decoded from a byte stream.

Text boards (and the keypads that answer them) wrap their payload in frames
each vendor defines for itself: a header, an address, a command, sometimes a
line number, an effect and a length, the payload text in GBK or GB18030, a
checksum over some of the fields, a trailer. A `[devices.ID.frame]` table
describes one vendor's frame as data, so a new vendor is a new table, not new
code:

    [devices.hall_board.frame]
    layout = ["header", "address", "command", "line", "effect", "length", "text",
              "checksum", "trailer"]    # the fields in wire order
    header = "AA 55"                  # hex bytes, spaces optional
    address_bytes = 1                 # 1, 2 or 4
    byte_order = "big"                # of multi-byte address, line and length fields
    command = "31"                    # the show-text command, hex byte(s)
    line_bytes = 1                    # width of the line field (1 or 2)
    line_base = 1                     # the first line's number on the wire
    length_bytes = 1                  # width of the length field (1 or 2)
    length_span = ["text", "text"]    # what the length counts: the bytes of these fields
    encoding = "gb18030"              # or "gbk"
    checksum = "sum8"                 # sum8 | xor8 | crc16_modbus | none
    checksum_span = ["address", "text"]   # first and last field it covers, inclusive
    checksum_byte_order = "little"    # of a 2-byte checksum; CRC-16/MODBUS sends low byte first
    trailer = "0D 0A"
    ack = "06"                        # optional: the board answers this to each good frame

    [devices.hall_board.frame.effects]    # the effect field's value of each effect
    steady = "00"
    flash = "01"
    scroll = "02"

Rules (each broken one is a problem naming the table and key): `layout` has
header, address, command and text, each field at most once; a line, effect,
length, checksum or trailer field is in the layout exactly when its options
are set; the length field comes before the text, and without one a trailer
after the text ends it (so the text may not contain the trailer's bytes);
`checksum_span` defaults to every field between the header and the checksum.
The length field counts the bytes of the fields `length_span` names, by
default only the text's (the encoded text, without header, checksum or
trailer): a vendor counting "from address to checksum" writes
`length_span = ["address", "checksum"]`.

A keypad's key frame is described the same way (read with `keys=True`): its
layout has a "key" field (`key_bytes` wide, 1 or 2) carrying the key's code
instead of a command and a text, which it may still have:

    [devices.keypads.frame]
    layout = ["header", "address", "key", "checksum", "trailer"]
    header = "AA"
    key_bytes = 1
    checksum = "xor8"
    trailer = "55"

A frame without a text field has a fixed size and needs nothing to end it.

`FrameSpec.encode` builds a frame; `FrameDecoder` hunts a stream for headers
and returns each `Frame` or `Rejected` (bad checksum, wrong trailer, garbage),
resynchronising on the next header as a board does. Both know nothing about
boards: a line is an index (the wire carries `line_base + index`), an effect a
name, the text an opaque payload.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from functools import reduce

from .base import Options

FIELDS = ("header", "address", "command", "key", "line", "effect", "length", "text",
          "checksum", "trailer")
REQUIRED_FIELDS = ("header", "address", "command", "text")     # what a board's frame needs
KEY_FIELDS = ("header", "address", "key")                       # what a keypad's key frame needs
ENCODINGS = ("gb18030", "gbk")
BYTE_ORDERS = ("big", "little")
EFFECTS = ("steady", "flash", "scroll")
MAX_TEXT = 1024          # bytes of text a frame without a length field may carry


# --- checksums: each over bytes, an int of its width ---------------------------

def sum8(data: bytes) -> int:
    """The sum of the bytes, modulo 256."""
    return sum(data) & 0xFF


def xor8(data: bytes) -> int:
    """The bytes XORed together."""
    return reduce(lambda a, b: a ^ b, data, 0)


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS: polynomial 0x8005 reflected (0xA001), initial value 0xFFFF."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


CHECKSUMS = {"sum8": (sum8, 1), "xor8": (xor8, 1), "crc16_modbus": (crc16_modbus, 2)}


def hex_bytes(data: bytes) -> str:
    """b"\\xaa\\x55" -> "AA 55", as devices.toml writes bytes."""
    return data.hex(" ").upper()


# --- the frame description ------------------------------------------------------

@dataclass(frozen=True)
class FrameSpec:
    """One vendor's frame. Build it with `read_frame`; it checks nothing itself."""

    layout: tuple[str, ...]
    header: bytes
    command: bytes = b""            # a key frame may have none
    address_bytes: int = 1
    byte_order: str = "big"
    encoding: str = "gb18030"
    checksum: str = "none"
    checksum_span: tuple[str, str] = ("address", "text")
    checksum_byte_order: str = "little"
    length_bytes: int = 1
    length_span: tuple[str, str] = ("text", "text")
    line_bytes: int = 1
    line_base: int = 1
    trailer: bytes = b""
    effects: tuple[tuple[str, bytes], ...] = ()      # (name, value), steady first
    ack: bytes | None = None
    key_bytes: int = 1

    def has(self, name: str) -> bool:
        return name in self.layout

    @property
    def effect_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.effects)

    def width(self, name: str) -> int:
        """Bytes a fixed-width field takes on the wire (not the text)."""
        return {
            "header": len(self.header),
            "address": self.address_bytes,
            "command": len(self.command),
            "key": self.key_bytes,
            "line": self.line_bytes,
            "effect": len(self.effects[0][1]) if self.effects else 0,
            "length": self.length_bytes,
            "checksum": CHECKSUMS[self.checksum][1] if self.checksum in CHECKSUMS else 0,
            "trailer": len(self.trailer),
        }[name]

    def span(self, first_last: tuple[str, str]) -> tuple[str, ...]:
        first, last = first_last
        return self.layout[self.layout.index(first):self.layout.index(last) + 1]

    @property
    def max_text(self) -> int:
        """The most text bytes one frame can carry."""
        if not self.has("length"):
            return MAX_TEXT
        return 256 ** self.length_bytes - 1 - self._length_overhead

    @property
    def _length_overhead(self) -> int:
        return sum(self.width(name) for name in self.span(self.length_span) if name != "text")

    def encode(self, address: int, payload: bytes | str = b"", *, command: bytes | None = None,
               line: int | None = None, effect: str | None = None,
               key: bytes | None = None) -> bytes:
        """One frame to (or, a key frame, from) `address`. `payload` is the text's
        bytes (a str is encoded strictly with the frame's encoding); `line` is the
        line's index, top line 0 (default 0); `effect` an effect's name (default
        steady); `key` a key frame's key code. Raises ValueError for what the
        frame cannot carry."""
        if isinstance(payload, str):
            payload = payload.encode(self.encoding)
        if payload and not self.has("text"):
            raise ValueError("this frame has no text field")
        command = self.command if command is None else command
        if len(command) != len(self.command):
            raise ValueError(f"a command here is {len(self.command)} bytes, not {len(command)}")
        if self.has("key") != (key is not None):
            raise ValueError("a key frame carries a key code" if key is None
                             else "this frame has no key field")
        if key is not None and len(key) != self.key_bytes:
            raise ValueError(f"a key code here is {self.key_bytes} bytes, not {len(key)}")
        if line is not None and not self.has("line"):
            raise ValueError("this frame has no line field")
        if effect is not None and not self.has("effect"):
            raise ValueError("this frame has no effect field")
        if len(payload) > self.max_text:
            raise ValueError(f"{len(payload)} bytes of text; this frame carries at most "
                             f"{self.max_text}")
        if self.trailer and not self.has("length") and self.trailer in payload:
            raise ValueError(f"the text contains the trailer {hex_bytes(self.trailer)}, "
                             f"which would end the frame early")
        values = {"header": self.header, "command": command, "text": payload,
                  "trailer": self.trailer, "key": key or b"",
                  "address": _int_bytes(address, self.address_bytes, self.byte_order, "address")}
        if self.has("line"):
            values["line"] = _int_bytes(self.line_base + (line or 0), self.line_bytes,
                                        self.byte_order, "line number")
        if self.has("effect"):
            effects = dict(self.effects)
            name = effect or "steady"
            if name not in effects:
                raise ValueError(f"this board has no '{name}' effect")
            values["effect"] = effects[name]
        if self.has("length"):
            values["length"] = _int_bytes(len(payload) + self._length_overhead,
                                          self.length_bytes, self.byte_order, "length")
        if self.has("checksum"):
            values["checksum"] = self._checksum_bytes(values)
        return b"".join(values[name] for name in self.layout)

    def fit(self, text: str) -> tuple[bytes, set[str]]:
        """`text` as this frame's payload, and the characters that could not go as
        they are: control characters become spaces, those the encoding lacks '?',
        and characters past what a frame carries, or that would put the trailer in
        a text the trailer ends, are left out (never half a character)."""
        text = "".join(" " if char < " " or char == "\x7f" else char for char in text)
        guard = self.trailer if self.has("trailer") and not self.has("length") else b""
        try:
            payload = text.encode(self.encoding)
            if len(payload) <= self.max_text and not (guard and guard in payload):
                return payload, set()
        except UnicodeEncodeError:
            pass
        payload, lost = bytearray(), set()
        for char in text:
            try:
                data = char.encode(self.encoding)
            except UnicodeEncodeError:
                data = b"?"
                lost.add(char)
            candidate = payload + data
            if len(candidate) > self.max_text or (guard and guard in candidate):
                lost.add(char)
                continue
            payload = candidate
        return bytes(payload), lost

    def text(self, frame: Frame) -> str:
        """A frame's payload as text; bytes the encoding cannot read show as U+FFFD."""
        return frame.payload.decode(self.encoding, errors="replace")

    def _checksum_bytes(self, values: dict[str, bytes]) -> bytes:
        function, size = CHECKSUMS[self.checksum]
        covered = b"".join(values[name] for name in self.span(self.checksum_span))
        return function(covered).to_bytes(size, self.checksum_byte_order)

    def describe(self) -> str:
        """The frame in one line, for /devices: "AA 55 | address:1 | 31 | text(gb18030) | sum8 | 0D 0A"."""
        parts = []
        for name in self.layout:
            if name == "header":
                parts.append(hex_bytes(self.header))
            elif name == "command":
                parts.append(hex_bytes(self.command))
            elif name == "key":
                parts.append(f"key:{self.key_bytes}")
            elif name == "trailer":
                parts.append(hex_bytes(self.trailer))
            elif name == "text":
                parts.append(f"text({self.encoding})")
            elif name == "checksum":
                parts.append(f"{self.checksum}({'..'.join(self.checksum_span)})")
            else:
                parts.append(f"{name}:{self.width(name)}")
        return " | ".join(parts)


def _int_bytes(value: int, size: int, order: str, what: str) -> bytes:
    if not 0 <= value < 256 ** size:
        raise ValueError(f"{what} {value} does not fit in {size} byte{'s' if size > 1 else ''}")
    return value.to_bytes(size, order)


# --- reading [devices.ID.frame] ----------------------------------------------

def read_frame(options: Options, name: str = "frame", *, keys: bool = False) -> FrameSpec | None:
    """Read the `[devices.ID.<name>]` sub-table (a keypad's key frame with
    `keys`); None when it is missing or too broken to describe a frame (every
    problem is reported)."""
    table = options.table(name)
    if table is None:
        what = "layout, header, key, ..." if keys else "layout, header, command, ..."
        options.problem(name, f"missing table: describe the vendor's frame in a "
                              f"[devices.ID.{name}] table ({what})")
        return None
    spec = read_frame_table(table, keys=keys)
    table.finish_unread()
    return spec


def read_frame_table(table: Options, *, keys: bool = False) -> FrameSpec | None:
    """`read_frame` on a table already in hand, leaving its unread keys alone (a
    caller reading keys of its own in the same table finishes it)."""
    return _FrameReader(table, keys).read()


def read_hex(table: Options, key: str, *, required: bool = False) -> bytes | None:
    """A hex-bytes option ("AA 55"), reported against its table when it is not."""
    reader = _FrameReader(table, False)
    return reader.read_hex(key, required=required)


class _FrameReader:
    """One frame table being read; `ok` turns False on a problem that leaves no frame.
    `keys`: a keypad's key frame (a "key" field, no command or text needed)."""

    def __init__(self, table: Options, keys: bool):
        self.table = table
        self.keys = keys
        self.ok = True

    def problem(self, key: str | None, message: str) -> None:
        self.table.problem(key, message)
        self.ok = False

    def read(self) -> FrameSpec | None:
        t = self.table
        layout = self.read_layout()
        header = self.read_hex("header", required=True)
        known = layout is not None          # cross-checks need a layout that read well
        has = (lambda name: name in layout) if known else (lambda name: False)
        command = self.read_hex("command", required=not self.keys or has("command"))
        if self.keys and known and command is not None and not has("command"):
            self.problem("command", 'is set but the layout has no "command" field')
        key_bytes = self.read_width("key_bytes", 1, (1, 2))
        if known and not has("key") and key_bytes != 1:
            self.problem("key_bytes", 'is set but the layout has no "key" field')
        address_bytes = self.read_width("address_bytes", 1, (1, 2, 4))
        byte_order = self.read_choice("byte_order", "big", BYTE_ORDERS)
        encoding = self.read_choice("encoding", "gb18030", ENCODINGS)
        ack = self.read_hex("ack")

        line_bytes = self.read_width("line_bytes", 1, (1, 2))
        line_base = t.integer("line_base", 1, low=0, high=255)
        if known and not has("line") and (line_bytes != 1 or line_base != 1):
            self.problem("line_bytes" if line_bytes != 1 else "line_base",
                         'is set but the layout has no "line" field')
        length_bytes = self.read_width("length_bytes", 1, (1, 2))
        if known and not has("length") and length_bytes != 1:
            self.problem("length_bytes", 'is set but the layout has no "length" field')
        if has("length") and not has("text"):
            self.problem("layout", 'a "length" field needs a "text" field to count')
        length_span = self.read_span("length_span", layout, ("text", "text"),
                                     has("length") and has("text"))
        if has("length") and has("text") and length_span is not None:
            if "text" not in layout[layout.index(length_span[0]):layout.index(length_span[1]) + 1]:
                self.problem("length_span", "must include the text: the length is what tells "
                                            "the board where the text ends")

        trailer = self.read_hex("trailer")
        if known:
            if has("trailer") and trailer is None:
                self.problem("trailer", "missing: the layout has a trailer field")
            elif trailer is not None and not has("trailer"):
                self.problem("trailer", 'is set but the layout has no "trailer" field; add it '
                                        'where the vendor puts it (usually last)')

        checksum = t.string("checksum")
        if checksum is not None and checksum not in ("none", *CHECKSUMS):
            self.problem("checksum", f"'{checksum}' is not one of none, {', '.join(CHECKSUMS)}")
            checksum = None
        if known:
            if has("checksum") and checksum in (None, "none"):
                self.problem("checksum", "missing: the layout has a checksum field; say which "
                                         f"({', '.join(CHECKSUMS)})")
            elif checksum not in (None, "none") and not has("checksum"):
                self.problem("checksum", f"is '{checksum}' but the layout has no \"checksum\" "
                                         "field; add it, or write checksum = \"none\"")
        checksum_span = self.read_span("checksum_span", layout, self.default_checksum_span(layout),
                                       has("checksum"))
        if checksum_span is not None and has("checksum") and "checksum" in layout[
                layout.index(checksum_span[0]):layout.index(checksum_span[1]) + 1]:
            self.problem("checksum_span", "cannot include the checksum itself")
        checksum_byte_order = self.read_choice("checksum_byte_order", "little", BYTE_ORDERS)
        if checksum_byte_order != "little" and CHECKSUMS.get(checksum or "", (None, 0))[1] < 2:
            self.problem("checksum_byte_order", "only a 2-byte checksum (crc16_modbus) has a "
                                                "byte order")

        effects = self.read_effects(has("effect") if known else None)

        if known and has("text") and not has("length") and (
                not has("trailer") or layout.index("trailer") < layout.index("text")):
            self.problem("layout", "nothing ends the text: put a \"length\" field before it, "
                                   "or a \"trailer\" after it")
        if not self.ok or layout is None or header is None or (command is None
                                                                  and has("command")):
            return None
        return FrameSpec(
            layout=layout, header=header, command=command or b"", key_bytes=key_bytes,
            address_bytes=address_bytes,
            byte_order=byte_order, encoding=encoding,
            checksum=checksum if has("checksum") else "none",
            checksum_span=checksum_span or ("address", "text"),
            checksum_byte_order=checksum_byte_order, length_bytes=length_bytes,
            length_span=length_span or ("text", "text"), line_bytes=line_bytes,
            line_base=line_base, trailer=trailer or b"", effects=effects, ack=ack)

    def read_layout(self) -> tuple[str, ...] | None:
        layout = self.table.strings("layout", required=True)
        if layout is None:
            self.ok = False
            return None
        problems = 0
        for name in layout:
            if name not in FIELDS:
                close = difflib.get_close_matches(name, FIELDS, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.problem("layout", f"unknown field '{name}'{hint}; fields are "
                                       + ", ".join(FIELDS))
                problems += 1
        for name in set(layout):
            if layout.count(name) > 1:
                self.problem("layout", f"'{name}' is listed {layout.count(name)} times")
                problems += 1
        if "key" in layout and not self.keys:
            self.problem("layout", 'a board\'s frame has no "key" field (that is a keypad\'s)')
            problems += 1
        missing = [name for name in (KEY_FIELDS if self.keys else REQUIRED_FIELDS)
                   if name not in layout]
        if missing:
            self.problem("layout", "must include " + ", ".join(f'"{name}"' for name in missing))
            problems += 1
        if problems:
            return None
        if "length" in layout and "text" in layout and layout.index("length") > layout.index("text"):
            self.problem("layout", "the length field must come before the text")
        return layout

    def read_hex(self, key: str, *, required: bool = False) -> bytes | None:
        text = self.table.string(key, required=required)
        if text is None:
            if required:
                self.ok = False
            return None
        try:
            data = bytes.fromhex(text)
        except ValueError:
            self.problem(key, f"'{text}' is not hex bytes; write them like \"AA 55\"")
            return None
        if not data:
            self.problem(key, "must hold at least one byte")
            return None
        return data

    def read_width(self, key: str, default: int, allowed: tuple[int, ...]) -> int:
        value = self.table.integer(key, default, low=min(allowed), high=max(allowed))
        if value not in allowed:
            self.problem(key, f"{value} is not one of {', '.join(map(str, allowed))}")
            return default
        return value

    def read_choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.table.string(key, default)
        if value not in allowed:
            self.problem(key, f"'{value}' is not one of {', '.join(allowed)}")
            return default
        return value

    def default_checksum_span(self, layout: tuple[str, ...] | None) -> tuple[str, str] | None:
        """Every field between the header and the checksum, when there are any."""
        if not layout or "checksum" not in layout:
            return None
        inside = layout[layout.index("header") + 1:layout.index("checksum")]
        return (inside[0], inside[-1]) if inside else None

    def read_span(self, key: str, layout: tuple[str, ...] | None,
                  default: tuple[str, str] | None, in_layout: bool) -> tuple[str, str] | None:
        span = self.table.strings(key)
        if layout is None:
            return default
        if span is None:
            if in_layout and default is None:
                self.problem(key, 'missing: name the first and last field it covers, '
                                  'e.g. ["address", "text"]')
            return default
        if not in_layout:
            field_name = key.split("_")[0]
            self.problem(key, f'is set but the layout has no "{field_name}" field')
            return None
        if len(span) != 2:
            self.problem(key, f'needs the first and last field it covers, e.g. ["address", '
                              f'"text"], not {len(span)} name{"s" if len(span) != 1 else ""}')
            return None
        for name in span:
            if name not in layout:
                self.problem(key, f"'{name}' is not in the layout")
                return None
        first, last = span
        if layout.index(first) > layout.index(last):
            self.problem(key, f"'{first}' comes after '{last}' in the layout; write the "
                              f"first field first")
            return None
        return (first, last)

    def read_effects(self, in_layout: bool | None) -> tuple[tuple[str, bytes], ...]:
        """The effects table; `in_layout` None when the layout is unknown."""
        effects = self.table.table("effects")
        if effects is None:
            if in_layout:
                self.problem("effects", "missing: the layout has an effect field; give each "
                                        "effect's byte in a [devices.ID.frame.effects] table "
                                        "(steady = \"00\", flash = \"01\")")
            return ()
        values = []
        for name in EFFECTS:
            text = effects.string(name)
            if text is None:
                continue
            try:
                value = bytes.fromhex(text)
            except ValueError:
                effects.problem(name, f"'{text}' is not hex bytes; write them like \"01\"")
                self.ok = False
                continue
            if not value:
                effects.problem(name, "must hold at least one byte")
                self.ok = False
                continue
            values.append((name, value))
        effects.finish_unread()
        if in_layout is False:
            self.problem("effects", 'is set but the layout has no "effect" field')
            return ()
        names = [name for name, _ in values]
        if "steady" not in names:
            effects.problem("steady", "missing: a line that does not flash is shown steady")
            self.ok = False
        if len({len(value) for _, value in values}) > 1:
            effects.problem(None, "every effect must have the same number of bytes")
            self.ok = False
        if len({value for _, value in values}) < len(values):
            effects.problem(None, "two effects have the same value")
            self.ok = False
        return tuple(sorted(values, key=lambda item: EFFECTS.index(item[0])))


# --- decoding a stream --------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    """A frame that decoded and checked out."""

    address: int
    command: bytes
    line: int | None            # the line's index (the wire's number minus line_base)
    effect: str | None          # the effect's name
    payload: bytes
    raw: bytes = field(repr=False)
    key: bytes | None = None    # a key frame's key code
    end: int = field(default=0, repr=False, compare=False)   # stream offset past its last byte


@dataclass(frozen=True)
class Rejected:
    """Bytes a board ignores, and why: a malformed frame or noise between frames."""

    reason: str
    raw: bytes = field(repr=False)


class _NeedMore(Exception):
    """The buffer ends inside a frame."""


class FrameDecoder:
    """A byte stream in, frames out; bytes may be split anywhere between
    `feed` calls. After a rejected frame it hunts for the next header from the
    byte after the bad one's header, as a board does; noise and bad frames
    are counted in `rejected`, good ones in `frames`."""

    def __init__(self, spec: FrameSpec):
        self.spec = spec
        self.frames = 0
        self.rejected = 0
        self.received = 0           # bytes fed so far: a Frame's `end` counts in these
        self._buffer = bytearray()
        self._reported = 0          # leading buffer bytes already in a Rejected's raw

    def feed(self, data: bytes) -> list[Frame | Rejected]:
        self._buffer += data
        self.received += len(data)
        out: list[Frame | Rejected] = []
        header = self.spec.header
        while self._buffer:
            start = self._buffer.find(header)
            if start < 0:
                self._discard(len(self._buffer) - _partial_header(self._buffer, header), out)
                break
            if start:
                self._discard(start, out)
            try:
                result = self._parse()
            except _NeedMore:
                break
            if isinstance(result, Frame):
                result = replace(result, end=self.received - len(self._buffer) + len(result.raw))
            out.append(result)
            if isinstance(result, Frame):
                self.frames += 1
                used = len(result.raw)
                self._reported = max(0, self._reported - used)
            else:
                self.rejected += 1
                used = 1                 # resynchronise on the next header
                self._reported = max(self._reported, len(result.raw)) - 1
            del self._buffer[:used]
        return out

    def flush(self) -> list[Rejected]:
        """The line went quiet (or was unplugged) in the middle of a frame:
        what is buffered will never complete."""
        out: list[Rejected] = []
        if self._buffer:
            self._discard(len(self._buffer), out, "an incomplete frame")
        return out

    def _discard(self, count: int, out: list[Frame | Rejected],
                 what: str = "noise without a frame header") -> None:
        fresh = bytes(self._buffer[self._reported:count])
        if fresh:
            self.rejected += 1
            out.append(Rejected(f"{what} ({len(fresh)} bytes)", fresh))
        self._reported = max(0, self._reported - count)
        del self._buffer[:count]

    def _parse(self) -> Frame | Rejected:
        """The frame at the start of the buffer (which starts with a header)."""
        spec, buffer = self.spec, self._buffer
        if not spec.has("text"):
            return self._check(0, 0)        # a fixed-size frame
        before_text = spec.layout[:spec.layout.index("text")]
        text_at = sum(spec.width(name) for name in before_text)
        if spec.has("length"):
            at = sum(spec.width(name) for name in before_text[:before_text.index("length")])
            self._need(at + spec.length_bytes)
            value = int.from_bytes(buffer[at:at + spec.length_bytes], spec.byte_order)
            size = value - spec._length_overhead
            if size < 0:
                return Rejected(f"length {value} is too short for the fields it counts",
                                bytes(buffer[:at + spec.length_bytes]))
            return self._check(text_at, size)
        # No length: the first trailer after the text ends it. A checksum between
        # text and trailer may itself look like the trailer: each trailer in the
        # buffer is tried in turn, and the first frame that checks out wins.
        after = spec.layout[spec.layout.index("text") + 1:spec.layout.index("trailer")]
        between = sum(spec.width(name) for name in after)
        self._need(text_at)
        first_problem = None
        search = text_at + between
        while True:
            end = buffer.find(spec.trailer, search)
            if end < 0 or end - between - text_at > MAX_TEXT:
                # The trailer tried may have been checksum bytes that look like it, the
                # real one still on its way (the stream was split just there): wait for
                # it, unless the buffer already runs past where it would be or the next
                # frame's header has begun.
                if first_problem is not None and (
                        len(buffer) >= search - 1 + between + 2 * len(spec.trailer) - 1
                        or buffer.find(spec.header, 1) >= 0):
                    return first_problem
                if len(buffer) > text_at + between + MAX_TEXT + len(spec.trailer):
                    return first_problem or Rejected(
                        f"no trailer {hex_bytes(spec.trailer)} within {MAX_TEXT} bytes of "
                        f"text", bytes(buffer[:text_at + MAX_TEXT]))
                raise _NeedMore
            result = self._check(text_at, end - between - text_at)
            if isinstance(result, Frame):
                return result
            first_problem = first_problem or result
            search = end + 1

    def _need(self, size: int) -> None:
        if len(self._buffer) < size:
            raise _NeedMore

    def _check(self, text_at: int, text_size: int) -> Frame | Rejected:
        """The frame whose text starts at `text_at` and is `text_size` bytes long."""
        spec = self.spec
        values: dict[str, bytes] = {}
        at = 0
        for name in spec.layout:
            size = text_size if name == "text" else spec.width(name)
            self._need(at + size)
            values[name] = bytes(self._buffer[at:at + size])
            at += size
        raw = bytes(self._buffer[:at])
        if spec.has("trailer") and values["trailer"] != spec.trailer:
            return Rejected(f"trailer {hex_bytes(values['trailer'])} where "
                            f"{hex_bytes(spec.trailer)} belongs", raw)
        if spec.has("checksum"):
            expected = spec._checksum_bytes(values)
            if values["checksum"] != expected:
                return Rejected(f"bad {spec.checksum} checksum: the frame says "
                                f"{hex_bytes(values['checksum'])}, its bytes give "
                                f"{hex_bytes(expected)}", raw)
        effect = None
        if spec.has("effect"):
            names = {value: name for name, value in spec.effects}
            effect = names.get(values["effect"])
            if effect is None:
                return Rejected(f"unknown effect {hex_bytes(values['effect'])}", raw)
        line = None
        if spec.has("line"):
            number = int.from_bytes(values["line"], spec.byte_order)
            if number < spec.line_base:
                return Rejected(f"line number {number} is below the first line's "
                                f"({spec.line_base})", raw)
            line = number - spec.line_base
        return Frame(address=int.from_bytes(values["address"], spec.byte_order),
                     command=values.get("command", b""), line=line, effect=effect,
                     payload=values.get("text", b""), raw=raw, key=values.get("key"))


def _partial_header(buffer: bytearray, header: bytes) -> int:
    """How many of the buffer's last bytes could be the start of a header."""
    for size in range(min(len(header) - 1, len(buffer)), 0, -1):
        if buffer.endswith(header[:size]):
            return size
    return 0
