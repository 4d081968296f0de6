"""ESC/POS bytes: the command tables, a job builder for Chinese printers, and DLE EOT status.

The emulator decodes with the same tables, so what this module encodes is what
the tests read back.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageOps

ENCODINGS = ("gb18030", "gbk")

LF = 0x0A
ESC = 0x1B
GS = 0x1D
FS = 0x1C
DLE = 0x10
EOT = 0x04

INITIALIZE = bytes((ESC, ord("@")))
ALIGN = bytes((ESC, ord("a")))                  # + n
ALIGNMENTS = {"left": 0, "center": 1, "right": 2}
BOLD = bytes((ESC, ord("E")))                   # + n (bit 0)
CHARACTER_SIZE = bytes((GS, ord("!")))          # + (width-1) << 4 | (height-1)
CHINESE_ON = bytes((FS, ord("&")))
CHINESE_OFF = bytes((FS, ord(".")))
FEED_LINES = bytes((ESC, ord("d")))             # + n
BEEP = bytes((ESC, ord("B")))                   # + times + duration (x 50 ms)
CUT = bytes((GS, ord("V")))                     # + m
CUT_FULL, CUT_PARTIAL = 0, 1
RASTER_IMAGE = bytes((GS, ord("v"), ord("0")))  # + m xL xH yL yH + rows of x bytes
STATUS_QUERY = bytes((DLE, EOT))                # + n

QR_FUNCTION = bytes((GS, ord("("), ord("k")))   # + pL pH cn fn params
QR_SYMBOL = 49                                  # cn: QR code
QR_MODEL, QR_MODULE_SIZE, QR_ERROR_CORRECTION = 65, 67, 69
QR_STORE, QR_PRINT = 80, 81
QR_MODEL_2 = 50
QR_LEVEL_M = 49
QR_DATA_ENCODING = "utf-8"
QR_MAX_BYTES = 7089

Alignment = Literal["left", "center", "right"]

REPLACEMENT = "？"          # printed for a character the job's encoding cannot carry


def _replace_unencodable(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return REPLACEMENT * (error.end - error.start), error.end


codecs.register_error("escpos-replace", _replace_unencodable)


def display_width(text: str) -> int:
    """Columns the printer uses for `text`: an ASCII character takes one,
    anything sent in Chinese mode (a two- or four-byte character) takes two."""
    return sum(1 if ord(char) < 0x80 else 2 for char in text)


def encode_text(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="escpos-replace")


class Job:
    """One print job, built command by command; `bytes()` is what goes to the printer."""

    def __init__(self, encoding: str = "gb18030"):
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, not {encoding!r}")
        self.encoding = encoding
        self._data = bytearray()

    def bytes(self) -> bytes:
        return bytes(self._data)

    def initialize(self) -> Job:
        self._data += INITIALIZE
        return self

    def align(self, alignment: Alignment) -> Job:
        self._data += ALIGN + bytes((ALIGNMENTS[alignment],))
        return self

    def bold(self, on: bool = True) -> Job:
        self._data += BOLD + bytes((int(on),))
        return self

    def size(self, width: int = 1, height: int = 1) -> Job:
        if not (1 <= width <= 8 and 1 <= height <= 8):
            raise ValueError(f"character size {width}x{height}: each must be 1..8")
        self._data += CHARACTER_SIZE + bytes(((width - 1) << 4 | (height - 1),))
        return self

    def line(self, text: str = "") -> Job:
        """Print `text` and end the line. Any non-ASCII text goes in Chinese mode,
        encoded here (python-escpos would print '?' for punctuation-only lines)."""
        text = "".join(" " if ord(char) < 0x20 or char == "\x7f" else char for char in text)
        if text.isascii():
            self._data += text.encode("ascii")
        else:
            self._data += CHINESE_ON + encode_text(text, self.encoding) + CHINESE_OFF
        self._data.append(LF)
        return self

    def feed(self, lines: int = 1) -> Job:
        if not 0 <= lines <= 255:
            raise ValueError(f"feed of {lines} lines: must be 0..255")
        self._data += FEED_LINES + bytes((lines,))
        return self

    def qr(self, data: str, module_size: int = 6) -> Job:
        """A QR code (model 2, error correction M) drawn by the printer itself."""
        if not 1 <= module_size <= 16:
            raise ValueError(f"QR module size {module_size}: must be 1..16")
        payload = data.encode(QR_DATA_ENCODING)
        if not 1 <= len(payload) <= QR_MAX_BYTES:
            raise ValueError(f"QR data of {len(payload)} bytes: must be 1..{QR_MAX_BYTES}")
        self._qr_function(QR_MODEL, bytes((QR_MODEL_2, 0)))
        self._qr_function(QR_MODULE_SIZE, bytes((module_size,)))
        self._qr_function(QR_ERROR_CORRECTION, bytes((QR_LEVEL_M,)))
        self._qr_function(QR_STORE, b"0" + payload)
        self._qr_function(QR_PRINT, b"0")
        return self

    def _qr_function(self, function: int, parameters: bytes) -> None:
        length = len(parameters) + 2
        self._data += QR_FUNCTION + length.to_bytes(2, "little") + bytes((QR_SYMBOL, function))
        self._data += parameters

    def image(self, picture: Image.Image, width: int | None = None) -> Job:
        """A 1-bit raster picture (GS v 0); centred in `width` dots when given."""
        raster = raster_bits(picture, width)
        width_bytes = raster.width // 8
        self._data += RASTER_IMAGE + bytes((0,)) + width_bytes.to_bytes(2, "little")
        self._data += raster.height.to_bytes(2, "little")
        self._data += ImageOps.invert(raster.convert("L")).convert("1").tobytes()
        return self

    def qr_image(self, data: str, module_size: int, dots_per_line: int) -> Job:
        """A QR code drawn here and sent as a picture, for printers without GS ( k."""
        return self.image(qr_picture(data, module_size), dots_per_line)

    def cut(self, partial: bool = True) -> Job:
        self._data += CUT + bytes((CUT_PARTIAL if partial else CUT_FULL,))
        return self

    def beep(self, times: int = 1, duration: int = 3) -> Job:
        """Sound the buzzer `times` times for `duration` x 50 ms (1..9 each)."""
        if not (1 <= times <= 9 and 1 <= duration <= 9):
            raise ValueError(f"beep {times} times x {duration}: each must be 1..9")
        self._data += BEEP + bytes((times, duration))
        return self


def raster_bits(picture: Image.Image, width: int | None = None) -> Image.Image:
    """`picture` as black-and-white dots, its width a multiple of 8, centred in `width`."""
    gray = picture.convert("L")
    target = max(width or 0, gray.width)
    target += -target % 8
    canvas = Image.new("L", (target, gray.height), 255)
    canvas.paste(gray, ((target - gray.width) // 2, 0))
    return canvas.point(lambda value: 255 if value >= 128 else 0).convert("1")


def qr_picture(data: str, module_size: int) -> Image.Image:
    """The QR code a printer would draw for GS ( k: model 2, level M, no quiet zone."""
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M

    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=module_size, border=0)
    code.add_data(data.encode(QR_DATA_ENCODING))
    code.make(fit=True)
    return code.make_image(fill_color="black", back_color="white").get_image().convert("L")


# --- status: DLE EOT n ------------------------------------------------------

STATUS_PRINTER, STATUS_OFFLINE_CAUSE, STATUS_PAPER = 1, 2, 4
STATUS_QUERIES = (STATUS_PRINTER, STATUS_OFFLINE_CAUSE, STATUS_PAPER)

STATUS_FIXED_ONES = 0b0001_0010      # bits 1 and 4 are always 1
STATUS_FIXED_ZEROS = 0b1000_0001     # bits 0 and 7 are always 0
OFFLINE = 0b0000_1000                # n=1 bit 3
COVER_OPEN = 0b0000_0100             # n=2 bit 2
PAPER_END_STOP = 0b0010_0000         # n=2 bit 5: printing stopped, no paper
PAPER_NEAR_END = 0b0000_1100         # n=4 bits 2-3
PAPER_END = 0b0110_0000              # n=4 bits 5-6

PaperState = Literal["ok", "near_end", "out"]


@dataclass(frozen=True)
class PrinterStatus:
    online: bool = True
    cover_open: bool = False
    paper: PaperState = "ok"


def status_query(n: int) -> bytes:
    if n not in STATUS_QUERIES:
        raise ValueError(f"DLE EOT {n}: this codec asks only {STATUS_QUERIES}")
    return STATUS_QUERY + bytes((n,))


def encode_status(n: int, status: PrinterStatus) -> int:
    """The byte a printer in `status` answers to DLE EOT n."""
    byte = STATUS_FIXED_ONES
    if n == STATUS_PRINTER:
        byte |= 0 if status.online else OFFLINE
    elif n == STATUS_OFFLINE_CAUSE:
        byte |= (COVER_OPEN if status.cover_open else 0)
        byte |= (PAPER_END_STOP if status.paper == "out" else 0)
    elif n == STATUS_PAPER:
        # a roll that has run out has passed the near-end sensor too
        byte |= {"ok": 0, "near_end": PAPER_NEAR_END, "out": PAPER_NEAR_END | PAPER_END}[status.paper]
    else:
        raise ValueError(f"DLE EOT {n}: not one of {STATUS_QUERIES}")
    return byte


def decode_status(replies: dict[int, int]) -> PrinterStatus:
    """What the printer's answers to DLE EOT n (keyed by n) say; a missing
    answer leaves its fields at their defaults. Raises ValueError on a byte
    that is not a status byte."""
    for n, byte in replies.items():
        if n not in STATUS_QUERIES:
            raise ValueError(f"DLE EOT {n}: not one of {STATUS_QUERIES}")
        if not 0 <= byte <= 0xFF or byte & STATUS_FIXED_ZEROS or ~byte & STATUS_FIXED_ONES:
            raise ValueError(f"0x{byte:02x} is not a status byte (answer to DLE EOT {n})")
    printer = replies.get(STATUS_PRINTER, STATUS_FIXED_ONES)
    cause = replies.get(STATUS_OFFLINE_CAUSE, STATUS_FIXED_ONES)
    paper = replies.get(STATUS_PAPER, STATUS_FIXED_ONES)
    if cause & PAPER_END_STOP or paper & PAPER_END:
        paper_state: PaperState = "out"
    elif paper & PAPER_NEAR_END:
        paper_state = "near_end"
    else:
        paper_state = "ok"
    return PrinterStatus(online=not printer & OFFLINE, cover_open=bool(cause & COVER_OPEN),
                         paper=paper_state)
