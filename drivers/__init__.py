"""Device driver families, found by the name devices.toml gives them (`driver = "escpos"`).

Each family is a package exposing `configure`, `create` and optionally
`emulate` (see `drivers/base.py`). A family is imported only when a hall's
file names it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# driver name -> the package that implements it; names the config knows but that
# are missing here are accepted in devices.toml and shown `disabled` until built.
FAMILIES = {
    "escpos": "drivers.escpos",
    "framed_text": "drivers.framed_text",
    "modbus_digits": "drivers.modbus_digits",
}


def family(driver: str) -> ModuleType | None:
    """The package implementing `driver`, or None when this version has none."""
    module = FAMILIES.get(driver)
    return importlib.import_module(module) if module else None
