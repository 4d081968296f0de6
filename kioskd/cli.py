"""The `kioskd` command: run the daemon, check a devices.toml, emulate a device."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from drivers.base import State

from .config import Config, ConfigError, Device, exposed_tokens, load_config
from . import logs
from .httpserver import BoundedHttpToolsProtocol
from .systemd import Notifier

log = logging.getLogger("kioskd")

if TYPE_CHECKING:
    from .devices import Supervisor

EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kioskd", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the daemon in the foreground")
    _config_option(run)
    run.add_argument("--host", help="bind address (default: [server] host)")
    run.add_argument("--port", type=int, help="port (default: [server] port)")
    run.add_argument("--log-level", default=os.environ.get("KIOSKD_LOG_LEVEL", "info"),
                     choices=["debug", "info", "warning", "error"])
    run.set_defaults(handler=_run)

    check = commands.add_parser("check", help="validate a devices.toml without opening devices")
    _config_option(check)
    check.set_defaults(handler=lambda args: _check(args.config))

    emulate = commands.add_parser("emulate", help="run an emulated device in the foreground")
    emulated = emulate.add_subparsers(dest="device", required=True)
    printer = emulated.add_parser("printer", help="an ESC/POS ticket printer on TCP and/or a pty")
    printer.add_argument("--listen", metavar="HOST:PORT",
                         help="TCP address (default 127.0.0.1:9100 unless --pty alone)")
    printer.add_argument("--pty", action="store_true", help="also serve a pseudo-terminal")
    printer.add_argument("--jobs", type=Path, metavar="DIR",
                         help="save each job as NNNN.bin, .json and .png here")
    printer.add_argument("--profile", default="80mm")
    printer.add_argument("--encoding", default="gb18030")
    printer.set_defaults(handler=_emulate_printer)

    board = emulated.add_parser(
        "board", help="the call boards of a devices.toml, on pseudo-terminals",
        description="Emulate the call boards a devices.toml describes (all of them, or the "
                    "ones named), each on a pseudo-terminal linked at its `port` path, and "
                    "print what each board shows whenever it changes. Boards sharing a port "
                    "share one emulated bus.")
    _config_option(board)
    board.add_argument("devices", nargs="*", metavar="DEVICE", help="board device ids")
    board.set_defaults(handler=_emulate_boards)

    keypad = emulated.add_parser(
        "keypad", help="the keypads of a devices.toml on a pseudo-terminal, pressed from stdin",
        description="Emulate the keypads a keypad device of a devices.toml describes, on a "
                    "pseudo-terminal linked at its `port` path, as a receiver or an RS-485 "
                    "bus. Type one press a line: ADDRESS ACTION (3 call-next, 103 rate:5) or "
                    "ADDRESS CODE (3 01, the key code in hex). What kioskd answers is printed "
                    "(keypad 3 shows A012, keypad 3 beeps).")
    _config_option(keypad)
    keypad.add_argument("keypads", nargs="?", metavar="DEVICE",
                        help="the keypad device (default: the file's only one)")
    keypad.set_defaults(handler=_emulate_keypads)

    backup = commands.add_parser(
        "backup", help="copy the store to a file while the daemon runs",
        description="Take a consistent copy of the hall's store (SQLite's online backup: "
                    "every ticket committed when it starts), while the daemon goes on. "
                    "PATH is a new file, or a folder to put kioskd-YYYYMMDD-HHMMSS.db in.")
    _config_option(backup)
    backup.add_argument("path", type=Path, metavar="PATH")
    backup.set_defaults(handler=_backup_or_restore)

    restore = commands.add_parser(
        "restore", help="replace the store with a backup (the daemon stopped)",
        description="Replace the hall's store with a backup taken by `kioskd backup`. "
                    "Refused while a daemon runs on the store (systemctl stop kioskd "
                    "first). The store it replaces is kept beside it.")
    _config_option(restore)
    restore.add_argument("backup", type=Path, metavar="BACKUP")
    restore.set_defaults(handler=_backup_or_restore)

    from .install import add_commands
    add_commands(commands)          # install, uninstall, hardware: kioskd/install.py

    args = parser.parse_args(argv)
    return args.handler(args)


CONFIG_LOCATIONS = (Path("devices.toml"), Path("/etc/kioskd/devices.toml"))


def _config_option(parser: argparse.ArgumentParser) -> None:
    """-c: $KIOSKD_CONFIG, else ./devices.toml, else an installed hall's file."""
    default = os.environ.get("KIOSKD_CONFIG") or next(
        (str(path) for path in CONFIG_LOCATIONS if path.exists()), str(CONFIG_LOCATIONS[0]))
    parser.add_argument("-c", "--config", default=default, type=Path,
                        help=f"the hall's devices.toml (default: {default})")


def _load(path: Path) -> Config | None:
    """The hall's config, or None after printing every problem, one per line."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return None


def _check(path: Path) -> int:
    config = _load(path)
    if config is None:
        return EXIT_CONFIG
    for warning in exposed_tokens(config):
        print(f"{path}: warning: {warning}", file=sys.stderr)
    if config.store.url is not None:     # the hall's other daemons: does this one agree?
        from .instances import NotAdmitted
        from .pgstore import admission
        refused = admission(config)
        if isinstance(refused, NotAdmitted):
            print(f"{path}: {refused}", file=sys.stderr)
            return EXIT_CONFIG
        if refused is not None:
            print(f"{path}: warning: {refused}; the hall's catalogue was not compared",
                  file=sys.stderr)
    print(f"{path}: ok — {config.hall.name}: {len(config.services)} services, "
          f"{len(config.windows)} windows, {len(config.devices)} devices")
    return 0


def _backup_or_restore(args: argparse.Namespace) -> int:
    from .backup import BackupError, backup, restore
    from .store import store_file

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    if config.store.url is not None:
        print(f"kioskd {args.command}: this hall's store is PostgreSQL ([store] url); back it "
              "up and restore it with pg_dump and pg_restore (README: Several daemons, one "
              "database)", file=sys.stderr)
        return 1
    db = store_file(config.hall.data_dir)
    try:
        if args.command == "backup":
            print(f"backed up: {backup(db, args.path)}")
            return 0
        restored, kept, warning = restore(args.backup, db)
    except BackupError as exc:
        print(f"kioskd {args.command}: {exc}", file=sys.stderr)
        return 1
    print(f"restored: {restored}")
    if kept is not None:
        print(f"the store it replaced is kept as {kept}; today's ticket numbers go on "
              "from where it stopped")
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    print("next: systemctl start kioskd")
    return 0


def _stopped_by_signals() -> threading.Event:
    """An event that SIGINT or SIGTERM sets: a foreground emulator's way to end."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _emulate_printer(args: argparse.Namespace) -> int:
    from drivers.escpos.codec import ENCODINGS
    from drivers.escpos.emulator import DecodedTicket, EmulatedPrinter
    from drivers.escpos.profiles import PROFILES

    if args.profile not in PROFILES or args.encoding not in ENCODINGS:
        print(f"kioskd: --profile is one of {', '.join(PROFILES)}; "
              f"--encoding one of {', '.join(ENCODINGS)}", file=sys.stderr)
        return EXIT_CONFIG

    def show(ticket: DecodedTicket, png: Path | None) -> None:
        state = "cut" if ticket.cut else "no cut: the link closed mid-job"
        first = next((line.text for line in ticket.lines if line.text.strip()), "")
        print(f"job: {len(ticket.raw)} bytes, {len(ticket.lines)} lines, {state}: {first}"
              + (f" -> {png}" if png else ""), flush=True)

    listen = args.listen or (None if args.pty else "127.0.0.1:9100")
    printer = EmulatedPrinter(args.encoding, PROFILES[args.profile], args.jobs, listen=listen,
                              pty=args.pty, on_ticket=show)
    stop = _stopped_by_signals()
    try:
        printer.start()
    except (OSError, ValueError) as exc:
        print(f"kioskd: cannot listen on {listen}: {exc}", file=sys.stderr)
        printer.close()
        return 1
    detail = printer.detail()
    print(f"emulated {args.profile} printer ({args.encoding}) listening on "
          + ", ".join(filter(None, [detail.get("listen"), detail.get("pty")])), flush=True)
    stop.wait()
    printer.close()
    return 0


def _emulate_boards(args: argparse.Namespace) -> int:
    import drivers

    from .config import BOARD_DRIVERS

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    boards = {d.id: d for d in config.devices.values() if d.driver in BOARD_DRIVERS}
    unknown = [name for name in args.devices if name not in boards]
    if unknown or not boards:
        print(f"kioskd: {args.config} has no board " + (", ".join(unknown) if unknown else "")
              + f"; its boards: {', '.join(boards) or 'none'}", file=sys.stderr)
        return EXIT_CONFIG
    emulators = {}
    for device in (boards[name] for name in args.devices or boards):
        port = device.settings.line.port
        if not _can_emulate(device):
            return EXIT_CONFIG
        emulator = drivers.family(device.driver).emulate(
            device.id, replace(device.settings, emulate=True), data_dir=config.hall.data_dir)
        try:
            emulator.start()
        except OSError as exc:
            print(f"kioskd: {device.id}: cannot link a pty at {port}: {exc}", file=sys.stderr)
            for started in emulators.values():
                started.close()
            return 1
        emulators[device.id] = emulator
        detail = emulator.detail()
        print(f"{device.id}: {device.driver} at {port} -> {detail.get('pty')}", flush=True)
    stop = _stopped_by_signals()
    shown: dict[str, object] = {}
    while not stop.wait(0.2):                # a person watches this: 5 looks a second is plenty
        for device_id, emulator in emulators.items():
            shows = emulator.detail().get("shows")
            if shows != shown.get(device_id):
                shown[device_id] = shows
                print(f"{device_id} shows {json.dumps(shows, ensure_ascii=False)}", flush=True)
    for emulator in emulators.values():
        emulator.close()
    return 0


def _can_emulate(device: Device) -> bool:
    """Whether an emulator can sit at the device's port (a file path); if not, says why."""
    from drivers.serialbus import emulation_problem

    port = device.settings.line.port
    problem = emulation_problem(port)
    if problem:
        print(f"kioskd: {device.id}: port {port}: {problem} (in a copy of the file)",
              file=sys.stderr)
    return problem is None


KEYPAD_USAGE = "usage: ADDRESS ACTION or ADDRESS CODE, e.g. 3 call-next, 103 rate:5, 3 01"


def _emulate_keypads(args: argparse.Namespace) -> int:
    from drivers.keypad.emulator import EmulatedKeypads

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    keypads = {d.id: d for d in config.devices.values()
               if d.driver == "keypad" and d.settings.line is not None}
    name = args.keypads if args.keypads or len(keypads) != 1 else next(iter(keypads))
    device = keypads.get(name)
    if device is None:
        print(f"kioskd: name one of the keypad devices on a serial link in {args.config}: "
              f"{', '.join(keypads) or 'none'}", file=sys.stderr)
        return EXIT_CONFIG
    port = device.settings.line.port
    if not _can_emulate(device):
        return EXIT_CONFIG
    out = threading.Lock()

    def say(*words: object) -> None:
        with out:
            print(*words, flush=True)

    emulator = EmulatedKeypads(device.id, device.settings,
                               on_answer=lambda keypad, what: say(f"keypad {keypad.address} "
                                                                  f"{what}"))
    try:
        emulator.start()
    except OSError as exc:
        print(f"kioskd: {device.id}: cannot link a pty at {port}: {exc}", file=sys.stderr)
        emulator.close()
        return 1
    addresses = ", ".join(f"{keypad.address} ({keypad.kind} of window {keypad.window})"
                          for keypad in device.settings.keypads.values())
    say(f"{device.id}: keypads at {port} -> {emulator.port.path}: {addresses}")
    say(KEYPAD_USAGE)
    stop = _stopped_by_signals()

    def presses() -> None:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            try:
                address = int(words[0])
                what = words[1]
                if len(words) != 2:
                    raise ValueError
                key = what if _is_hex(what) else emulator.key_of(address, what)
                emulator.press(address, key)
            except (ValueError, IndexError):
                say(KEYPAD_USAGE)
                continue
            except KeyError as exc:
                say(exc.args[0])
                continue
            say(f"keypad {address} pressed {key}")
        stop.set()

    threading.Thread(target=presses, name="stdin", daemon=True).start()
    stop.wait()
    emulator.close()
    return 0


def _is_hex(text: str) -> bool:
    try:
        return bool(bytes.fromhex(text))
    except ValueError:
        return False


def _run(args: argparse.Namespace) -> int:
    from .api.deps import is_loopback, unguarded_roles
    from .app import create_app
    from .store import StoreInUse, StoreLock, store_file

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    unguarded = unguarded_roles(config)
    if not is_loopback(host) and unguarded:
        print(f"kioskd: refusing to listen on {host}: anyone on the network could act as "
              f"{', '.join(unguarded)}. Give every role and window a token in [auth], "
              "or bind to 127.0.0.1.", file=sys.stderr)
        return EXIT_CONFIG

    try:                          # a clear line now, not a traceback from start-up
        if config.store.url is None:
            lock = StoreLock(store_file(config.hall.data_dir))
            lock.acquire("kioskd run")
            lock.release()
    except (StoreInUse, OSError) as exc:
        print(f"kioskd: {exc}", file=sys.stderr)
        return 1
    if config.store.url is not None:     # a shared store: may this daemon join the hall?
        from .instances import NotAdmitted
        from .pgstore import admission
        if (refused := admission(config)) is not None:
            print(f"kioskd: refusing to start: {refused}", file=sys.stderr)
            return EXIT_CONFIG if isinstance(refused, NotAdmitted) else 1
    flush_logs = logs.setup(args.log_level)
    for warning in exposed_tokens(config):
        log.warning("config: %s", warning)
    app = create_app(config)
    server = _NotifyingServer(uvicorn.Config(
        app, host=host, port=port, log_level=args.log_level, lifespan="on",
        http=BoundedHttpToolsProtocol,   # a request's head is bounded, like its body
        log_config=None,          # uvicorn logs through ours: one format, and kioskd's own lines kept
        timeout_graceful_shutdown=10, access_log=False, server_header=False,
        proxy_headers=False),     # clients connect directly; no proxy's headers to trust
        app.state.devices)
    try:
        server.run()
    finally:
        flush_logs()
    return 0 if server.started else 1


GC_THRESHOLD = (10_000, 10, 10)


def _settle_memory() -> None:
    """Keep the garbage collector's pauses out of the answers' latency.

    Everything built at start-up (the app, its routes and models, the event
    history) lives as long as the process: freezing it keeps full collections
    from walking it again and again. The higher first threshold makes young
    collections rarer. Measured with benchmarks/run.py at 32 clients: p99 of
    issue and call-next went from 50 ms to 16 ms, and throughput rose 15%.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


class _NotifyingServer(uvicorn.Server):
    """uvicorn's server, telling systemd when it is ready, that its event loop is
    alive, how the hall's devices are, and when it stops."""

    def __init__(self, config: uvicorn.Config, devices: Supervisor):
        super().__init__(config)
        self.devices = devices
        self.systemd = Notifier()
        self._heartbeat: asyncio.Task | None = None

    async def startup(self, sockets=None) -> None:
        # the heartbeat begins with the loop: opening (or migrating) a large store
        # runs off the loop and may take longer than WatchdogSec
        self._heartbeat = asyncio.create_task(self.systemd.keep_alive(self._status),
                                              name="systemd-watchdog")
        await super().startup(sockets)
        if self.started:
            _settle_memory()
            self.systemd.notify("READY=1")
            self.systemd.status(self._status())
        else:
            self._heartbeat.cancel()

    async def shutdown(self, sockets=None) -> None:
        self.systemd.notify("STOPPING=1")
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        await super().shutdown(sockets)
        self.systemd.close()

    def _status(self) -> str:
        """What `systemctl status kioskd` shows: the devices not ready, by name."""
        if not self.started:
            return "starting: opening the store"
        states = list(self.devices.states())
        unwell = [f"{device_id} {state.value}" for device_id, _, state in states
                  if state not in (State.READY, State.DISABLED)]
        return (f"{len(states)} devices: " + (", ".join(unwell) if unwell else "all ready"))

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        # SIGTERM is how systemd asks us to stop: after a graceful shutdown that is
        # a clean exit (0), not death by the signal uvicorn would otherwise re-raise.
        if sig == signal.SIGTERM:
            self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]


if __name__ == "__main__":
    sys.exit(main())
