"""Device driver families, found by the name devices.toml gives them (`driver = "escpos"`).

Each family is a package exposing `configure`, `create` and optionally
`emulate` (see `drivers/base.py`). A family is imported only when a hall's
file names it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# driver name -> the package that implements it (a `terminal` is no driver: it
# names the printer a touch terminal prints on)
FAMILIES = {
    "escpos": "drivers.escpos",
    "framed_text": "drivers.framed_text",
    "keypad": "drivers.keypad",
    "modbus_digits": "drivers.modbus_digits",
    "voice": "drivers.voice",
}


def family(driver: str) -> ModuleType | None:
    """The package implementing `driver`, or None for a name that has none."""
    module = FAMILIES.get(driver)
    return importlib.import_module(module) if module else None
