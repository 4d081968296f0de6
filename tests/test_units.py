"""The units' contents against what they run: every Chromium flag of the kiosk unit is
one the installed Chromium knows (its switch names are strings in its binary), the
page it opens is the kiosk page's own address format, and the users and groups the
units name are the ones the sysusers file creates. (systemd-analyze verify runs on
the units as installed: tests/test_install.py.)"""

from __future__ import annotations

import mmap
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SYSTEMD = REPO / "systemd"
CHROMIUM_BINARY = Path("/usr/lib/chromium/chromium")     # /usr/bin/chromium is Debian's wrapper


def unit_settings(name: str) -> list[tuple[str, str]]:
    """(key, value) of every setting of a unit file, continuation lines joined."""
    text = (SYSTEMD / name).read_text(encoding="utf-8").replace("\\\n", " ")
    return [tuple(part.strip() for part in line.split("=", 1)) for line in text.splitlines()
            if "=" in line and not line.lstrip().startswith(("#", ";"))]


def setting(name: str, key: str) -> list[str]:
    return [value for k, value in unit_settings(name) if k == key]


def chromium_arguments() -> list[str]:
    (exec_start,) = setting("kioskd-kiosk@.service", "ExecStart")
    words = shlex.split(exec_start)
    return words[words.index("/usr/bin/chromium") + 1:]


@pytest.fixture(scope="module")
def chromium_strings():
    """find(word): whether the Chromium binary holds `word` as a whole C string."""
    if not CHROMIUM_BINARY.exists():
        pytest.fail(f"{CHROMIUM_BINARY} is missing: scripts/bootstrap.sh test installs chromium")
    with CHROMIUM_BINARY.open("rb") as file, \
            mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as binary:
        yield lambda word: binary.find(b"\0" + word.encode() + b"\0") >= 0


def test_every_chromium_flag_of_the_kiosk_unit_is_one_this_chromium_knows(chromium_strings):
    flags = [word for word in chromium_arguments() if word.startswith("--")]
    names = [flag[2:].split("=", 1)[0] for flag in flags]
    unknown = [name for name in names if not chromium_strings(name)]
    assert unknown == []
    # the values that are names of their own: a feature, a policy
    values = dict(flag[2:].split("=", 1) for flag in flags if "=" in flag)
    for key in ("disable-features", "autoplay-policy"):
        assert chromium_strings(values[key]), f"--{key}={values[key]}"
    # "wayland" is no string of its own (the linker shares it with a longer one), but
    # Chromium's own warning names the flag
    assert values["ozone-platform"] == "wayland"
    assert chromium_strings("'--ozone-platform=wayland' is not compatible with Vulkan. "
                            "Consider switching to '--ozone-platform=x11' or disabling Vulkan")
    # what a locked-down kiosk needs is there
    for needed in ("kiosk", "no-first-run", "no-default-browser-check",
                   "disable-background-networking", "disable-component-update",
                   "disable-sync", "disable-pinch", "overscroll-history-navigation",
                   "noerrdialogs", "hide-crash-restore-bubble", "password-store",
                   "autoplay-policy", "user-data-dir"):
        assert needed in names, needed
    assert values["overscroll-history-navigation"] == "0"
    assert values["autoplay-policy"] == "no-user-gesture-required"


def test_the_flag_check_can_fail(chromium_strings):
    """Flags that do not exist (or no longer do) are not found: an invented one, and
    the two that Chromium removed and the kiosk unit must not use."""
    for gone in ("disable-context-menu", "disable-translate", "disable-session-crashed-bubble"):
        assert not chromium_strings(gone), gone


def test_the_browser_opens_the_kiosk_page_of_its_terminal_with_its_token():
    page = chromium_arguments()[-1]
    assert page == "${KIOSKD_URL}/ui/kiosk?terminal=%i#token=${KIOSKD_KIOSK_TOKEN}"
    # the format kiosk.js documents for itself
    header = (REPO / "ui/static/kiosk.js").read_text(encoding="utf-8")
    documented = re.search(r"Opened as (\S+)", header).group(1)
    assert documented == "/ui/kiosk?terminal=kiosk_1#token=KIOSKTOKEN"
    assert page.split("/ui/", 1)[1].replace("%i", "kiosk_1").replace(
        "${KIOSKD_KIOSK_TOKEN}", "KIOSKTOKEN") == documented.removeprefix("/ui/")
    assert "Environment=KIOSKD_URL=http://127.0.0.1:8080" in [
        f"{key}={value}" for key, value in unit_settings("kioskd-kiosk@.service")]
    assert setting("kioskd-kiosk@.service", "Restart") == ["always"]
    assert setting("kioskd-kiosk@.service", "ExecStart")[0].startswith("/usr/bin/cage ")


def test_the_units_run_as_the_users_the_sysusers_file_creates_with_their_groups():
    lines = [line.split() for line in (SYSTEMD / "kioskd.sysusers").read_text().splitlines()
             if line and not line.startswith("#")]
    users = {words[1] for words in lines if words[0] == "u"}
    groups = {}
    for words in lines:
        if words[0] == "m":
            groups.setdefault(words[1], set()).add(words[2])
    assert setting("kioskd.service", "User") == ["kioskd"]
    assert setting("kioskd-kiosk@.service", "User") == ["kioskd-kiosk"]
    assert users == {"kioskd", "kioskd-kiosk"}
    assert set(setting("kioskd.service", "SupplementaryGroups")[0].split()) == groups["kioskd"]
    assert groups["kioskd"] == {"dialout", "lp", "audio", "input"}


def test_the_daemon_unit_is_notify_watchdogged_and_hardened():
    settings = dict(unit_settings("kioskd.service"))
    assert settings["Type"] == "notify" and settings["NotifyAccess"] == "main"
    assert settings["WatchdogSec"] == "30s" and settings["Restart"] == "on-failure"
    assert settings["StateDirectory"] == "kioskd"
    assert settings["EnvironmentFile"] == "-/etc/kioskd/tokens.env"
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                       "NoNewPrivileges": "yes", "DevicePolicy": "closed"}.items():
        assert settings[key] == value, key
    assert "MemoryDenyWriteExecute" not in settings      # pyttsx3's libffi closures need W+X
    assert "AF_NETLINK" in settings["RestrictAddressFamilies"]
    allowed = {value.split()[0] for value in setting("kioskd.service", "DeviceAllow")}
    assert allowed == {"char-ttyS", "char-ttyUSB", "char-ttyACM", "char-usb", "char-usb_device",
                       "char-input", "char-alsa"}
    assert settings["ExecStart"] == "/opt/kioskd/bin/kioskd run -c /etc/kioskd/devices.toml"
    assert settings["ExecStartPre"] == "/opt/kioskd/bin/kioskd check -c /etc/kioskd/devices.toml"
