"""devices.toml → typed, validated hall configuration (every problem reported at once)."""

from __future__ import annotations

import datetime as _dt
import difflib
import os
import re
import socket
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import drivers
from drivers.serialbus import resolve_port, same_line_problems


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
    where: str = ""       # where to go in the hall ("二楼B区"); "" = the windows serving it


@dataclass(frozen=True)
class Thresholds:
    """When a service's early warnings fire ([alerts], overridden by [services.alerts]);
    0 turns one off."""

    wait_min: float = 30.0          # a ticket waiting longer than this
    serve_min: float = 30.0         # a ticket at a window longer than this, from its call
    waiting_per_window: float = 10.0   # waiting tickets per open window serving it, above this


@dataclass(frozen=True)
class Service:
    id: str
    name: str
    prefix: str
    code: str
    guide: Guide = field(default_factory=Guide)
    service_time_min: float = 5.0   # assumed minutes per ticket until real figures exist
    name_en: str = ""               # the kiosk's English screens; "" = the Chinese name
    thresholds: Thresholds = field(default_factory=Thresholds)   # the hall's, and its own


@dataclass(frozen=True)
class Category:
    """A group of services on the kiosk's first screen (不动产, 企业服务, ...)."""

    id: str
    name: str
    services: tuple[str, ...]
    name_en: str = ""


@dataclass(frozen=True)
class Window:
    id: str
    name: str
    services: tuple[str, ...]       # order = this window's preference
    board: str | None = None
    temporary: bool = False
    voice: str | None = None        # the voice device (zone) that calls it; None: every one
    instance: str | None = None     # the daemon ([hall] instance) its clerk, board and keypad
                                    # are on, in a hall of several; None: any (every) daemon


@dataclass(frozen=True)
class Hall:
    name: str
    timezone: str = "Asia/Shanghai"
    data_dir: Path = Path("var")    # resolved against the config file's folder
    number_width: int = 3           # A001
    print_materials: bool = False   # the service's required materials on the printed ticket
    readmit_within_min: int = 30    # a no-show may be re-admitted this long after the call
    readmit_after: int = 3          # ... and goes back in after this many waiting tickets
    instance: str | None = None     # this daemon's name among the hall's; None: the host name


@dataclass(frozen=True)
class Server:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None   # how phones reach the daemon (QR codes); default from host:port
    cors_origins: tuple[str, ...] = ()   # web origins whose pages may call the API; () = none
    event_clients: int = 1000       # open event streams at most; one more is answered 503

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


@dataclass(frozen=True)
class Limits:
    """[limits]: how fast tickets may be taken, so that a stuck button or a prank
    cannot flood the queue. Tickets a minute, each also the burst allowed at once;
    0 = no limit. A supervisor's token is never limited."""
    issue_per_terminal: int = 10    # from one touch terminal (the request's `terminal`)
    issue_per_address: int = 60     # from one client address, whatever terminal it names


@dataclass(frozen=True)
class Auth:
    kiosk: tuple[str, ...] = ()
    technician: tuple[str, ...] = ()
    supervisor: tuple[str, ...] = ()
    windows: dict[str, tuple[str, ...]] = field(default_factory=dict)
    booking: tuple[str, ...] = ()       # the booking system: registers and cancels appointments
    evaluator: tuple[str, ...] = ()     # the rating pads at the windows
    written: tuple[str, ...] = ()       # "[auth] kiosk", ...: keys holding a token itself,
                                        # not a ${NAME} (exposed_tokens warns)


@dataclass(frozen=True)
class Alerts:
    """[alerts]: the hall's early warnings."""

    check_every_s: float = 5.0      # how often the conditions are looked at
    pause_min: float = 15.0         # a window paused longer than this; 0 = never
    device_offline_s: float = 60.0  # a device offline (or a terminal silent) this long; 0 = never
    thresholds: Thresholds = field(default_factory=Thresholds)   # every service's, by default


@dataclass(frozen=True)
class Appointments:
    """[appointments]: when a booked citizen may check in at a kiosk."""

    check_in_before_min: int = 15   # from this long before the slot ...
    check_in_after_min: int = 30    # ... to this long after it; later: a normal ticket


@dataclass(frozen=True)
class Evaluation:
    """[evaluation]: the rating (好差评) taken at the window after a ticket is completed."""

    within_s: float = 120.0         # a rating is taken this long after completion, then refused


@dataclass(frozen=True)
class Audit:
    """[audit]: how long the audit log keeps its entries."""

    retention_days: int = 180       # at least 180: six months, as the hall's rules ask


@dataclass(frozen=True)
class Backup:
    """[backup]: the copy of the store the daemon takes each day by itself."""

    keep: int = 7                   # the newest this many daily copies stay; 0: none taken
    folder: Path | None = None      # None: backups/ in the data dir


@dataclass(frozen=True, repr=False)
class StoreSettings:
    """[store]: where the queue is kept. None: the embedded SQLite file in data_dir;
    a postgresql:// URL: a database the hall's daemons share."""

    url: str | None = None

    def __repr__(self) -> str:          # the URL may hold the database's password
        return f"StoreSettings(url={None if self.url is None else safe_url(self.url)!r})"


# Where a connection string holds its password (each: before, secret, after): a URL's
# user:SECRET@ and ?password=SECRET, or password=SECRET in libpq's key=value form.
_URL_SECRETS = (re.compile(r"(://[^/?#:@]*:)([^/?#]*)(@)"),
                re.compile(r"([?&]password=)([^&#]*)()", re.I))
_KEYWORD_SECRET = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)()", re.I)


def _keypad_devices(devices: dict[str, Device]) -> Iterator[tuple[Device, str, bool]]:
    """Each keypad device read without problems: (device, its table's label, whether
    its keypads type like a keyboard)."""
    for device in devices.values():
        if device.driver == "keypad" and device.settings is not None:
            yield device, _table_label("devices", device.id), device.settings.input is not None


def _keypad_place(label: str, keyboard: bool, keypad: Any) -> tuple[str, str]:
    """Where a problem of one keypad of a keypad device is written: its device's
    `window` (a keyboard keypad), or its address in [devices.ID.keypads] / .raters]."""
    if keyboard:
        return label, "window"
    table = "raters" if keypad.kind == "rater" else "keypads"
    return f"{label[:-1]}.{table}]", str(keypad.address)


def safe_url(url: str) -> str:
    """A database URL as it may be shown or logged: the password, if any, as ***."""
    for pattern in _URL_SECRETS if "://" in url else (_KEYWORD_SECRET,):
        url = pattern.sub(r"\1***\3", url)
    return url


def store_url_problem(url: str) -> str | None:
    """What is wrong with a `[store] url`, said without its password; None when
    libpq can read it."""
    shown = safe_url(url)
    if not url.startswith(STORE_SCHEMES):
        return (f"'{shown}' is not a PostgreSQL URL; write postgresql://USER@HOST:PORT/DATABASE "
                f"(the password as ${{NAME}}, its value in {TOKENS_FILE}), or leave [store] "
                f"out for the embedded SQLite store in data_dir")
    from psycopg.conninfo import conninfo_to_dict      # only halls with a shared store
    try:
        parts = conninfo_to_dict(url)
    except Exception as exc:         # psycopg.ProgrammingError, saying what libpq read
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        secret = re.search(r"://[^/?#:@]*:([^/?#]*)@", url)
        why = why.replace(url, shown)
        if secret and len(secret.group(1)) >= 4:
            why = why.replace(secret.group(1), "***")
        return f"'{shown}' is not a URL PostgreSQL can read: {why}"
    for port in str(parts.get("port") or "").split(","):
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            return f"'{shown}': port '{port}' is not a number from 1 to 65535"
    return None


@dataclass(frozen=True)
class Device:
    id: str
    driver: str
    options: dict[str, Any] = field(default_factory=dict)   # every key but `driver`, as written
    settings: Any = None            # the driver's own options, read by its `configure`
    enabled: bool = True            # false: the device is `disabled` and never opened
    timeout: float = 3.0            # seconds any one exchange with the device may take
    poll_interval: float = 5.0      # seconds between status polls
    retry_limit: int = 0            # failed reconnects in a row before giving up; 0 = never


@dataclass(frozen=True)
class Config:
    hall: Hall
    server: Server = field(default_factory=Server)
    auth: Auth = field(default_factory=Auth)
    services: tuple[Service, ...] = ()
    windows: tuple[Window, ...] = ()
    devices: dict[str, Device] = field(default_factory=dict)
    path: Path | None = None
    categories: tuple[Category, ...] = ()
    alerts: Alerts = field(default_factory=Alerts)
    appointments: Appointments = field(default_factory=Appointments)
    evaluation: Evaluation = field(default_factory=Evaluation)
    audit: Audit = field(default_factory=Audit)
    backup: Backup = field(default_factory=Backup)
    limits: Limits = field(default_factory=Limits)
    store: StoreSettings = field(default_factory=StoreSettings)

    @property
    def instance_name(self) -> str:
        """This daemon's name among the hall's daemons: [hall] instance, else the host's."""
        return self.hall.instance or socket.gethostname()

    def managed_elsewhere(self, window_id: str) -> str | None:
        """The instance whose daemon manages the window (its clerk's PC, board and
        keypad are on that daemon's floor), when that is not this daemon; else None."""
        window = self.window(window_id)
        if window is None or window.instance is None or window.instance == self.instance_name:
            return None
        return window.instance

    def service(self, service_id: str) -> Service | None:
        return next((s for s in self.services if s.id == service_id), None)

    def service_name(self, service_id: str) -> str:
        """What citizens read for a service; its id once the file no longer has it
        (a ticket from before the change)."""
        service = self.service(service_id)
        return service.name if service else service_id

    def window(self, window_id: str) -> Window | None:
        return next((w for w in self.windows if w.id == window_id), None)


# ---------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------

TERMINAL_OFFLINE_AFTER_S = 15.0   # a terminal's page silent this long: the terminal is offline
KNOWN_DRIVERS = frozenset({"escpos", "modbus_digits", "framed_text", "voice", "keypad",
                           "terminal"})
BOARD_DRIVERS = frozenset({"modbus_digits", "framed_text"})   # what a window's `board` may name
PRINTER_DRIVERS = frozenset({"escpos"})                        # what a terminal's printer may name
VOICE_DRIVERS = frozenset({"voice"})                           # what a window's `voice` may name

_ORIGIN = re.compile(r"https?://[^/\s:]+(:\d{1,5})?")
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
PREFIX_PATTERN = re.compile(r"[A-Z]{1,2}")

# Problems come out in this order, whatever order the tables had in the file.
_SECTION_ORDER = {"hall": 0, "server": 1, "auth": 2, "services": 3, "categories": 4, "windows": 5,
                  "devices": 6, "alerts": 7, "appointments": 8, "evaluation": 9, "audit": 10,
                  "backup": 11, "limits": 12, "store": 13}

_HALL_KEYS = ("name", "timezone", "data_dir", "number_width", "readmit_within_min", "readmit_after",
              "print_materials", "instance")
_SERVER_KEYS = ("host", "port", "public_url", "cors_origins", "event_clients")
_LIMITS_KEYS = ("issue_per_terminal", "issue_per_address")
_AUTH_ROLES = ("kiosk", "technician", "supervisor", "booking", "evaluator")
_SERVICE_KEYS = ("id", "name", "prefix", "code", "guide", "service_time_min", "name_en", "alerts")
_THRESHOLD_KEYS = ("wait_min", "serve_min", "waiting_per_window")
_ALERTS_KEYS = ("check_every_s", "pause_min", "device_offline_s") + _THRESHOLD_KEYS
_APPOINTMENTS_KEYS = ("check_in_before_min", "check_in_after_min")
_EVALUATION_KEYS = ("within_s",)
_AUDIT_KEYS = ("retention_days",)
_BACKUP_KEYS = ("keep", "folder")
_STORE_KEYS = ("url",)
STORE_SCHEMES = ("postgresql://", "postgres://")
INSTANCE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,40}")
MIN_AUDIT_RETENTION_DAYS = 180
_GUIDE_KEYS = ("materials", "time_limit", "fee", "basis", "notes", "where")
_CATEGORY_KEYS = ("id", "name", "name_en", "services")
_WINDOW_KEYS = ("id", "name", "services", "board", "temporary", "voice", "instance")
_TERMINAL_KEYS = ("driver", "printer", "fallback_printer", "offline_after_s")
_COMMON_DEVICE_KEYS = ("driver", "enabled", "timeout", "poll_interval", "retry_limit")

# ${NAME} expands from the environment; $${ is a literal ${; any other ${ is malformed.
_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")


def env_references(text: str) -> list[str]:
    """The NAMEs of the ${NAME}s in `text`, in order ($${ is a literal, not one)."""
    return [match.group(1) for match in _ENV_REF.finditer(text) if match.group(1)]


TOKENS_FILE = "tokens.env"      # beside devices.toml: the values of its ${VAR}s


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a devices.toml; raise ConfigError listing every problem at once.

    `env` is where `${VAR}` references are looked up; when None, the environment,
    and for what it lacks, a tokens.env beside the file (so `sudo kioskd check` or
    `kioskd backup` reads an installed hall's file as the service, given the same
    file as its EnvironmentFile, does). Problem lines never include the file's
    name: the caller, who knows it, prefixes it.
    """
    path = Path(path)
    if env is None:
        tokens = path.parent / TOKENS_FILE
        if (problem := _readable_by_all(tokens)) is not None:
            raise ConfigError([f"{tokens}: {problem}; make it the service's alone: "
                               f"chmod 640 {tokens} (owner root, group kioskd)"])
        env = {**read_env_file(tokens), **os.environ}
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(["file not found"]) from None
    except IsADirectoryError:
        raise ConfigError(["is a directory, not a file"]) from None
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([f"line {line}: not valid UTF-8 (save the file as UTF-8)"]) from None
    config = loads_config(text, base_dir=path.absolute().parent, env=env)
    return replace(config, path=path.absolute())


def _readable_by_all(path: Path) -> str | None:
    """What is wrong when a file of secrets may be read or changed by any user of the PC."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & 0o006:
        return f"every user of this PC can {'change' if mode & 0o002 else 'read'} it " \
               f"(mode {mode & 0o777:04o})"
    return None


def exposed_tokens(config: Config) -> list[str]:
    """Warnings for tokens written into a devices.toml that every user of the PC may
    read: they belong in tokens.env (or the service's environment) as ${NAME}s."""
    problem = _readable_by_all(config.path) if config.path is not None else None
    if problem is None:
        return []
    return [f"{where}: a token is written in the file and {problem}; put it in "
            f"{TOKENS_FILE} beside it and write \"${{NAME}}\" here"
            for where in config.auth.written]


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=VALUE lines, as systemd's EnvironmentFile= reads them (# comments, blank
    lines, a value in matching quotes); nothing when the file is missing or not ours
    to read."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    values = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        name, equals, value = line.removeprefix("export ").partition("=")
        if not equals or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def loads_config(
    text: str,
    *,
    base_dir: str | Path = ".",
    env: Mapping[str, str] | None = None,
) -> Config:
    """Validate devices.toml text; relative paths resolve against `base_dir`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(exc)]) from None
    except RecursionError:               # tomllib recurses into each nested array
        raise ConfigError(["invalid TOML: arrays or inline tables nested too deeply"]) from None
    reader = _Reader(os.environ if env is None else env, Path(base_dir).absolute())
    config = reader.read(data)
    if reader.problems:
        raise ConfigError(reader.sorted_problems())
    assert config is not None
    return config


def check_config(path: str | Path, env: Mapping[str, str] | None = None) -> list[str]:
    """The problems `kioskd check` prints, one line each; empty when the file is valid."""
    try:
        load_config(path, env=env)
    except ConfigError as exc:
        return list(exc.problems)
    return []


def _syntax_problem(exc: tomllib.TOMLDecodeError) -> str:
    message = str(exc)
    match = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message, re.S)
    if match:
        what, line, column = match.groups()
        return f"line {line}, column {column}: invalid TOML: {what}"
    return f"invalid TOML: {message}"


# -- the reader ---------------------------------------------------------------

_MISSING: Any = object()


# What would split a problem line (a quoted key or value may hold it): shown escaped.
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _kind(value: Any) -> str:
    """The TOML name of a parsed value's type, for messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, _dt.datetime):
        return "date-time"
    if isinstance(value, _dt.date):
        return "date"
    if isinstance(value, _dt.time):
        return "time"
    return type(value).__name__


def _table_label(parent: str, key: str) -> str:
    """`[devices.printer_1]`, or `[devices."odd id"]` when the key is not a bare TOML key."""
    shown = key if ID_PATTERN.fullmatch(key) else '"' + key.replace('"', '\\"') + '"'
    return f"[{parent}.{shown}]" if parent else f"[{shown}]"


def _suggest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.7)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Reader:
    """Walks the parsed TOML once, building typed objects and collecting every problem."""

    def __init__(self, env: Mapping[str, str], base_dir: Path):
        self.env = env
        self.base_dir = base_dir
        self.problems: list[tuple[int, int, str]] = []
        # Every id written in the file, including entries dropped for their own problems:
        # a reference to one of those is not reported again as a dangling reference.
        self.ids_in_file: dict[str, set[str]] = {"services": set(), "windows": set(), "devices": set(),
                                                 "categories": set()}
        self.written_tokens: list[str] = []     # Auth.written

    # -- problems -----------------------------------------------------------

    def problem(self, label: str, key: str | None, message: str) -> None:
        section = label.strip("[").split(".")[0].split(" ")[0].split("]")[0]
        order = _SECTION_ORDER.get(section, -1)   # unknown tables first: often the cause of the rest
        where = f"{label} {key}" if key is not None else label
        line = _LINE_BREAKING.sub(lambda m: ascii(m.group())[1:-1], f"{where}: {message}")
        self.problems.append((order, len(self.problems), line))   # one line, whatever was quoted

    def sorted_problems(self) -> list[str]:
        return [text for _, _, text in sorted(self.problems)]

    # -- whole file ---------------------------------------------------------

    def read(self, data: dict[str, Any]) -> Config | None:
        for key, value in data.items():
            if key in _SECTION_ORDER:
                continue
            if isinstance(value, dict):
                self.problem(_table_label("", key), None, "unknown table" + _suggest(key, _SECTION_ORDER))
            else:
                self.problem("(top level)", None, f"unknown key '{key}'; keys belong in a table "
                                                  "such as [hall] or [server]")

        hall = self.read_hall(data.get("hall", _MISSING))
        server = self.read_server(data.get("server", _MISSING))
        alerts = self.read_alerts(data.get("alerts", _MISSING))
        appointments, evaluation, audit = self.read_supervision(data)
        backup = self.read_backup(data.get("backup", _MISSING))
        limits = self.read_limits(data.get("limits", _MISSING))
        store = self.read_store(data.get("store", _MISSING))
        services = self.read_services(data.get("services", _MISSING), alerts.thresholds)
        categories = self.read_categories(data.get("categories", _MISSING), services)
        devices = self.read_devices(data.get("devices", _MISSING))
        windows = self.read_windows(data.get("windows", _MISSING), services, devices)
        self.check_keypads(devices, windows, services)
        if hall is not None and hall.instance is not None:
            self.check_instances(hall.instance, devices, windows)
        auth = self.read_auth(data.get("auth", _MISSING), windows)
        if self.problems or hall is None:
            return None
        return Config(hall=hall, server=server, auth=auth, services=tuple(services.values()),
                      windows=tuple(windows.values()), devices=devices, categories=categories,
                      alerts=alerts, appointments=appointments, evaluation=evaluation,
                      audit=audit, backup=backup, limits=limits, store=store)

    def table(self, label: str, value: Any, *, required: bool = False) -> _Table | None:
        if value is _MISSING:
            if required:
                self.problem(label, None, "missing table")
            return None if required else _Table(self, label, {})
        if not isinstance(value, dict):
            self.problem(label, None, f"expected a table, got {_kind(value)}")
            return None
        return _Table(self, label, value)

    def array_of_tables(self, name: str, value: Any) -> list[Any]:
        if value is _MISSING:
            return []
        if isinstance(value, dict):
            self.problem(f"[{name}]", None,
                         f"expected an array of tables — write each entry as [[{name}]] with an id key")
            return []
        if not isinstance(value, list):
            self.problem(f"[{name}]", None, f"expected an array of tables ([[{name}]]), got {_kind(value)}")
            return []
        return value

    # -- [hall], [server] ---------------------------------------------------

    def read_hall(self, value: Any) -> Hall | None:
        t = self.table("[hall]", value, required=True)
        if t is None:
            return None
        defaults = Hall(name="")
        name = t.string("name", required=True)
        timezone = t.string("timezone", defaults.timezone)
        if timezone is not None and not _zone_exists(timezone):
            t.problem("timezone", f"unknown time zone '{timezone}'" + _zone_hint(timezone))
        data_dir = t.string("data_dir", str(defaults.data_dir))
        hall = Hall(
            name=name or "",
            timezone=timezone or defaults.timezone,
            data_dir=self.resolve(data_dir or str(defaults.data_dir)),
            number_width=t.integer("number_width", defaults.number_width, low=1, high=6),
            readmit_within_min=t.integer("readmit_within_min", defaults.readmit_within_min, low=0),
            readmit_after=t.integer("readmit_after", defaults.readmit_after, low=0),
            print_materials=t.boolean("print_materials", defaults.print_materials),
            instance=self.instance_name(t),
        )
        t.finish(_HALL_KEYS)
        return hall if name is not None else None

    @staticmethod
    def instance_name(t: _Table) -> str | None:
        """A daemon's name in a hall of several ([hall] instance, [[windows]] instance)."""
        name = t.string("instance")
        if name is not None and not INSTANCE_PATTERN.fullmatch(name):
            t.problem("instance", f"'{name}' is not an instance name: 1 to 40 letters "
                                  "A-Z a-z, digits, '_' and '-'")
            return None
        return name

    def resolve(self, raw: str) -> Path:
        return Path(os.path.normpath(self.base_dir / raw))

    def read_server(self, value: Any) -> Server:
        t = self.table("[server]", value)
        if t is None:
            return Server()
        server = Server(
            host=t.string("host", Server.host) or Server.host,
            port=t.integer("port", Server.port, low=1, high=65535),
            public_url=t.string("public_url"),
            cors_origins=t.strings("cors_origins", Server.cors_origins) or (),
            event_clients=t.integer("event_clients", Server.event_clients, low=1, high=100_000),
        )
        if server.public_url is not None and not re.match(r"https?://[^/\s]+", server.public_url):
            t.problem("public_url", f"'{server.public_url}' is not an http:// or https:// address")
        for origin in server.cors_origins:
            if not _ORIGIN.fullmatch(origin):
                t.problem("cors_origins", f"'{origin}' is not a web origin; write it as "
                          "scheme://host[:port] with nothing after, e.g. http://10.0.0.5:8000")
        t.finish(_SERVER_KEYS)
        return server

    # -- [alerts], [appointments], [evaluation], [audit] ------------------------

    def read_alerts(self, value: Any) -> Alerts:
        t = self.table("[alerts]", value)
        if t is None:
            return Alerts()
        d = Alerts()
        alerts = Alerts(
            check_every_s=t.number("check_every_s", d.check_every_s, above=0),
            pause_min=t.number("pause_min", d.pause_min, at_least=0),
            device_offline_s=t.number("device_offline_s", d.device_offline_s, at_least=0),
            thresholds=self.read_thresholds(t, d.thresholds))
        t.finish(_ALERTS_KEYS)
        return alerts

    @staticmethod
    def read_thresholds(t: _Table, base: Thresholds) -> Thresholds:
        return Thresholds(**{key: t.number(key, getattr(base, key), at_least=0)
                             for key in _THRESHOLD_KEYS})

    def read_supervision(self, data: dict[str, Any]
                         ) -> tuple[Appointments, Evaluation, Audit]:
        appointments, evaluation, audit = Appointments(), Evaluation(), Audit()
        t = self.table("[appointments]", data.get("appointments", _MISSING))
        if t is not None:
            appointments = Appointments(
                check_in_before_min=t.integer("check_in_before_min",
                                              appointments.check_in_before_min, low=0, high=720),
                check_in_after_min=t.integer("check_in_after_min",
                                             appointments.check_in_after_min, low=0, high=720))
            t.finish(_APPOINTMENTS_KEYS)
        t = self.table("[evaluation]", data.get("evaluation", _MISSING))
        if t is not None:
            evaluation = Evaluation(within_s=t.number("within_s", evaluation.within_s, above=0))
            t.finish(_EVALUATION_KEYS)
        t = self.table("[audit]", data.get("audit", _MISSING))
        if t is not None:
            audit = Audit(retention_days=t.integer("retention_days", audit.retention_days,
                                                   low=MIN_AUDIT_RETENTION_DAYS))
            t.finish(_AUDIT_KEYS)
        return appointments, evaluation, audit

    def read_backup(self, value: Any) -> Backup:
        t = self.table("[backup]", value)
        if t is None:
            return Backup()
        folder = t.string("folder")
        backup = Backup(keep=t.integer("keep", Backup.keep, low=0, high=3660),
                        folder=self.resolve(folder) if folder else None)
        t.finish(_BACKUP_KEYS)
        return backup

    def read_store(self, value: Any) -> StoreSettings:
        t = self.table("[store]", value)
        if t is None:
            return StoreSettings()
        url = t.string("url")
        if url is not None and (problem := store_url_problem(url)) is not None:
            t.problem("url", problem)
            url = None
        t.finish(_STORE_KEYS)
        return StoreSettings(url=url)

    def read_limits(self, value: Any) -> Limits:
        t = self.table("[limits]", value)
        if t is None:
            return Limits()
        limits = Limits(**{key: t.integer(key, getattr(Limits, key), low=0, high=1_000_000)
                           for key in _LIMITS_KEYS})
        t.finish(_LIMITS_KEYS)
        return limits

    # -- [[services]] -------------------------------------------------------

    def read_services(self, value: Any, thresholds: Thresholds = Thresholds()
                      ) -> dict[str, Service]:
        services: dict[str, Service] = {}
        first_at: dict[str, int] = {}
        prefix_owner: dict[str, str] = {}
        for position, entry in enumerate(self.array_of_tables("services", value), start=1):
            service_id, label = self.entry_id("services", "service", position, entry, first_at)
            t = self.table(label, entry)
            if t is None:
                continue
            name = t.string("name", required=True)
            prefix = t.string("prefix", required=True)
            if prefix is not None:
                if not PREFIX_PATTERN.fullmatch(prefix):
                    t.problem("prefix", f"'{prefix}' must be 1 or 2 uppercase letters A-Z")
                elif prefix in prefix_owner:
                    t.problem("prefix", f"'{prefix}' is already used by service {prefix_owner[prefix]}")
                else:
                    prefix_owner[prefix] = f"'{service_id}'" if service_id else f"#{position}"
            code = t.string("code", required=True)
            minutes = t.number("service_time_min", 5.0, above=0)
            name_en = t.string("name_en", "", allow_empty=True) or ""
            t.finish(_SERVICE_KEYS)
            guide = self.read_guide(f"{label[:-1]}.guide]", t.raw("guide"))
            own = t.table("alerts")
            limits = thresholds
            if own is not None:
                limits = self.read_thresholds(own, thresholds)
                own.finish(_THRESHOLD_KEYS)
            if service_id is None:
                continue
            first_at[service_id] = position
            services[service_id] = Service(id=service_id, name=name or "", prefix=prefix or "",
                                           code=code or "", guide=guide, service_time_min=minutes,
                                           name_en=name_en, thresholds=limits)
        return services

    def read_categories(self, value: Any, services: dict[str, Service]) -> tuple[Category, ...]:
        """The kiosk's groups of services, in the order the file gives them; a
        service belongs to one category at most."""
        categories: list[Category] = []
        first_at: dict[str, int] = {}
        owner: dict[str, str] = {}
        for position, entry in enumerate(self.array_of_tables("categories", value), start=1):
            category_id, label = self.entry_id("categories", "category", position, entry, first_at)
            t = self.table(label, entry)
            if t is None:
                continue
            name = t.string("name", required=True)
            name_en = t.string("name_en", "", allow_empty=True) or ""
            members = t.strings("services", required=True) or ()
            if t.raw("services") == []:
                t.problem("services", "lists no service")
            for service_id in members:
                if service_id not in services and service_id not in self.ids_in_file["services"]:
                    t.problem("services", f"unknown service '{service_id}'"
                                          f"{_suggest(service_id, services)}")
                elif service_id in owner:
                    t.problem("services", f"service '{service_id}' is already in category "
                                          f"'{owner[service_id]}'")
                elif category_id is not None:
                    owner[service_id] = category_id
            t.finish(_CATEGORY_KEYS)
            if category_id is None:
                continue
            first_at[category_id] = position
            categories.append(Category(id=category_id, name=name or "", services=tuple(members),
                                       name_en=name_en))
        return tuple(categories)

    def read_guide(self, label: str, value: Any) -> Guide:
        t = self.table(label, value)
        if t is None:
            return Guide()
        guide = Guide(
            materials=t.strings("materials", ()) or (),
            time_limit=t.string("time_limit", "", allow_empty=True) or "",
            fee=t.string("fee", "", allow_empty=True) or "",
            basis=t.string("basis", "", allow_empty=True) or "",
            notes=t.string("notes", "", allow_empty=True) or "",
            where=t.string("where", "", allow_empty=True) or "",
        )
        t.finish(_GUIDE_KEYS)
        return guide

    def entry_id(self, section: str, noun: str, position: int, entry: Any,
                 taken: Mapping[str, int]) -> tuple[str | None, str]:
        """The id of one [[services]]/[[windows]] entry and the label its problems carry.

        An entry without a usable id, or repeating an earlier id, is labelled by its
        position (`[windows #3]`) so its problems cannot be mistaken for another entry's.
        """
        fallback = f"[{section} #{position}]"
        if not isinstance(entry, dict):
            return None, fallback
        if isinstance(entry.get("id"), (str, int)):
            self.ids_in_file[section].add(str(entry["id"]))
        if "id" not in entry:
            self.problem(fallback, None, "missing key 'id'")
            return None, fallback
        raw = entry["id"]
        if isinstance(raw, int) and not isinstance(raw, bool):
            self.problem(fallback, "id", f'expected a string, got integer; quote it: id = "{raw}"')
            return None, fallback
        if not isinstance(raw, str):
            self.problem(fallback, "id", f"expected a string, got {_kind(raw)}")
            return None, fallback
        value = self.expand(fallback, "id", raw)
        if value is None:
            return None, fallback
        if not ID_PATTERN.fullmatch(value):
            self.problem(fallback, "id", f"{noun} id '{value}' may only contain "
                                         "letters A-Z a-z, digits, '_' and '-'")
            return None, fallback
        if value in taken:
            self.problem(fallback, "id", f"duplicate {noun} id '{value}' (entry {taken[value]} has it too)")
            return None, fallback
        return value, f"[{section}.{value}]"

    # -- [devices.ID] -------------------------------------------------------

    def read_devices(self, value: Any) -> dict[str, Device]:
        t = self.table("[devices]", value)
        if t is None:
            return {}
        devices: dict[str, Device] = {}
        self.ids_in_file["devices"] = set(t.data)
        pending_terminals: list[tuple[_Table, str]] = []
        for device_id, entry in t.data.items():
            label = _table_label("devices", device_id)
            valid_id = bool(ID_PATTERN.fullmatch(device_id))
            if not valid_id:
                self.problem(label, None, f"device id '{device_id}' may only contain "
                                          "letters A-Z a-z, digits, '_' and '-'")
            d = self.table(label, entry)
            if d is None:
                continue
            driver = d.string("driver", required=True)
            if driver is not None and driver not in KNOWN_DRIVERS:
                d.problem("driver", f"unknown driver '{driver}'{_suggest(driver, KNOWN_DRIVERS)}; "
                                    f"known drivers: {', '.join(sorted(KNOWN_DRIVERS))}")
            if driver == "terminal":
                pending_terminals.append((d, device_id))
                device = Device(id=device_id, driver=driver)
            else:
                device = self.read_device(d, label, device_id, driver)
            if valid_id and driver is not None:
                devices[device_id] = device
        self.check_buses(devices)
        for d, device_id in pending_terminals:
            options = {}
            for key, required in (("printer", True), ("fallback_printer", False)):
                printer = d.string(key, required=required)
                if printer is not None and self.check_device(d, key, printer, devices, PRINTER_DRIVERS,
                                                              "an escpos printer"):
                    options[key] = printer
            if options.get("fallback_printer") and options.get("fallback_printer") == options.get("printer"):
                d.problem("fallback_printer", "is the same device as printer")
            options["offline_after_s"] = d.number("offline_after_s", TERMINAL_OFFLINE_AFTER_S,
                                                  above=0)
            d.finish(_TERMINAL_KEYS)
            if device_id in devices:
                devices[device_id] = replace(devices[device_id], options=options)
        return devices

    def read_device(self, d: _Table, label: str, device_id: str, driver: str | None) -> Device:
        """The options every device has, then the driver family's own through
        its `configure` (Klipper's way: each option read once, up front; any key
        nobody read is an error)."""
        as_written = {key: value for key, value in d.data.items() if key != "driver"}
        common = dict(enabled=d.boolean("enabled", Device.enabled),
                      timeout=d.number("timeout", Device.timeout, above=0),
                      poll_interval=d.number("poll_interval", Device.poll_interval, above=0),
                      retry_limit=d.integer("retry_limit", Device.retry_limit, low=0))
        family = drivers.family(driver) if driver else None
        if family is None:                       # no or an unknown driver: reported already
            return Device(device_id, driver or "", as_written, **common)
        settings = family.configure(d)
        d.finish_unread(_COMMON_DEVICE_KEYS)
        return Device(device_id, driver, as_written, settings, **common)

    def check_buses(self, devices: dict[str, Device]) -> None:
        """Devices sharing a serial port (an RS-485 cable) agree on its settings,
        each has an address of its own, and each may take as long as its
        longest exchange with the device."""
        on_lines = {d.id: d for d in devices.values()
                    if getattr(d.settings, "line", None) is not None}
        lines = {d.id: (d.driver, d.settings.line) for d in on_lines.values()}
        for device_id, key, message in same_line_problems(lines):
            self.problem(_table_label("devices", device_id), key, message)
        holders: dict[tuple[str, int | None], str] = {}
        for device in on_lines.values():
            settings = device.settings
            key = settings.BUS_ADDRESS        # "unit", "address"; None: the port is its own
            where = (settings.line.port, getattr(settings, key) if key else None)
            if where in holders and key is None:
                self.problem(_table_label("devices", device.id), "port",
                             f"{settings.line.port} is also {holders[where]}'s; a keypad bus "
                             "is one device's alone (put all its keypads in that device)")
            elif where in holders:
                self.problem(_table_label("devices", device.id), key,
                             f"{where[1]} on {settings.line.port} is also "
                             f"{holders[where]}'s; every device on a cable needs its own")
            else:
                holders[where] = device.id
            longest = getattr(settings, "longest_show_s", 0.0)
            if device.timeout < longest:
                self.problem(_table_label("devices", device.id), "timeout",
                             f"{device.timeout:g} s is shorter than one write to this board "
                             f"may take ({longest:g} s: every try of every frame); raise "
                             f"timeout or lower retries or reply_timeout")

    def check_keypads(self, devices: dict[str, Device], windows: dict[str, Window],
                      services: dict[str, Service]) -> None:
        """A keypad acts for a window the hall has, and transfers to services it has."""
        for device, label, keyboard in _keypad_devices(devices):
            for keypad in device.settings.keypads.values():
                where, key = _keypad_place(label, keyboard, keypad)
                if keypad.window not in windows:
                    self.problem(where, key, f"unknown window '{keypad.window}'"
                                             + _suggest(keypad.window, windows))
            for keypad in device.settings.keypads.values():
                keys = f"{label[:-1]}.{'rater_keys' if keypad.kind == 'rater' else 'keys'}]"
                for code, action in keypad.keys.items():
                    if action.service is not None and action.service not in services:
                        self.problem(keys, code, f"transfer to unknown service "
                                                 f"'{action.service}'"
                                                 + _suggest(action.service, services))

    def check_instances(self, mine: str, devices: dict[str, Device],
                        windows: dict[str, Window]) -> None:
        """In a hall of several daemons, the devices of this file are this daemon's
        ([hall] instance): none of them may be bound to a window another daemon manages
        (a board over it, a caller or rating keypad for it)."""
        def elsewhere(window_id: str) -> str | None:
            window = windows.get(window_id)
            return window.instance if window and window.instance not in (None, mine) else None

        for window in windows.values():
            if window.board is not None and (other := elsewhere(window.id)) is not None:
                self.problem(f"[windows.{window.id}]", "board",
                             f"device '{window.board}' is this daemon's (instance \"{mine}\") "
                             f"but window {window.id} is instance \"{other}\"'s; the board "
                             f"of a window belongs in the devices.toml of its instance")
        for device, label, keyboard in _keypad_devices(devices):
            for keypad in device.settings.keypads.values():
                other = elsewhere(keypad.window)
                if other is None:
                    continue
                what = "rating keypad" if keypad.kind == "rater" else "keypad"
                self.problem(*_keypad_place(label, keyboard, keypad), f"device '{device.id}' is this daemon's (instance "
                                         f"\"{mine}\") but its {what} is bound to window "
                                         f"{keypad.window}, which is instance \"{other}\"'s; "
                                         f"a window's keypads belong in the devices.toml of "
                                         f"its instance")

    def check_device(self, t: _Table, key: str, device_id: str, devices: dict[str, Device],
                     allowed: frozenset[str], what: str) -> bool:
        device = devices.get(device_id)
        if device is None and device_id in self.ids_in_file["devices"]:
            return False   # exists, but broken: its own problems are already reported
        if device is None:
            t.problem(key, f"unknown device '{device_id}'" + _suggest(device_id, devices))
            return False
        if device.driver in KNOWN_DRIVERS and device.driver not in allowed:
            article = "an" if device.driver[0] in "aeiou" else "a"
            t.problem(key, f"device '{device_id}' is {article} {device.driver} device, not {what}")
            return False
        return True

    # -- [[windows]] --------------------------------------------------------

    def read_windows(self, value: Any, services: dict[str, Service],
                     devices: dict[str, Device]) -> dict[str, Window]:
        windows: dict[str, Window] = {}
        board_of: dict[str, str] = {}       # board device -> the window it hangs over
        first_at: dict[str, int] = {}
        for position, entry in enumerate(self.array_of_tables("windows", value), start=1):
            window_id, label = self.entry_id("windows", "window", position, entry, first_at)
            t = self.table(label, entry)
            if t is None:
                continue
            name = t.string("name", required=True)
            served = t.strings("services", required=True)
            if served is not None:
                if not served:
                    t.problem("services", "is empty; a window must serve at least one service")
                seen: set[str] = set()
                for service_id in served:
                    if service_id in seen:
                        t.problem("services", f"'{service_id}' is listed twice")
                    elif service_id not in services and service_id not in self.ids_in_file["services"]:
                        t.problem("services", f"unknown service '{service_id}'"
                                              + _suggest(service_id, services))
                    seen.add(service_id)
            board = t.string("board")
            if board is not None and self.check_device(
                    t, "board", board, devices, BOARD_DRIVERS,
                    "a call board (" + " or ".join(sorted(BOARD_DRIVERS)) + ")"):
                display = getattr(devices[board].settings, "display", None)
                if display is not None and display.shows != "window":
                    t.problem("board", f"device '{board}' shows the hall's latest calls "
                                       f"(shows = \"{display.shows}\"), not one window's")
                elif board in board_of:
                    t.problem("board", f"device '{board}' is already the board of window "
                                       f"{board_of[board]}")
                elif window_id is not None:
                    board_of[board] = window_id
            temporary = t.boolean("temporary", False)
            instance = self.instance_name(t)
            voice = t.string("voice")
            if voice is not None and not self.check_device(t, "voice", voice, devices,
                                                           VOICE_DRIVERS, "a voice caller"):
                voice = None
            t.finish(_WINDOW_KEYS)
            if window_id is None:
                continue
            first_at[window_id] = position
            windows[window_id] = Window(id=window_id, name=name or "", services=served or (),
                                        board=board, temporary=temporary, voice=voice,
                                        instance=instance)
        return windows

    # -- [auth] -------------------------------------------------------------

    def read_auth(self, value: Any, windows: dict[str, Window]) -> Auth:
        t = self.table("[auth]", value)
        if t is None:
            return Auth()
        roles = {role: self.tokens(t, role) for role in _AUTH_ROLES}
        per_window: dict[str, tuple[str, ...]] = {}
        w = self.table("[auth.windows]", t.raw("windows"))
        if w is not None:
            for window_id in w.data:
                tokens = self.tokens(w, window_id)
                if window_id not in windows and window_id not in self.ids_in_file["windows"]:
                    w.problem(window_id, f"unknown window '{window_id}'" + _suggest(window_id, windows))
                per_window[window_id] = tokens
        t.finish(_AUTH_ROLES + ("windows",))
        return Auth(kiosk=roles["kiosk"], technician=roles["technician"],
                    supervisor=roles["supervisor"], windows=per_window,
                    booking=roles["booking"], evaluator=roles["evaluator"],
                    written=tuple(self.written_tokens))

    def tokens(self, t: _Table, key: str) -> tuple[str, ...]:
        raw = t.raw(key)
        if isinstance(raw, list) and any(isinstance(item, str) and not _ENV_REF.fullmatch(item)
                                         for item in raw):
            self.written_tokens.append(f"{t.label} {key}")
        tokens = t.strings(key, ()) or ()
        for token in tokens:
            if not token.strip():
                t.problem(key, "empty token (an unset or empty variable?)")
        return tokens

    # -- ${VAR} -------------------------------------------------------------

    def expand(self, label: str, key: str, text: str) -> str | None:
        """Expand ${VAR} references; None (after reporting) when one cannot be expanded."""
        ok = True

        def substitute(match: re.Match[str]) -> str:
            nonlocal ok
            whole, name = match.group(0), match.group(1)
            if whole == "$${":
                return "${"
            if name is None:
                self.problem(label, key, "malformed ${...}: write ${NAME} with letters, digits "
                                         "and '_' (or $${ for a literal ${)")
                ok = False
                return whole
            if name not in self.env:
                self.problem(label, key, f"${{{name}}} is not set")
                ok = False
                return whole
            return self.env[name]

        result = _ENV_REF.sub(substitute, text)
        return result if ok else None


class _Table:
    """One TOML table being read, with typed getters that report instead of raising."""

    def __init__(self, reader: _Reader, label: str, data: dict[str, Any]):
        self.reader = reader
        self.label = label
        self.data = data
        self.read_keys: set[str] = set()

    def problem(self, key: str | None, message: str) -> None:
        self.reader.problem(self.label, key, message)

    def raw(self, key: str, *, required: bool = False) -> Any:
        self.read_keys.add(key)
        if key not in self.data:
            if required:
                self.problem(None, f"missing key '{key}'")
            return _MISSING
        return self.data[key]

    def string(self, key: str, default: str | None = None, *, required: bool = False,
               allow_empty: bool = False) -> str | None:
        value = self.raw(key, required=required)
        if value is _MISSING:
            return default
        if not isinstance(value, str):
            self.problem(key, f"expected a string, got {_kind(value)}" + _quote_hint(key, value))
            return None if required else default
        expanded = self.reader.expand(self.label, key, value)
        if expanded is None:
            return None if required else default
        if not expanded.strip() and not allow_empty:
            self.problem(key, "must not be empty")
            return None if required else default
        return expanded

    def strings(self, key: str, default: tuple[str, ...] | None = None, *,
                required: bool = False) -> tuple[str, ...] | None:
        value = self.raw(key, required=required)
        if value is _MISSING:
            return default
        if not isinstance(value, list):
            self.problem(key, f"expected an array of strings, got {_kind(value)}")
            return None if required else default
        result: list[str] = []
        ok = True
        for position, item in enumerate(value, start=1):
            if not isinstance(item, str):
                self.problem(key, f"expected an array of strings, got {_kind(item)} at position {position}"
                                  + (f'; quote it: "{item}"' if _is_int(item) else ""))
                ok = False
                continue
            expanded = self.reader.expand(self.label, key, item)
            if expanded is None:
                ok = False
                continue
            result.append(expanded)
        if not ok:
            return None if required else default
        return tuple(result)

    def integer(self, key: str, default: int, *, low: int | None = None, high: int | None = None) -> int:
        value = self.raw(key)
        if value is _MISSING:
            return default
        if not _is_int(value):
            self.problem(key, f"expected an integer, got {_kind(value)}")
            return default
        if (low is not None and value < low) or (high is not None and value > high):
            self.problem(key, f"{value} is out of range; expected {_range(low, high)}")
            return default
        return value

    def number(self, key: str, default: float, *, above: float | None = None,
               at_least: float | None = None) -> float:
        value = self.raw(key)
        if value is _MISSING:
            return default
        if not (_is_int(value) or isinstance(value, float)):
            self.problem(key, f"expected a number, got {_kind(value)}")
            return default
        if value != value or value in (float("inf"), float("-inf")):
            self.problem(key, f"expected a finite number, got {value}")
            return default
        if above is not None and value <= above:
            self.problem(key, f"{value} is out of range; expected a number greater than {above:g}")
            return default
        if at_least is not None and value < at_least:
            self.problem(key, f"{value} is out of range; expected a number of at least {at_least:g}")
            return default
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.problem(key, f"expected a boolean (true or false), got {_kind(value)}")
            return default
        return value

    def path(self, key: str, default: str | None = None, *,
             required: bool = False) -> str | None:
        """A device path or URL; a relative path is taken against the file's folder."""
        text = self.string(key, default, required=required)
        return None if text is None else resolve_port(text, self.reader.base_dir)

    def keys(self) -> tuple[str, ...]:
        """The keys the table has, as written (a map whose keys are data: addresses, codes)."""
        return tuple(self.data)

    def table(self, key: str) -> _Table | None:
        """A sub-table, read with the same getters; None when absent or not a table."""
        value = self.raw(key)
        if value is _MISSING:
            return None
        if not isinstance(value, dict):
            self.problem(key, f"expected a table, got {_kind(value)}")
            return None
        return _Table(self.reader, f"{self.label[:-1]}.{key}]", value)

    def finish(self, known: Iterable[str]) -> None:
        """Report every key this table may not have."""
        known = tuple(known)
        for key in self.data:
            if key not in known:
                self.problem(None, f"unknown key '{key}'" + _suggest(key, known))

    def finish_unread(self, also_known: Iterable[str] = ()) -> None:
        """Report every key no getter asked for."""
        self.finish(self.read_keys | set(also_known))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _quote_hint(key: str, value: Any) -> str:
    return f'; quote it: {key} = "{value}"' if _is_int(value) else ""


def _range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"{low} to {high}"
    if low is not None:
        return f"at least {low}"
    return f"at most {high}"


def _zone_exists(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _zone_hint(name: str) -> str:
    try:
        zones = available_timezones()
    except Exception:   # no tz database to suggest from; the problem line stands alone
        return ""
    return _suggest(name, zones)
