"""`kioskd install` into a temporary root and `kioskd uninstall` from it, with the real
tools: pip into a new venv, systemd-sysusers --root, systemd-analyze verify on the
units as installed (in a mount namespace where /opt/kioskd is the installed venv),
the installed kioskd checking the installed config. Nothing lands on this system:
its /etc/passwd, /etc/systemd and /opt stay as they were."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kioskd.api.deps import unguarded_roles
from kioskd.config import load_config, read_env_file
from kioskd.install import PREFIX, token_names

REPO = Path(__file__).resolve().parents[1]
INSTALLED_FILES = ["/usr/local/bin/kioskd", "/etc/systemd/system/kioskd.service",
                   "/etc/systemd/system/kioskd-kiosk@.service",
                   "/etc/udev/rules.d/70-kioskd.rules", "/etc/sysusers.d/kioskd.conf"]
VENV = "opt/kioskd"


def kioskd(*args: str, user: int | None = None) -> subprocess.CompletedProcess:
    """The checkout's `kioskd` command, as `make install` runs it (as `user` if given)."""
    command = [sys.executable, "-m", "kioskd.cli", *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)


def tokens_of(root: Path) -> dict[str, str]:
    return read_env_file(root / "etc/kioskd/tokens.env")


def group_members(root: Path) -> dict[str, set[str]]:
    groups = {}
    for line in (root / "etc/group").read_text(encoding="utf-8").splitlines():
        name, _, gid, members = line.split(":")
        groups[name] = set(filter(None, members.split(",")))
    return groups


def verify(unit_dir: Path, venv: Path, *units: str) -> subprocess.CompletedProcess:
    """`systemd-analyze verify` on units in unit_dir, in a mount namespace where
    /opt/kioskd is `venv` (verify checks that every ExecStart= program exists). The
    host's /opt is covered by a tmpfs there, and only there."""
    for tool in ("unshare", "systemd-analyze"):
        assert shutil.which(tool), f"{tool} is missing: scripts/bootstrap.sh test installs it"
    script = ('dir=$1; venv=$2; shift 2; mount -t tmpfs tmpfs /opt && mkdir /opt/kioskd && '
              'mount --bind "$venv" /opt/kioskd && cd "$dir" && exec systemd-analyze verify "$@"')
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(unit_dir), str(venv),
                           *[f"./{unit}" for unit in units]],
                          capture_output=True, text=True, timeout=120)


def complaints(done: subprocess.CompletedProcess) -> list[str]:
    """What verify said about kioskd's units (it says nothing about good ones)."""
    return [line for line in (done.stdout + done.stderr).splitlines() if "kioskd" in line]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """One install into a temporary root for the module (pip's part is the slow one)."""
    root = tmp_path_factory.mktemp("hall-pc")
    (root / "install-started").touch()
    done = kioskd("install", "--root", str(root))
    assert done.returncode == 0, done.stdout + done.stderr
    (root / "install-output.txt").write_text(done.stdout, encoding="utf-8")
    return root


def test_install_puts_every_file_in_place_and_says_what_comes_next(installed):
    root = installed
    manifest = (root / VENV / "installed.txt").read_text(encoding="utf-8").split()
    assert sorted(manifest) == sorted(INSTALLED_FILES)
    for path in manifest:
        assert (root / path.lstrip("/")).is_symlink() or (root / path.lstrip("/")).is_file(), path
    assert os.readlink(root / "usr/local/bin/kioskd") == "/opt/kioskd/bin/kioskd"
    for name in ("kioskd.service", "kioskd-kiosk@.service", "kioskd.sysusers", "70-kioskd.rules"):
        shipped = (REPO / "systemd" / name).read_text(encoding="utf-8")
        target = {"kioskd.sysusers": "etc/sysusers.d/kioskd.conf",
                  "70-kioskd.rules": "etc/udev/rules.d/70-kioskd.rules"}.get(
                      name, f"etc/systemd/system/{name}")
        assert (root / target).read_text(encoding="utf-8") == shipped, name
    assert ((root / "etc/kioskd/devices.toml").read_text(encoding="utf-8")
            == (REPO / "systemd/devices.toml").read_text(encoding="utf-8"))

    said = (root / "install-output.txt").read_text(encoding="utf-8")
    assert "sudo kioskd check -c /etc/kioskd/devices.toml" in said
    assert "systemctl enable --now kioskd\n" in said
    assert "systemctl enable --now kioskd-kiosk@kiosk_1" in said
    # the checkout is left as it was: its pages are still there, pip built elsewhere
    assert (REPO / "ui/kiosk.html").is_file()
    started = (root / "install-started").stat().st_mtime
    assert not (REPO / "build").exists() or (REPO / "build").stat().st_mtime < started


def test_the_tokens_are_fresh_random_and_readable_by_root_and_kioskd_only(installed):
    path = installed / "etc/kioskd/tokens.env"
    info = path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o640
    kioskd_gid = int(next(line.split(":")[2] for line in
                          (installed / "etc/group").read_text().splitlines()
                          if line.startswith("kioskd:")))
    assert (info.st_uid, info.st_gid) == (0, kioskd_gid)
    tokens = tokens_of(installed)
    assert sorted(tokens) == sorted(token_names(REPO / "systemd/devices.toml"))
    assert "KIOSKD_WINDOW_3_TOKEN" in tokens and "KIOSKD_KIOSK_TOKEN" in tokens
    assert len(set(tokens.values())) == len(tokens)
    assert all(len(token) >= 32 for token in tokens.values())
    assert stat.S_IMODE((installed / "etc/kioskd/kiosk.env").stat().st_mode) == 0o640


def test_the_users_exist_in_the_root_only_with_their_groups(installed):
    passwd = {line.split(":")[0]: line.split(":")
              for line in (installed / "etc/passwd").read_text().splitlines()}
    assert passwd["kioskd"][5] == "/var/lib/kioskd"
    assert "kioskd-kiosk" in passwd
    groups = group_members(installed)
    for group in ("dialout", "lp", "audio", "input"):
        assert "kioskd" in groups[group], group
    for group in ("video", "render", "audio"):
        assert "kioskd-kiosk" in groups[group], group
    assert "kioskd:" not in Path("/etc/passwd").read_text()    # this system untouched


def test_the_installed_kioskd_runs_and_its_config_passes_check_with_the_tokens(installed):
    program = installed / VENV / "bin/kioskd"
    helped = subprocess.run([program, "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "install" in helped.stdout
    pages = subprocess.run([installed / VENV / "bin/python", "-I", "-c",
                            "from kioskd.ui import UI_DIR; print(UI_DIR / 'kiosk.html')"],
                           capture_output=True, text=True, timeout=60)
    assert Path(pages.stdout.strip()).is_file()       # the installed daemon has its pages
    assert Path(pages.stdout.strip()).is_relative_to(installed)

    config = installed / "etc/kioskd/devices.toml"

    def check(**env: str) -> subprocess.CompletedProcess:
        return subprocess.run([program, "check", "-c", config],
                              env={"PATH": os.environ["PATH"], **env},
                              capture_output=True, text=True, timeout=60)
    # the tokens come from tokens.env beside the file, as the service gets them
    assert check().returncode == 0, check().stderr
    # the environment wins over the file
    empty = check(KIOSKD_KIOSK_TOKEN="")
    assert empty.returncode == 2 and "[auth] kiosk" in empty.stderr, empty.stderr
    tokens = installed / "etc/kioskd/tokens.env"
    tokens.rename(tokens.with_name("moved.env"))
    try:
        unset = check()
        assert unset.returncode == 2 and "${KIOSKD_KIOSK_TOKEN} is not set" in unset.stderr
        assert check(**read_env_file(tokens.with_name("moved.env"))).returncode == 0
    finally:
        tokens.with_name("moved.env").rename(tokens)

    hall = load_config(config, env=tokens_of(installed))
    assert hall.server.host == "0.0.0.0" and unguarded_roles(hall) == []
    assert str(hall.hall.data_dir) == "/var/lib/kioskd"


def test_systemd_analyze_verify_passes_on_the_installed_units(installed):
    done = verify(installed / "etc/systemd/system", installed / VENV,
                  "kioskd.service", "kioskd-kiosk@kiosk_1.service")
    assert complaints(done) == [] and done.returncode == 0, done.stdout + done.stderr


def test_verify_does_complain_about_a_broken_unit(installed, tmp_path):
    """The probe: the check above can fail. A misspelt key, a program that is not there."""
    for name in ("kioskd.service", "kioskd-kiosk@.service"):
        text = (installed / "etc/systemd/system" / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text.replace("RestartSec=", "RestartSecs="), encoding="utf-8")
    broken = verify(tmp_path, installed / VENV, "kioskd.service", "kioskd-kiosk@kiosk_1.service")
    said = complaints(broken)
    assert any("kioskd.service" in line and "RestartSecs" in line for line in said), said
    assert any("kioskd-kiosk@.service" in line and "RestartSecs" in line for line in said), said

    text = (installed / "etc/systemd/system/kioskd.service").read_text(encoding="utf-8")
    (tmp_path / "kioskd.service").write_text(text.replace("bin/kioskd run", "bin/kioskdx run"))
    missing = verify(tmp_path, installed / VENV, "kioskd.service")
    assert missing.returncode != 0
    assert any("/opt/kioskd/bin/kioskdx" in line for line in complaints(missing))


def test_a_second_install_keeps_the_hall_and_uninstall_keeps_the_data(installed, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)        # an installed PC of its own
    config = root / "etc/kioskd/devices.toml"
    edited = config.read_text(encoding="utf-8").replace("某某市政务服务中心", "银川市民大厅")
    config.write_text(edited, encoding="utf-8")
    tokens = tokens_of(root)

    again = kioskd("install", "--root", str(root))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "kept /etc/kioskd/devices.toml" in again.stdout
    assert config.read_text(encoding="utf-8") == edited
    assert tokens_of(root) == tokens

    data = root / "var/lib/kioskd"
    data.mkdir(parents=True)
    (data / "kioskd.db").write_bytes(b"the hall's tickets")
    (root / "etc/systemd/system/multi-user.target.wants").mkdir(parents=True)
    (root / "etc/systemd/system/multi-user.target.wants/kioskd.service").symlink_to(
        "/etc/systemd/system/kioskd.service")          # as `systemctl enable` leaves it
    local_rules = root / "etc/udev/rules.d/71-kioskd-local.rules"
    local_rules.write_text("# the technician's\n", encoding="utf-8")

    gone = kioskd("uninstall", "--root", str(root))
    assert gone.returncode == 0, gone.stdout + gone.stderr
    for path in INSTALLED_FILES:
        assert not (root / path.lstrip("/")).exists() and not (root / path.lstrip("/")).is_symlink()
    assert not (root / VENV).exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/kioskd.service").is_symlink()
    assert (data / "kioskd.db").read_bytes() == b"the hall's tickets"
    assert config.read_text(encoding="utf-8") == edited
    assert tokens_of(root) == tokens
    assert local_rules.exists()
    assert "kept /var/lib/kioskd" in gone.stdout and "/etc/kioskd" in gone.stdout

    twice = kioskd("uninstall", "--root", str(root))
    assert twice.returncode == 1 and "no kioskd installation at /opt/kioskd" in twice.stderr


def test_installing_on_this_system_without_root_is_refused_plainly():
    before = Path(PREFIX).exists()
    done = kioskd("install", user=65534)           # nobody, on this system's /
    assert done.returncode == 1
    assert "needs root: sudo kioskd install" in done.stderr
    assert Path(PREFIX).exists() == before


def test_a_prefix_that_holds_something_else_is_not_taken_over(tmp_path):
    (tmp_path / "opt/kioskd").mkdir(parents=True)
    (tmp_path / "opt/kioskd/precious.txt").write_text("not kioskd's")
    done = kioskd("install", "--root", str(tmp_path))
    assert done.returncode == 1 and "is not a kioskd installation" in done.stderr
    assert (tmp_path / "opt/kioskd/precious.txt").read_text() == "not kioskd's"
    assert not (tmp_path / "etc").exists()
