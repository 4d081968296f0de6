"""What a call board shows and how it words it: the helper every board family shares.

kioskd decides *what* a board should show (`kioskd/boards.py`) as a `Screen`,
a few `Line`s; a board family only turns a Screen into its bytes (`show`).
`read_display` reads the wording options every board table takes, so a
Modbus digit display and a vendor text board are configured alike:

    shows   = "window"      # the board over one window, or "hall": the latest calls
    lines   = 1             # lines the board has (a hall board: one call per line)
    calling = "{number}"    # a window board while a ticket is called or served
    paused  = "----"        # ... while the window is paused
    idle    = ""            # ... open, nobody at the window
    closed  = ""            # ... closed
    hall_line = "{number} → {window}"   # a hall board's line per call
    flash_s = 5             # a new call flashes this long, where the board can flash
    columns = 0             # characters a line holds (a CJK character counts 2); 0 = no limit

Templates take `{number}` (A012), `{window}` (5号窗口) and `{service}` (不动产登记).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any, Protocol

from .base import Options
from .templates import template_problem

SHOWS = ("window", "hall")
FIELDS = ("number", "window", "service")


@dataclass(frozen=True)
class Line:
    """One line of a board: its text, and whether it flashes."""

    text: str
    flash: bool = False


Screen = tuple[Line, ...]        # top line first; a board shows exactly `lines` of them


def blank(lines: int) -> Screen:
    return tuple(Line("") for _ in range(lines))


def plain(screen: Screen) -> list[str]:
    """The texts of a screen, for `/devices` and logs."""
    return [line.text for line in screen]


@dataclass(frozen=True)
class Display:
    """A board's purpose and wording, read from its `[devices.ID]` table."""

    shows: str = "window"
    lines: int = 1
    calling: str = "{number}"
    paused: str = "----"
    idle: str = ""
    closed: str = ""
    hall_line: str = "{number} → {window}"
    flash_s: float = 5.0
    columns: int = 0
    can_flash: bool = False      # the family and its settings say the board can flash

    def fit(self, text: str) -> str:
        """`text` cut to the board's width (a CJK character takes two columns)."""
        if not self.columns:
            return text
        used = 0
        for position, char in enumerate(text):
            used += width(char)
            if used > self.columns:
                return text[:position]
        return text


def width(char: str) -> int:
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def fill(template: str, **values: Any) -> str:
    """A template filled in; the fields were checked by `read_display`."""
    return template.format(**values)


def read_display(options: Options, *, can_flash: bool, defaults: dict[str, Any] | None = None,
                 hall: bool = True, max_lines: int = 16) -> Display:
    """Read the wording options of a board table. `defaults` overrides Display's
    defaults for a family (a text strip idles on its window's name); `hall`
    False for boards that cannot show a hall's calls (a 4-digit display)."""
    base = Display(**(defaults or {}))
    shows = options.string("shows", base.shows)
    if shows not in SHOWS:
        options.problem("shows", f"'{shows}' is not one of {', '.join(SHOWS)}")
        shows = base.shows
    if shows == "hall" and not hall:
        options.problem("shows", "this kind of board can only show its window's number")
        shows = "window"
    lines = options.integer("lines", base.lines, low=1, high=max_lines)
    texts = {}
    for key in ("calling", "paused", "idle", "closed", "hall_line"):
        text = options.string(key, getattr(base, key), allow_empty=True)
        texts[key] = text if _template_ok(options, key, text) else getattr(base, key)
    flash_s = options.number("flash_s", base.flash_s)
    if flash_s < 0:
        options.problem("flash_s", f"{flash_s:g} is out of range; expected 0 (never flash) "
                                   "or more seconds")
        flash_s = base.flash_s
    columns = options.integer("columns", base.columns, low=0, high=1000)
    return Display(shows=shows, lines=lines, flash_s=flash_s, columns=columns,
                   can_flash=can_flash, **texts)


def _template_ok(options: Options, key: str, text: str) -> bool:
    problem = template_problem(text, FIELDS, "a board template")
    if problem:
        options.problem(key, problem)
    return problem is None


class Board(Protocol):
    """The one action every board driver adds to `Driver`: show a screen.
    `self_test` shows a test pattern, then the last screen again."""

    def show(self, screen: Screen) -> dict[str, Any]:
        """Put `screen` on the board; what the board now shows (plain data)."""
