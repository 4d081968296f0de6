"""Where a printer is: the `connection` string of devices.toml, parsed and checked.

Pure text work, apart from the links themselves (`transport.py`): `kioskd check`
reads connections without loading python-escpos or libusb.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

DEFAULT_TCP_PORT = 9100
FORMS = ("tcp://HOST[:PORT], serial:///dev/ttyUSB0?baudrate=19200, usb://VID:PID, "
         "file:///dev/usb/lp0, or a pyserial URL such as rfc2217://HOST:PORT")


@dataclass(frozen=True)
class SerialSettings:
    """Line settings of a serial link, named as pyserial names them."""

    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rtscts: bool = False
    xonxoff: bool = False
    dsrdtr: bool = False


@dataclass(frozen=True)
class Connection:
    """Where a printer is: the `connection` string of its [devices.ID] table, parsed."""

    kind: Literal["tcp", "serial", "usb", "file"]
    text: str                                   # as written: "usb://04b8:0e15"
    host: str = ""                              # tcp
    port: int = 0                               # tcp
    device: str = ""                            # serial: /dev/ttyUSB0 or a pyserial URL; file: /dev/usb/lp0
    serial_settings: SerialSettings | None = None
    vendor_id: int = 0                          # usb
    product_id: int = 0                         # usb
    interface: int | None = None                # usb; None: the first with a bulk OUT endpoint


def parse_connection(text: str) -> Connection:
    """Parse a `connection` string; ValueError says what is wrong with it. Opens nothing."""
    scheme, separator, _ = text.partition("://")
    if not separator or not scheme:
        raise ValueError(f"{text!r} is not a connection; expected {FORMS}")
    scheme = scheme.lower()
    if "#" in text:
        raise ValueError(f"{text!r}: a connection has no '#' part")
    if scheme == "tcp":
        return _parse_tcp(text)
    if scheme == "serial":
        return _parse_serial(text)
    if scheme == "usb":
        return _parse_usb(text)
    if scheme == "file":
        return _parse_file(text)
    if re.fullmatch(r"[a-z0-9]+", scheme) and importlib.util.find_spec(
            f"serial.urlhandler.protocol_{scheme}") is not None:
        return _parse_pyserial_url(text)
    raise ValueError(f"{text!r}: unknown scheme '{scheme}://'; expected {FORMS}")


def _split(text: str) -> tuple[str, str, str]:
    """(netloc, path, query) of a connection string."""
    after_scheme = text.partition("://")[2]
    location, _, query = after_scheme.partition("?")
    netloc, slash, path = location.partition("/")
    return netloc, slash + path, query


def _options(text: str, query: str) -> list[tuple[str, str]]:
    pairs = []
    for item in query.split("&"):
        if item:
            key, equals, value = item.partition("=")
            if not equals or not value:
                raise ValueError(f"{text!r}: option '{item}' has no value (write {key}=VALUE)")
            pairs.append((key, value))
    return pairs


def _parse_tcp(text: str) -> Connection:
    netloc, path, query = _split(text)
    if path or query:
        raise ValueError(f"{text!r}: a tcp connection is just tcp://HOST:PORT, with nothing after it")
    if "[" in netloc:
        raise ValueError(f"{text!r}: IPv6 addresses are not supported (python-escpos connects over IPv4)")
    if "@" in netloc:
        raise ValueError(f"{text!r}: a tcp connection takes no user name")
    host, colon, port_text = netloc.rpartition(":")
    if not colon:
        host, port_text = netloc, str(DEFAULT_TCP_PORT)
    if not host:
        raise ValueError(f"{text!r}: missing host (tcp://HOST:PORT)")
    if not port_text:
        raise ValueError(f"{text!r}: missing port after ':' (write tcp://{host}:9100, or leave out ':')")
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: port '{port_text}' is not a number from 1 to 65535")
    return Connection("tcp", text, host=host, port=int(port_text))


def _parse_serial(text: str) -> Connection:
    netloc, path, query = _split(text)
    if netloc:
        raise ValueError(f"{text!r}: write the device path after three slashes, "
                         f"as in serial:///dev/ttyUSB0")
    if path in ("", "/"):
        raise ValueError(f"{text!r}: missing device path, as in serial:///dev/ttyUSB0")
    settings, others = _serial_settings(text, _options(text, query))
    if others:
        raise ValueError(f"{text!r}: unknown serial option '{others[0][0]}'; "
                         f"known: {', '.join(_SERIAL_OPTIONS)}")
    return Connection("serial", text, device=path, serial_settings=settings)


def _parse_pyserial_url(text: str) -> Connection:
    """A pyserial URL: our serial options are taken out; pyserial's own (logging=…) stay in it."""
    base, _, query = text.partition("?")
    settings, others = _serial_settings(text, _options(text, query))
    device = base + ("?" + "&".join(f"{key}={value}" for key, value in others) if others else "")
    return Connection("serial", text, device=device, serial_settings=settings)


_BOOLEANS = {"0": False, "1": True, "false": False, "true": True}


def _boolean(value: str) -> bool | None:
    return _BOOLEANS.get(value.lower())


# option → (value or None when bad, what a good value looks like)
_SERIAL_OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "baudrate": (lambda v: int(v) if re.fullmatch(r"[1-9][0-9]{0,7}", v) else None,
                 "bits per second, such as 9600 or 19200"),
    "bytesize": (lambda v: int(v) if v in ("5", "6", "7", "8") else None, "5, 6, 7 or 8"),
    "parity": (lambda v: v.upper() if v.upper() in ("N", "E", "O", "M", "S") else None,
               "N, E, O, M or S"),
    "stopbits": ({"1": 1, "1.5": 1.5, "2": 2}.get, "1, 1.5 or 2"),
    "rtscts": (_boolean, "0 or 1"),
    "xonxoff": (_boolean, "0 or 1"),
    "dsrdtr": (_boolean, "0 or 1"),
}


def _serial_settings(text: str, options: list[tuple[str, str]]
                     ) -> tuple[SerialSettings, list[tuple[str, str]]]:
    """The serial options among `options`, and the others."""
    values: dict[str, Any] = {}
    others = []
    for key, value in options:
        if key not in _SERIAL_OPTIONS:
            others.append((key, value))
            continue
        if key in values:
            raise ValueError(f"{text!r}: {key} is given twice")
        parse, expected = _SERIAL_OPTIONS[key]
        values[key] = parse(value)
        if values[key] is None:
            raise ValueError(f"{text!r}: bad {key} '{value}', expected {expected}")
    return SerialSettings(**values), others


def _parse_usb(text: str) -> Connection:
    netloc, path, query = _split(text)
    ids = re.fullmatch(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{4})", netloc)
    if not ids or path:
        raise ValueError(f"{text!r}: expected usb://VID:PID with four hex digits each, "
                         f"as in usb://04b8:0e15")
    interface = None
    for key, value in _options(text, query):
        if key != "interface":
            raise ValueError(f"{text!r}: unknown usb option '{key}'; known: interface")
        if interface is not None:
            raise ValueError(f"{text!r}: interface is given twice")
        if not re.fullmatch(r"[0-9]{1,3}", value) or int(value) > 255:
            raise ValueError(f"{text!r}: bad interface '{value}', expected a number from 0 to 255")
        interface = int(value)
    return Connection("usb", text, vendor_id=int(ids[1], 16), product_id=int(ids[2], 16),
                      interface=interface)


def _parse_file(text: str) -> Connection:
    netloc, path, query = _split(text)
    if netloc or path in ("", "/"):
        raise ValueError(f"{text!r}: expected an absolute path after three slashes, "
                         f"as in file:///dev/usb/lp0")
    if query:
        raise ValueError(f"{text!r}: a file connection takes no options")
    return Connection("file", text, device=path)
