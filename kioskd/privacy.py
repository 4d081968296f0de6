"""Personal data masked at the edge, before anything is stored, shown or logged.

A hall may learn a citizen's name and phone number from its booking system. kioskd
keeps at most a masked form — "张*", "欧阳**", "138****5678" — and masks any phone
or ID number found in free text, so that nothing identifying a person is printed,
shown or logged in full (the contract's guarantee).
"""

from __future__ import annotations

import re
from typing import Any

# An 18-digit resident ID number (the last character may be X) or an old 15-digit one,
# also in the groups people write them in, and a mainland mobile number; not inside a
# longer run of digits.
# Letters, '_' and '-' around the digits mean an id (a ticket's is base64), not a number.
_BEFORE, _AFTER = r"(?<![0-9A-Za-z_-])", r"(?![0-9A-Za-z_])"
ID_NUMBER = re.compile(_BEFORE + "(?:" + "|".join((
    r"\d{6}[- ]?\d{8}[- ]?\d{3}[0-9Xx]",                 # 640102 19900101 1234
    r"\d{6}[- ]\d{4}[- ]\d{4}[- ]\d{3}[0-9Xx]",         # 640102 1990 0101 1234
    r"\d{4}[- ]\d{4}[- ]\d{4}[- ]\d{4}[- ]\d[0-9Xx]",  # 6401 0219 9001 0112 34
    r"\d{6}[- ]?\d{6}[- ]?\d{3}")) + ")" + _AFTER)       # 640102 900101 123 (15 digits)
_SEPARATORS = re.compile(r"[- ]")
MOBILE = re.compile(_BEFORE + r"(?:\+?86[- ]?)?(1[3-9]\d)[- ]?(\d{4})[- ]?(\d{4})" + _AFTER)
LANDLINE = re.compile(_BEFORE + r"(0\d{2,3})[- ]?(\d{7,8})" + _AFTER)
_MASKED_PHONE = re.compile(r"\d{3}\*{4}\d{4}")


def mask_name(name: str | None) -> str | None:
    """The family name and one `*` per other character: 张三 → 张*, 欧阳娜娜 → 欧***.
    A Latin name keeps its first letter: Wang Fang → W*******."""
    if name is None:
        return None
    name = name.strip()
    if not name:
        return None
    return name[0] + "*" * (len(name) - 1) if len(name) > 1 else name


def mask_phone(phone: str | None) -> str | None:
    """The first three and last four digits of a mobile number: 138****5678; any other
    number keeps only its last four digits. Already masked numbers stay as they are."""
    if phone is None:
        return None
    text = phone.strip()
    if not text:
        return None
    if _MASKED_PHONE.fullmatch(text):
        return text
    digits = re.sub(r"\D", "", text)
    if digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if len(digits) == 11 and digits.startswith("1"):
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) <= 4:
        return "*" * len(digits)
    return "*" * (len(digits) - 4) + digits[-4:]


def is_personal_number(text: str) -> bool:
    """Whether `text` as a whole is an ID number or a phone number."""
    text = text.strip()
    return any(pattern.fullmatch(text) for pattern in (ID_NUMBER, MOBILE, LANDLINE))


def scrub_text(text: str) -> str:
    """Free text with every ID number and phone number in it masked."""
    text = ID_NUMBER.sub(lambda m: _masked_id(_SEPARATORS.sub("", m.group(0))), text)
    text = MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    return LANDLINE.sub(lambda m: m.group(1) + "-" + "*" * (len(m.group(2)) - 4)
                        + m.group(2)[-4:], text)


def _masked_id(digits: str) -> str:
    """The region code and the last four: 640102********1234 (the birth date hidden)."""
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def scrub(value: Any) -> Any:
    """`scrub_text` over every string in a JSON-like value."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value
