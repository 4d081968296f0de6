"""The hall's wording templates ("请{number}号到{window}办理"): checked once, filled often.

Boards and the voice caller take templates in devices.toml with a few named
fields; `template_problem` is the one check `configure` runs on each, so a
typo in a field name is an error in `kioskd check`, not a KeyError mid-call.
"""

from __future__ import annotations

import string
from collections.abc import Sequence


def template_problem(text: str, fields: Sequence[str], what: str = "this template") -> str | None:
    """Why `text` is not a template taking only `fields`; None when it is.
    `what` names it in the message: "a board template"."""
    try:
        used = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        return f"is not a valid template ({exc}); write {{{{ for a literal {{"
    for name in used:
        if name not in fields:
            shown = f"{{{name}}}" if name else "{}"
            return f"unknown field {shown}; {what} takes " + \
                ", ".join("{%s}" % f for f in fields)
    return None
