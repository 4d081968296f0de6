#!/usr/bin/env bash
# Make this checkout runnable on a fresh Debian/Ubuntu machine: system packages
# (with apt when we are root or have sudo, else the exact apt line to run), then
# a .venv holding the project. Usage: scripts/bootstrap.sh run|test
set -euo pipefail
cd "$(dirname "$0")/.."

purpose=${1:-run}
PYTHON=${PYTHON:-python3}

# Debian splits venv/ensurepip out of python3; everything else kioskd needs comes
# from PyPI. fonts-noto-cjk: the emulated printer draws its tickets in Chinese;
# espeak-ng: the voice's Mandarin (its library is what pyttsx3 drives, its command
# line the other engine); alsa-utils: aplay, the default player. chromium: the
# browser tests drive Debian's Chromium through Playwright (never a downloaded one).
# gcc, libc6-dev, linux-libc-dev: evdev (keyboard keypads) builds against the kernel's
# input headers; it has no binary wheel. The install tests run the real tools: systemd
# (systemd-analyze verify, systemd-sysusers), udev (udevadm), and cage beside chromium
# (verify finds the kiosk unit's programs).
apt_run=(fonts-noto-cjk espeak-ng alsa-utils gcc libc6-dev linux-libc-dev)
apt_test=(chromium systemd udev cage)
case "$purpose" in
  run)  wanted=("${apt_run[@]}") ;;
  test) wanted=("${apt_run[@]}" "${apt_test[@]}") ;;
  *) echo "usage: $0 run|test" >&2; exit 64 ;;
esac

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "kioskd needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  ver=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  wanted+=("python${ver}-venv")
fi

if ! "$PYTHON" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
  ver=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  wanted+=("python${ver}-dev")      # Python.h, for the same build
fi

missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"; else sudo="none"; fi
  if [ "$sudo" = none ]; then
    echo "kioskd needs these system packages; please run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

stamp=".venv/.installed-$purpose"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  if [ "$purpose" = test ]; then extra="[test]"; else extra=""; fi
  .venv/bin/python -m pip install -q -e ".${extra}"
  touch "$stamp"
fi
