"""kioskd's udev rules, read by the real udevadm and by kioskd's own reader, and the
technician's commands: `kioskd hardware add` writes rules of the same shape (or
refuses a bad VID:PID, or a duplicate), `kioskd hardware list` says which plugged-in
device a rule covers.

udevadm 252 has no `verify`; `udevadm test` reads every rules file and logs each line
it cannot use, so it runs in a mount namespace where /etc/udev/rules.d is a folder
holding the rules under test (this system's rules stay as they are)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from kioskd.hardware import GROUPS, parse_rule, rule_kind, rules_for

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "systemd/70-kioskd.rules"
RULES_DIR = "etc/udev/rules.d"

# The ones every hall meets, which the shipped list must have (the brief's list).
PRINTERS = ["04b8:0202", "04b8:0e15", "04b8:0e28", "0416:5011", "0483:5720"]
SERIAL = ["0403:6001", "0403:6010", "0403:6014", "0403:6015", "067b:2303", "1a86:7523",
          "1a86:5523", "10c4:ea60"]


def udevadm_test(rules: dict[str, str]) -> str:
    """udevadm test's log with exactly `rules` (file name → text) in /etc/udev/rules.d."""
    for tool in ("unshare", "udevadm"):
        assert shutil.which(tool), f"{tool} is missing: scripts/bootstrap.sh test installs it"

    with tempfile.TemporaryDirectory() as folder:
        for name, text in rules.items():
            (Path(folder) / name).write_text(text, encoding="utf-8")
        done = subprocess.run(
            ["unshare", "-m", "sh", "-c", 'mount --bind "$1" /etc/udev/rules.d && '
             "exec udevadm test /sys/class/tty/tty0", "sh", folder],
            capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def problems(log: str, name: str) -> list[str]:
    """udevadm's complaints about one of the files: "/etc/udev/rules.d/NAME:LINE ..."."""
    assert f"Reading rules file: /etc/udev/rules.d/{name}" in log, f"udevadm did not read {name}"
    return [line for line in log.splitlines() if line.startswith(f"/etc/udev/rules.d/{name}:")]


def blocks(text: str) -> list[tuple[str, list[str]]]:
    """A rules file's devices: (comment, rule lines) for each comment followed by rules."""
    found: list[tuple[str, list[str]]] = []
    comment, rules = "", []
    for line in text.splitlines():
        if line.startswith("#"):
            if rules:
                found.append((comment, rules))
                comment, rules = "", []
            comment += line[1:].strip() + " "
        elif line.strip():
            rules.append(line)
    if rules:
        found.append((comment, rules))
    return found


def device_kinds(text: str) -> dict[str, set[str]]:
    """"vid:pid" → the kinds a file's rules give it, each rule read by kioskd's reader."""
    kinds: dict[str, set[str]] = {}
    for line in text.splitlines():
        found = rule_kind(parse_rule(line))
        if found:
            kinds.setdefault(f"{found[1]}:{found[2]}", set()).add(found[0])
    return kinds


def hardware(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kioskd.cli", "hardware", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def root(tmp_path) -> Path:
    """A root with kioskd's rules installed, as `kioskd install` leaves them."""
    (tmp_path / RULES_DIR).mkdir(parents=True)
    shutil.copy(SHIPPED, tmp_path / RULES_DIR / "70-kioskd.rules")
    return tmp_path


def test_udevadm_reads_the_shipped_rules_without_a_complaint():
    log = udevadm_test({"70-kioskd.rules": SHIPPED.read_text(encoding="utf-8")})
    assert problems(log, "70-kioskd.rules") == []


def test_udevadm_does_complain_about_a_broken_rule():
    """The probe: the check above can fail (a misspelt key, an unknown substitution)."""
    text = SHIPPED.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    broken = text + ('SUBSYSTEM=="tty", ATRS{idVendor}=="1a86", GROUP="dialout"\n'
                     'SUBSYSTEM=="tty", GROUP="dialout", SYMLINK+="kioskd/serial-%q"\n')
    said = problems(udevadm_test({"70-kioskd.rules": broken}), "70-kioskd.rules")
    assert [line.split()[0] for line in said] == [
        f"/etc/udev/rules.d/70-kioskd.rules:{lines + 1}",
        f"/etc/udev/rules.d/70-kioskd.rules:{lines + 2}"], said


def test_every_listed_device_has_the_rules_hardware_add_would_write():
    devices = blocks(SHIPPED.read_text(encoding="utf-8"))
    assert len(devices) > 25
    seen = set()
    for comment, rules in devices:
        kinds = {rule_kind(parse_rule(rule)) for rule in rules}
        assert len(kinds) == 1 and None not in kinds, (comment, rules)
        kind, vendor, product = kinds.pop()
        assert rules == rules_for(kind, vendor, product), comment
        assert (kind, vendor, product) not in seen, f"{vendor}:{product} twice"
        seen.add((kind, vendor, product))
        assert "(" in comment and ")" in comment, f"{vendor}:{product} names no source"


def test_printers_get_lp_and_a_port_name_serial_adapters_dialout_keypads_input():
    text = SHIPPED.read_text(encoding="utf-8")
    kinds = device_kinds(text)
    for usb_id in PRINTERS:
        assert kinds.get(usb_id) == {"printer"}, usb_id
    for usb_id in SERIAL:
        assert kinds.get(usb_id) == {"serial"}, usb_id
    assert any(kind == {"keypad"} for kind in kinds.values())
    for line in filter(None, (line for line in text.splitlines() if not line.startswith("#"))):
        terms = {(key, attr): value for key, attr, _, value in parse_rule(line)}
        kind = rule_kind(parse_rule(line))[0]
        assert terms[("GROUP", None)] == GROUPS[kind] and terms[("MODE", None)] == "0660"
        if terms[("SUBSYSTEM", None)] == "usbmisc":         # the usblp node, /dev/usb/lp*
            assert terms[("SYMLINK", None)] == "kioskd/printer-$id"
        if kind == "serial":
            assert terms[("SYMLINK", None)] == "kioskd/serial-$id-$env{ID_USB_INTERFACE_NUM}"


def test_hardware_add_appends_the_same_shape_and_udevadm_reads_it(root):
    done = hardware("add", "printer", "1FC9:2016", "--name", "某厂 80mm 打印机", "--root", str(root))
    assert done.returncode == 0, done.stderr
    local = root / RULES_DIR / "71-kioskd-local.rules"
    assert f"added 1fc9:2016 as a printer to {local}" in done.stdout
    assert f"udev not reloaded: the rules are under {root}" in done.stdout
    text = local.read_text(encoding="utf-8")
    ((comment, rules),) = blocks(text)[-1:]
    assert "某厂 80mm 打印机" in comment
    assert rules == rules_for("printer", "1fc9", "2016")
    assert device_kinds(text) == {"1fc9:2016": {"printer"}}

    assert hardware("add", "keypad", "1fc9:2017", "--root", str(root)).returncode == 0
    log = udevadm_test({"70-kioskd.rules": SHIPPED.read_text(encoding="utf-8"),
                        "71-kioskd-local.rules": local.read_text(encoding="utf-8")})
    assert problems(log, "70-kioskd.rules") == problems(log, "71-kioskd-local.rules") == []


def test_hardware_add_adds_no_duplicate(root):
    local = root / RULES_DIR / "71-kioskd-local.rules"
    shipped = hardware("add", "printer", "04b8:0e28", "--root", str(root))
    assert shipped.returncode == 0
    assert "04b8:0e28 is already covered as a printer" in shipped.stdout
    assert not local.exists()

    assert hardware("add", "serial", "1fc9:0003", "--root", str(root)).returncode == 0
    before = local.read_text(encoding="utf-8")
    again = hardware("add", "serial", "1FC9:0003", "--name", "again", "--root", str(root))
    assert again.returncode == 0 and "already covered as a serial" in again.stdout
    assert local.read_text(encoding="utf-8") == before
    # the same VID:PID as another kind is another rule (a printer that is also a serial port)
    assert hardware("add", "printer", "1fc9:0003", "--root", str(root)).returncode == 0
    assert device_kinds(local.read_text(encoding="utf-8")) == {"1fc9:0003": {"serial", "printer"}}


@pytest.mark.parametrize("usb_id", ["04b8-0e28", "4b8:e28", "04b8:0e2g", "04b80e28", "04b8:0e28:1"])
def test_hardware_add_refuses_a_bad_vid_pid_and_writes_nothing(root, usb_id):
    done = hardware("add", "printer", usb_id, "--root", str(root))
    assert done.returncode == 2
    assert f"{usb_id!r} is not a USB VID:PID" in done.stderr and "4 hex digits" in done.stderr
    assert not (root / RULES_DIR / "71-kioskd-local.rules").exists()


def test_hardware_add_knows_only_printers_serial_adapters_and_keypads(root):
    done = hardware("add", "scanner", "04b8:0e28", "--root", str(root))
    assert done.returncode == 2 and "invalid choice: 'scanner'" in done.stderr


def test_hardware_list_shows_each_device_its_port_and_its_kioskd_name(root):
    """This machine has no USB bus: the devices are written the way the kernel lays them
    out in /sys/bus/usb/devices, under the root (a stand-in for sysfs, said so)."""
    devices = root / "sys/bus/usb/devices"

    def plug(port: str, vendor: str, product: str, name: str = "", device_class: str = "00"):
        folder = devices / port
        folder.mkdir(parents=True)
        for attribute, value in (("idVendor", vendor), ("idProduct", product),
                                 ("bDeviceClass", device_class), ("product", name)):
            if value:
                (folder / attribute).write_text(value + "\n")

    def interface(port: str, number: str):
        (devices / f"{port}:1.{int(number)}").mkdir()   # an interface, not a device
        (devices / f"{port}:1.{int(number)}" / "bInterfaceNumber").write_text(number + "\n")

    plug("1-1", "05e3", "0610", "USB2.0 Hub", device_class="09")
    plug("1-1.4", "04b8", "0e28", "TM-T20III")
    interface("1-1.4", "00")
    plug("1-1.2", "1a86", "7523", "USB Serial")
    interface("1-1.2", "00")
    plug("1-1.3", "abcd", "1234")
    interface("1-1.3", "00")
    interface("1-1.3", "01")

    done = hardware("list", "--root", str(root))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3                       # the hub and the interface left out
    assert lines[0].split() == ["1-1.2", "1a86:7523", "USB", "Serial:", "serial", "→",
                                "/dev/kioskd/serial-1-1.2-00"]
    assert lines[1].split()[:2] == ["1-1.3", "abcd:1234"]
    assert "no kioskd rule (kioskd hardware add printer|serial|keypad abcd:1234)" in lines[1]
    assert lines[2].split() == ["1-1.4", "04b8:0e28", "TM-T20III:", "printer", "→",
                                "/dev/kioskd/printer-1-1.4"]

    assert hardware("add", "keypad", "abcd:1234", "--root", str(root)).returncode == 0
    covered = hardware("list", "--root", str(root)).stdout.splitlines()[1]
    assert covered.endswith("keypad → /dev/kioskd/keypad-1-1.3-{00,01}")
