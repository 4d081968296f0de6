"""`kioskd install` and `kioskd uninstall`: this checkout on a hall's PC, run by systemd.

install puts the package in a venv at PREFIX (/opt/kioskd), the units, udev rules and
sysusers file under /etc, creates the users, and writes the hall's files in
/etc/kioskd only where they are missing: a hall's config and tokens are never
overwritten. Every file it owns is listed in PREFIX/installed.txt; uninstall removes
exactly those and the venv, and keeps the data (/var/lib/kioskd) and /etc/kioskd.
`--root DIR` does all of it inside DIR (a staging tree, make's DESTDIR) and leaves
this system alone. The `hardware` commands (kioskd/hardware.py) are registered here too.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path

from . import hardware
from .config import env_references

SOURCE = Path(__file__).resolve().parent.parent      # the checkout this module is in
PREFIX = Path("/opt/kioskd")
UNIT_DIR = Path("etc/systemd/system")
UNITS = ("kioskd.service", "kioskd-kiosk@.service")
SYSUSERS = Path("etc/sysusers.d/kioskd.conf")
LINK = Path("usr/local/bin/kioskd")
CONFIG_DIR = Path("etc/kioskd")
HALL_FILES = {              # /etc/kioskd file ← the template in systemd/, and its mode
    "devices.toml": ("devices.toml", 0o644),
    "kiosk.env": ("kiosk.env", 0o640),
}
TOKENS = "tokens.env"
DATA_DIR = Path("/var/lib/kioskd")
MANIFEST = "installed.txt"
PACKAGE_FILES = ("pyproject.toml", "README.md", "kioskd", "drivers")
TOKEN_BYTES = 24
PIP_TIMEOUT_S = 900         # a first install downloads every dependency
COMMAND_TIMEOUT_S = 60

Say = Callable[[str], None]


class InstallError(Exception):
    """Why install or uninstall cannot go on; nothing after the failed step was done."""


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register install, uninstall and hardware; each sets `handler` to what runs it."""
    install_parser = commands.add_parser(
        "install", help="install kioskd as a system service (run as root)",
        description="Install this checkout on the hall's PC: a venv at PREFIX, the systemd "
                    "units, udev rules, the kioskd user, and /etc/kioskd/devices.toml and "
                    "tokens.env where missing (never overwritten). Then prints the next steps.")
    _root_option(install_parser)
    install_parser.add_argument("--prefix", type=Path, default=PREFIX,
                                help=f"where the venv goes (default: {PREFIX})")
    install_parser.set_defaults(handler=lambda args: _reporting(install, args.root, args.prefix))

    uninstall_parser = commands.add_parser(
        "uninstall", help="remove what install put in place; keeps the data and /etc/kioskd",
        description="Stop and disable the services, remove exactly the files install put in "
                    "place (listed in PREFIX/installed.txt) and the venv. The data "
                    f"({DATA_DIR}), the hall's config and tokens (/etc/kioskd) and the "
                    "technician's udev rules stay.")
    _root_option(uninstall_parser)
    uninstall_parser.add_argument("--prefix", type=Path, default=PREFIX,
                                  help=f"where install put the venv (default: {PREFIX})")
    uninstall_parser.set_defaults(
        handler=lambda args: _reporting(uninstall, args.root, args.prefix))

    hardware_parser = commands.add_parser(
        "hardware", help="USB devices and kioskd's udev rules for them",
        description="List the USB devices plugged in and whether kioskd's udev rules cover "
                    "them, or add a rule for a printer, USB-serial adapter or keypad.")
    which = hardware_parser.add_subparsers(dest="hardware", required=True)
    listed = which.add_parser("list", help="USB devices plugged in, and their kioskd names")
    _root_option(listed)
    listed.set_defaults(handler=lambda args: _print_lines(hardware.listing(args.root)))
    added = which.add_parser(
        "add", help="give a VID:PID its group and /dev/kioskd/ name (run as root)",
        description=f"Append udev rules for one device to /etc/udev/rules.d/"
                    f"{hardware.LOCAL_RULES_FILE} (unless kioskd's rules cover it already) "
                    "and reload udev.")
    added.add_argument("kind", choices=list(hardware.GROUPS))
    added.add_argument("usb_id", metavar="VID:PID", help="as lsusb shows it, e.g. 04b8:0e28")
    added.add_argument("--name", default="", help="what it is, for the rule's comment")
    _root_option(added)
    added.set_defaults(handler=_hardware_add)


def _root_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=Path("/"),
                        help="work inside this tree instead of / (a staging root)")


def _print_lines(lines: list[str]) -> int:
    for line in lines:
        print(line)
    return 0


def _hardware_add(args: argparse.Namespace) -> int:
    try:
        _require_root(args.root, "kioskd hardware add")
        return _print_lines(hardware.add(args.root, args.kind, args.usb_id, args.name))
    except (hardware.HardwareError, InstallError) as exc:
        print(f"kioskd: {exc}", file=sys.stderr)
        return 2


def _reporting(step: Callable[..., None], root: Path, prefix: Path) -> int:
    try:
        step(root, prefix, lambda line: print(line, flush=True))
    except InstallError as exc:
        print(f"kioskd: {exc}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------- install

def install(root: Path, prefix: Path, say: Say) -> None:
    _require_root(root, "kioskd install")
    live = _is_live(root)
    source = _checkout()
    target = root / _relative(prefix)
    if target.exists() and any(target.iterdir()) and not (target / MANIFEST).exists():
        raise InstallError(f"{target} exists and is not a kioskd installation (it has no "
                           f"{MANIFEST}); choose another --prefix or empty it")
    installed: list[Path] = []          # as the installed system sees them
    say(f"installing kioskd from {source} into {target}")
    if not (target / "bin" / "python").exists():
        _run([sys.executable, "-I", "-m", "venv", str(target)], "creating the venv")
    _write_manifest(target, installed)  # from here on, the prefix is known to be ours
    _install_package(source, target, say)

    link = root / LINK
    if link.exists() and not link.is_symlink():
        say(f"left {link} alone: it is not kioskd's link; run {prefix}/bin/kioskd")
    else:
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(prefix / "bin" / "kioskd")
        installed.append(Path("/") / LINK)

    for name in UNITS:
        text = (source / "systemd" / name).read_text(encoding="utf-8")
        installed.append(_put(root, UNIT_DIR / name, text.replace(str(PREFIX), str(prefix))))
    rules = (source / "systemd" / hardware.RULES_FILE).read_text(encoding="utf-8")
    installed.append(_put(root, hardware.RULES_DIR / hardware.RULES_FILE, rules))
    sysusers = (source / "systemd" / "kioskd.sysusers").read_text(encoding="utf-8")
    installed.append(_put(root, SYSUSERS, sysusers))
    _write_manifest(target, installed)
    _create_users(root, say)

    _hall_files(root, source, say)
    if live:
        _reload(say)
        for line in hardware.reload_udev(root):
            say(line)
    _next_steps(root, prefix, say)


def _install_package(source: Path, target: Path, say: Say) -> None:
    """This checkout (not editable) into the venv at target, and the pages beside it.

    pip builds from a copy, so no build/ folder is left in the checkout (nor a stale
    one packaged)."""
    python = target / "bin" / "python"
    with tempfile.TemporaryDirectory(prefix="kioskd-build-") as build:
        for name in PACKAGE_FILES:
            if (source / name).is_dir():
                shutil.copytree(source / name, Path(build) / name,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source / name, Path(build) / name)
        say("installing the package and its dependencies with pip (a minute or two)")
        _run([str(python), "-I", "-m", "pip", "install", "--quiet",
              "--disable-pip-version-check", build], "pip install", timeout=PIP_TIMEOUT_S)
    # The pages (ui/) are not a Python package, so the wheel lacks them; kioskd serves
    # them from kioskd.ui.UI_DIR, beside the installed package. -I: the installed
    # kioskd's answer, never a checkout's found through the working directory.
    where = Path(_run([str(python), "-I", "-c", "from kioskd.ui import UI_DIR; print(UI_DIR)"],
                      "finding where the installed kioskd looks for its pages").strip())
    if not where.resolve().is_relative_to(target.resolve()):
        raise InstallError(f"the installed kioskd looks for its pages in {where}, outside "
                           f"{target}: not touching it")
    shutil.rmtree(where, ignore_errors=True)
    shutil.copytree(source / "ui", where, ignore=shutil.ignore_patterns("__pycache__"))


def _put(root: Path, relative: Path, text: str, mode: int = 0o644) -> Path:
    """Write a file install owns (replacing an older one); its path on the target."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return Path("/") / relative


def _create_users(root: Path, say: Say) -> None:
    tool = shutil.which("systemd-sysusers")
    if tool is None:
        raise InstallError("systemd-sysusers is missing: apt-get install systemd")
    (root / "etc").mkdir(parents=True, exist_ok=True)
    output = _run([tool, f"--root={root}", str(root / SYSUSERS)], "creating the users")
    for line in output.splitlines():
        say(line)


def _hall_files(root: Path, source: Path, say: Say) -> None:
    """/etc/kioskd: the templates and fresh tokens, each only where it is missing."""
    folder = root / CONFIG_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name, (template, mode) in HALL_FILES.items():
        path = folder / name
        if path.exists():
            say(f"kept {Path('/') / CONFIG_DIR / name}: it is the hall's own")
            continue
        _write_private(path, (source / "systemd" / template).read_text(encoding="utf-8"),
                       mode, group=None)
        say(f"wrote {Path('/') / CONFIG_DIR / name}")
    tokens = folder / TOKENS
    if tokens.exists():
        say(f"kept {Path('/') / CONFIG_DIR / TOKENS}: it is the hall's own")
        return
    names = token_names(folder / "devices.toml")
    lines = [f"{name}={secrets.token_urlsafe(TOKEN_BYTES)}" for name in names]
    _write_private(tokens, TOKENS_HEADER + "\n".join(lines) + "\n", 0o640,
                   group=_group_id(root, "kioskd"))
    say(f"wrote {Path('/') / CONFIG_DIR / TOKENS}: {len(names)} new random tokens")


TOKENS_HEADER = """\
# /etc/kioskd/tokens.env: the hall's bearer tokens, made by `kioskd install`.
# devices.toml names them in [auth] as "${KIOSKD_KIOSK_TOKEN}"; kioskd.service reads
# this file. Keep it secret (mode 0640, group kioskd). A page takes its token in
# its address: /ui/kiosk?terminal=kiosk_1#token=THE_KIOSK_TOKEN
# Another token (a new window): python3 -c 'import secrets; print(secrets.token_urlsafe(24))'
"""


def token_names(config: Path) -> list[str]:
    """The ${NAME}s the config's [auth] table uses: one token each."""
    try:
        auth = tomllib.loads(config.read_text(encoding="utf-8")).get("auth", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InstallError(f"{config}: cannot read its [auth] table to make tokens for "
                           f"it: {exc}") from exc
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            found.extend(env_references(value))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(auth)
    return list(dict.fromkeys(found))


def _write_private(path: Path, text: str, mode: int, group: int | None) -> None:
    """A new file created with its final mode, so it is never readable by others."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with open(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    os.chmod(path, mode)                       # whatever the umask took away
    if group is not None and os.geteuid() == 0:
        os.chown(path, 0, group)


def _group_id(root: Path, name: str) -> int | None:
    """The group's id in the root's /etc/group (not this system's, under --root)."""
    try:
        for line in (root / "etc/group").read_text(encoding="utf-8").splitlines():
            fields = line.split(":")
            if fields[0] == name and len(fields) > 2:
                return int(fields[2])
    except OSError:
        pass
    return None


def _next_steps(root: Path, prefix: Path, say: Say) -> None:
    where = "" if _is_live(root) else f" (in {root})"
    say(f"""
kioskd is installed{where}: {prefix}/bin/kioskd, linked as /usr/local/bin/kioskd.
Next:
  1. Describe the hall in /etc/kioskd/devices.toml, then check it:
       sudo kioskd check -c /etc/kioskd/devices.toml
  2. Start the daemon, now and at every boot:
       sudo systemctl enable --now kioskd
     and on a PC whose screen is a touch terminal (its id in devices.toml):
       sudo systemctl enable --now kioskd-kiosk@kiosk_1
The log: journalctl -u kioskd   The data: {DATA_DIR}   The tokens: /etc/kioskd/{TOKENS}""")


# -------------------------------------------------------------------------- uninstall

def uninstall(root: Path, prefix: Path, say: Say) -> None:
    _require_root(root, "kioskd uninstall")
    live = _is_live(root)
    target = root / _relative(prefix)
    manifest = target / MANIFEST
    if not manifest.exists():
        raise InstallError(f"no kioskd installation at {prefix}: {manifest} is missing")
    if live and _systemd_runs():
        _run(["systemctl", "stop", "kioskd.service", "kioskd-kiosk@*.service"],
             "stopping the services")
        say("stopped kioskd and its kiosk browsers")
    for wants in sorted((root / UNIT_DIR).glob("*.wants/*")):
        if wants.is_symlink() and (wants.name in UNITS or wants.name.startswith("kioskd-kiosk@")):
            wants.unlink()
            say(f"disabled {wants.name} ({wants.parent.name})")
    for line in manifest.read_text(encoding="utf-8").splitlines():
        path = root / _relative(Path(line))
        if path == root / LINK and not (path.is_symlink()
                                        and Path(os.readlink(path)).parent.parent == prefix):
            continue                    # someone replaced the link since: not ours now
        if path.is_symlink() or path.exists():
            path.unlink()
            say(f"removed {line}")
    shutil.rmtree(target)
    say(f"removed {prefix}")
    if live:
        _reload(say)
        for line in hardware.reload_udev(root):
            say(line)
    say(f"kept {DATA_DIR} (the hall's data), /etc/kioskd (its config and tokens), "
        f"/etc/udev/rules.d/{hardware.LOCAL_RULES_FILE} if any, and the users kioskd "
        "and kioskd-kiosk (they own the data)")


# ---------------------------------------------------------------------------- helpers

def _require_root(root: Path, command: str) -> None:
    if _is_live(root) and os.geteuid() != 0:
        raise InstallError(f"{command} changes this system and needs root: "
                           f"sudo {command} (or --root DIR for a staging tree)")


def _is_live(root: Path) -> bool:
    return root.resolve() == Path("/")


def _relative(path: Path) -> Path:
    if not path.is_absolute():
        raise InstallError(f"{path} must be an absolute path, e.g. {PREFIX}")
    return path.relative_to("/")


def _checkout() -> Path:
    if not ((SOURCE / "pyproject.toml").exists() and (SOURCE / "systemd").is_dir()):
        raise InstallError(f"kioskd install runs from a source checkout (sudo make install "
                           f"there); {SOURCE} is an installed copy")
    return SOURCE


def _write_manifest(target: Path, installed: list[Path]) -> None:
    (target / MANIFEST).write_text("".join(f"{path}\n" for path in installed), encoding="utf-8")


def _systemd_runs() -> bool:
    """sd_booted(3): whether systemd is this system's init (not so in most containers)."""
    return Path("/run/systemd/system").is_dir()


def _reload(say: Say) -> None:
    if not _systemd_runs():
        say("systemctl daemon-reload skipped: systemd is not running here (a container?)")
        return
    _run(["systemctl", "daemon-reload"], "systemctl daemon-reload")
    say("systemd reloaded its units")


def _run(command: list[str], what: str, timeout: float = COMMAND_TIMEOUT_S) -> str:
    """The command's output; InstallError with what it said when it fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise InstallError(f"{what}: no answer within {timeout:.0f} s") from exc
    except OSError as exc:
        raise InstallError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()[-10:]
        raise InstallError(f"{what} failed (exit {done.returncode}):\n  " + "\n  ".join(said))
    return done.stdout + done.stderr
