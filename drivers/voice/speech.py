"""What the voice caller says, as text for the engine: "请A 零一二号到5号窗口办理".

A hall reads a ticket number letter by letter and digit by digit: A012 is
"A 零一二", never "A十二". espeak-ng's Mandarin voice reads a lone Latin letter
by its name but a run of letters as an English word, so each letter stands
apart; a digit written as a Chinese digit is read as that digit alone.
Window and service names pass through as written ("5号窗口" is read 五号).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..templates import template_problem

DIGITS = "零一二三四五六七八九"
FIELDS = ("number", "window", "service", "target")


def spoken_number(number: str) -> str:
    """A ticket number as a hall reads it: "A012" -> "A 零一二", "AB012" -> "A B 零一二"."""
    spoken = ""
    for char in number:
        word = DIGITS[int(char)] if char.isascii() and char.isdigit() else char
        if spoken and _stand_apart(spoken[-1], word):
            spoken += " "
        spoken += word
    return spoken


def announcement(template: str, *, number: str, window: str = "", service: str = "",
                 target: str = "") -> str:
    """`template` filled in, the number as spoken. The hall's templates were
    checked when devices.toml was read (`check_template`); a field nobody
    fills is still a ValueError, not a KeyError."""
    try:
        return template.format(number=spoken_number(number), window=window, service=service,
                               target=target)
    except KeyError as exc:
        raise ValueError(f"voice template {template!r}: unknown field {{{exc.args[0]}}}") from None


def check_template(template: str, fields: Sequence[str] = FIELDS) -> str | None:
    """What is wrong with `template` (a field not in `fields`, a stray brace); None when nothing."""
    return template_problem(template, fields, "this template")


def _stand_apart(before: str, after: str) -> bool:
    """A letter stands apart from a letter or a digit beside it."""
    pair = (before, after)
    return any(_is_letter(char) for char in pair) and \
        all(_is_letter(char) or char in DIGITS for char in pair)


def _is_letter(char: str) -> bool:
    return char.isascii() and char.isalpha()
