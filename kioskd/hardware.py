"""udev rules for the hall's USB devices: their group, and a name under /dev/kioskd/.

The shipped rules (systemd/70-kioskd.rules, installed in /etc/udev/rules.d/) list
the common ticket printers, USB-serial adapters and keypads by VID:PID; a
technician adds another with `kioskd hardware add`, which appends the same rules
to 71-kioskd-local.rules. `kioskd hardware list` shows what is plugged in and
whether a kioskd rule covers it.

A device's name follows the USB port it is plugged into ("1-1.4": bus 1, port 4
of the hub on port 1, as /sys/bus/usb/devices names it), so two identical
adapters keep apart and a name survives a reboot: /dev/kioskd/printer-1-1.4,
/dev/kioskd/serial-1-1.2-00 (00: the adapter's interface; a dual one has 00 and
01), /dev/kioskd/keypad-1-1.3-00.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import date
from pathlib import Path

RULES_DIR = Path("etc/udev/rules.d")          # under the root
RULES_FILE = "70-kioskd.rules"
LOCAL_RULES_FILE = "71-kioskd-local.rules"
USB_DEVICES = Path("sys/bus/usb/devices")

# kind → the group that opens it (the kioskd user is a member of each)
GROUPS = {"printer": "lp", "serial": "dialout", "keypad": "input"}
UDEVADM_TIMEOUT_S = 30

LOCAL_HEADER = """\
# Ticket printers, USB-serial adapters and keypads added on this PC with
# `kioskd hardware add KIND VID:PID --name NAME`; kioskd's own list is in
# 70-kioskd.rules. `kioskd uninstall` leaves this file alone.
"""


class HardwareError(Exception):
    """A technician's input that cannot become a rule; the message says why."""


def parse_usb_id(text: str) -> tuple[str, str]:
    """'04B8:0e28' → ('04b8', '0e28'): lower case, as sysfs and udev compare them."""
    match = re.fullmatch(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{4})", text.strip())
    if not match:
        raise HardwareError(f"{text!r} is not a USB VID:PID: write the vendor and product id "
                            "as 4 hex digits each, as lsusb shows them, e.g. 04b8:0e28")
    return match.group(1).lower(), match.group(2).lower()


def rules_for(kind: str, vendor: str, product: str) -> list[str]:
    """The udev rules that give one VID:PID its group and its /dev/kioskd/ name.

    `$id` is the USB device's sysfs name (its port), taken from the parent whose
    ATTRS matched; ID_USB_INTERFACE_NUM comes from usb_id (60-serial.rules,
    60-persistent-input.rules), run before these rules.
    """
    ids = f'ATTRS{{idVendor}}=="{vendor}", ATTRS{{idProduct}}=="{product}"'
    if kind == "printer":
        return [
            # the kernel's usblp node, /dev/usb/lp0: connection = "file:///dev/kioskd/printer-…"
            f'SUBSYSTEM=="usbmisc", KERNEL=="lp[0-9]*", {ids}, GROUP="lp", MODE="0660", '
            'SYMLINK+="kioskd/printer-$id"',
            # the raw device node pyusb opens: connection = "usb://VID:PID"
            f'SUBSYSTEM=="usb", ENV{{DEVTYPE}}=="usb_device", ATTR{{idVendor}}=="{vendor}", '
            f'ATTR{{idProduct}}=="{product}", GROUP="lp", MODE="0660"',
        ]
    if kind == "serial":
        return [f'SUBSYSTEM=="tty", {ids}, GROUP="dialout", MODE="0660", '
                'SYMLINK+="kioskd/serial-$id-$env{ID_USB_INTERFACE_NUM}"']
    if kind == "keypad":
        # the keyboard node of the keypad (not its consumer-control or mouse nodes)
        return [f'SUBSYSTEM=="input", KERNEL=="event[0-9]*", ENV{{ID_INPUT_KEYBOARD}}=="1", '
                f'{ids}, GROUP="input", MODE="0660", '
                'SYMLINK+="kioskd/keypad-$id-$env{ID_USB_INTERFACE_NUM}"']
    raise HardwareError(f"unknown kind {kind!r}: one of {', '.join(GROUPS)}")


RULE_KEY = re.compile(r'\s*([A-Z_]+)(?:\{([^}]*)\})?\s*(==|!=|\+=|-=|:=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def parse_rule(line: str) -> list[tuple[str, str, str, str]]:
    """One rule line → its (key, attribute, operator, value) terms; [] for a comment or
    a blank line. A line udev would not read the same way raises HardwareError."""
    text = line.strip()
    if not text or text.startswith("#"):
        return []
    terms, at = [], 0
    while at < len(line):
        match = RULE_KEY.match(line, at)
        if not match:
            raise HardwareError(f"cannot read rule at {line[at:at + 30]!r}")
        terms.append(match.groups()[:4])
        at = match.end()
        if not line[at:].strip():
            break
    return terms


def rule_kind(terms: list[tuple[str, str, str, str]]) -> tuple[str, str, str] | None:
    """(kind, vendor, product) of a kioskd rule, from its GROUP and its ids; None for
    a rule that is not one (no VID:PID match or another group)."""
    values = {(key, attr, op): value for key, attr, op, value in terms}
    vendor = values.get(("ATTRS", "idVendor", "==")) or values.get(("ATTR", "idVendor", "=="))
    product = values.get(("ATTRS", "idProduct", "==")) or values.get(("ATTR", "idProduct", "=="))
    group = values.get(("GROUP", None, "="))
    kind = next((k for k, g in GROUPS.items() if g == group), None)
    if vendor is None or product is None or kind is None:
        return None
    return kind, vendor, product


def covered(root: Path) -> dict[tuple[str, str], set[str]]:
    """(vendor, product) → the kinds kioskd's installed rules (shipped and local) give it."""
    kinds: dict[tuple[str, str], set[str]] = {}
    for name in (RULES_FILE, LOCAL_RULES_FILE):
        path = root / RULES_DIR / name
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            found = rule_kind(parse_rule(line))
            if found:
                kinds.setdefault(found[1:], set()).add(found[0])
    return kinds


def add(root: Path, kind: str, usb_id: str, name: str = "") -> list[str]:
    """Append one VID:PID's rules to the local rules file; the lines to tell the
    technician. A VID:PID already covered as this kind is not added again."""
    if kind not in GROUPS:
        raise HardwareError(f"unknown kind {kind!r}: one of {', '.join(GROUPS)}")
    vendor, product = parse_usb_id(usb_id)
    name = " ".join(name.split())        # one line in the comment, whatever was typed
    if kind in covered(root).get((vendor, product), set()):
        return [f"{vendor}:{product} is already covered as a {kind} by kioskd's udev rules; "
                "nothing added"]
    path = root / RULES_DIR / LOCAL_RULES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.exists() else LOCAL_HEADER
    if not text.endswith("\n"):
        text += "\n"
    text += (f"\n# {name or 'a ' + kind}: {vendor}:{product}, {kind} "
             f"(kioskd hardware add, {date.today().isoformat()})\n")
    text += "\n".join(rules_for(kind, vendor, product)) + "\n"
    path.write_text(text, encoding="utf-8")
    return [f"added {vendor}:{product} as a {kind} to {path}", *reload_udev(root)]


def reload_udev(root: Path) -> list[str]:
    """Make udev read the rules again and apply them to what is plugged in."""
    if root.resolve() != Path("/"):
        return [f"udev not reloaded: the rules are under {root}, not this system's /"]
    udevadm = shutil.which("udevadm")
    if udevadm is None:
        return ["udev not reloaded: udevadm is missing; replug the device or restart the PC"]
    for command in ([udevadm, "control", "--reload"],
                    [udevadm, "trigger", "--action=add", "--subsystem-match=usb",
                     "--subsystem-match=usbmisc", "--subsystem-match=tty",
                     "--subsystem-match=input"]):
        try:
            done = subprocess.run(command, capture_output=True, text=True,
                                  timeout=UDEVADM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return [f"udev not reloaded: {' '.join(command[1:])} took over "
                    f"{UDEVADM_TIMEOUT_S} s; replug the device"]
        if done.returncode != 0:
            return [f"udev not reloaded ({' '.join(command[1:])}: "
                    f"{done.stderr.strip() or done.returncode}); replug the device or "
                    "restart the PC"]
    return ["udev reloaded; replug the device if its name under /dev/kioskd/ does not appear"]


@dataclass(frozen=True)
class UsbDevice:
    port: str          # sysfs name: "1-1.4"
    vendor: str
    product: str
    name: str          # manufacturer and product strings, where the device gives them
    interfaces: tuple[str, ...]     # bInterfaceNumber of each: ("00", "01")

    def names(self, kind: str) -> str:
        """The /dev/kioskd/ name(s) kioskd's rules give it as a `kind`."""
        if kind == "printer":
            return f"/dev/kioskd/printer-{self.port}"
        numbers = self.interfaces or ("00",)
        ending = numbers[0] if len(numbers) == 1 else "{" + ",".join(numbers) + "}"
        return f"/dev/kioskd/{kind}-{self.port}-{ending}"


def attached(root: Path) -> list[UsbDevice]:
    """The USB devices plugged in (hubs left out), from sysfs."""
    devices = []
    base = root / USB_DEVICES
    for entry in sorted(base.iterdir()) if base.is_dir() else []:
        if not (entry / "idVendor").exists() or _read(entry / "bDeviceClass") == "09":
            continue          # an interface ("1-1.4:1.0"), or a hub
        name = " ".join(filter(None, (_read(entry / "manufacturer"), _read(entry / "product"))))
        interfaces = sorted(filter(None, (_read(interface / "bInterfaceNumber")
                                          for interface in base.glob(f"{entry.name}:*"))))
        devices.append(UsbDevice(entry.name, _read(entry / "idVendor"),
                                 _read(entry / "idProduct"), name, tuple(interfaces)))
    return devices


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def listing(root: Path) -> list[str]:
    """One line per attached USB device: port, VID:PID, name, and what kioskd makes of it."""
    devices = attached(root)
    if not devices:
        return [f"no USB devices found in {root / USB_DEVICES}"]
    kinds = covered(root)
    lines = []
    for device in devices:
        usb_id = f"{device.vendor}:{device.product}"
        known = sorted(kinds.get((device.vendor, device.product), ()))
        what = (", ".join(f"{kind} → {device.names(kind)}" for kind in known)
                if known else
                f"no kioskd rule (kioskd hardware add printer|serial|keypad {usb_id})")
        lines.append(f"{device.port:<10} {usb_id}  {device.name or '?'}: {what}")
    return lines
