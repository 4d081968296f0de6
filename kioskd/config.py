"""devices.toml → typed, validated hall configuration (every problem reported at once)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """The file has problems; `problems` holds one line per problem, naming table and key."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Guide:
    """The one-time notification (一次性告知) for a service."""

    materials: tuple[str, ...] = ()
    time_limit: str = ""
    fee: str = ""
    basis: str = ""       # the legal basis, free text
    notes: str = ""       # anything else the citizen should know


@dataclass(frozen=True)
class Service:
    id: str
    name: str
    prefix: str
    code: str
    guide: Guide = field(default_factory=Guide)
    service_time_min: float = 5.0   # assumed minutes per ticket until real figures exist


@dataclass(frozen=True)
class Window:
    id: str
    name: str
    services: tuple[str, ...]       # order = this window's preference
    board: str | None = None
    temporary: bool = False


@dataclass(frozen=True)
class Hall:
    name: str
    timezone: str = "Asia/Shanghai"
    data_dir: Path = Path("var")    # resolved against the config file's folder
    number_width: int = 3           # A001
    readmit_within_min: int = 30    # a no-show may be re-admitted this long after the call
    readmit_after: int = 3          # ... and goes back in after this many waiting tickets


@dataclass(frozen=True)
class Server:
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True)
class Auth:
    kiosk: tuple[str, ...] = ()
    technician: tuple[str, ...] = ()
    supervisor: tuple[str, ...] = ()
    windows: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Device:
    id: str
    driver: str
    options: dict[str, Any] = field(default_factory=dict)   # every key but `driver`


@dataclass(frozen=True)
class Config:
    hall: Hall
    server: Server = field(default_factory=Server)
    auth: Auth = field(default_factory=Auth)
    services: tuple[Service, ...] = ()
    windows: tuple[Window, ...] = ()
    devices: dict[str, Device] = field(default_factory=dict)
    path: Path | None = None

    def service(self, service_id: str) -> Service | None:
        return next((s for s in self.services if s.id == service_id), None)

    def window(self, window_id: str) -> Window | None:
        return next((w for w in self.windows if w.id == window_id), None)
