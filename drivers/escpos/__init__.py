"""ESC/POS ticket printers over TCP, serial, USB or a device file (`driver = "escpos"`)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

from ..base import Options
from .codec import ENCODINGS
from .profiles import PROFILES, Profile
from .connection import Connection, parse_connection


@dataclass(frozen=True)
class Settings:
    connection: Connection
    encoding: str = "gb18030"
    profile: Profile = PROFILES["80mm"]
    emulate: bool = False          # run an emulated printer at `connection` (the demo hall)


def configure(options: Options) -> Settings | None:
    """Read `[devices.ID]` for an ESC/POS printer; None when it has problems."""
    text = options.string("connection", required=True)
    connection = None
    if text is not None:
        try:
            connection = parse_connection(text)
        except ValueError as exc:
            options.problem("connection", str(exc))
    encoding = options.string("encoding", "gb18030")
    if encoding not in ENCODINGS:
        options.problem("encoding", f"'{encoding}' is not one of {', '.join(ENCODINGS)}")
        encoding = "gb18030"
    profile_name = options.string("profile", "80mm")
    if profile_name not in PROFILES:
        options.problem("profile", f"unknown profile '{profile_name}'; known: {', '.join(PROFILES)}")
        profile_name = "80mm"
    emulate = options.boolean("emulate", False)
    if emulate and connection is not None and not _loopback_tcp(connection):
        options.problem("emulate", "an emulated printer listens on a loopback TCP address, "
                                   "e.g. connection = \"tcp://127.0.0.1:9100\"")
        return None
    if connection is None:
        return None
    return Settings(connection, encoding, PROFILES[profile_name], emulate)


def _loopback_tcp(connection: Connection) -> bool:
    if connection.kind != "tcp":
        return False
    try:
        return ip_address(connection.host).is_loopback
    except ValueError:
        return connection.host == "localhost"


def create(device_id: str, settings: Settings, *, timeout: float, data_dir: Path):
    from .driver import TicketPrinter
    return TicketPrinter(device_id, settings, timeout)


def emulate(device_id: str, settings: Settings, *, data_dir: Path):
    """The emulated printer an `emulate = true` device prints on; None otherwise."""
    if not settings.emulate:
        return None
    from .emulator import EmulatedPrinter
    connection = settings.connection
    return EmulatedPrinter(encoding=settings.encoding, profile=settings.profile,
                           jobs_dir=data_dir / "emulators" / device_id,
                           listen=f"{connection.host}:{connection.port}")
