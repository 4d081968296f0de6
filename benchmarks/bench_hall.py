"""The benchmark's hall: a devices.toml in a temp dir, written to CONTRACT.md section 2.

5 services (prefixes A–E), 40 windows "1".."40" each serving 1–3 services, no
devices, no tokens (the daemon binds to 127.0.0.1, where open roles are allowed),
on SQLite or on a PostgreSQL database one or several daemons share;
`one_service_hall` for the device benchmarks, `big_hall_toml` for 150 windows. None
limits issuing ([limits] 0): every benchmark issues from one address, fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

SERVICES = [
    # id, name, prefix, code
    ("property", "不动产登记", "A", "640000-000-01"),
    ("business", "企业开办", "B", "640000-000-02"),
    ("social", "社会保障", "C", "640000-000-03"),
    ("medical", "医疗保障", "D", "640000-000-04"),
    ("housing", "住房公积金", "E", "640000-000-05"),
]
SERVICE_IDS = [s[0] for s in SERVICES]
WINDOW_COUNT = 40
# Benchmarks issue far faster than a hall's kiosks may (all from 127.0.0.1): no limits.
NO_LIMITS = ["[limits]", "issue_per_terminal = 0", "issue_per_address = 0", ""]


def window_services(number: int) -> list[str]:
    """Window `number` (1-based) serves 1–3 consecutive services, rotating through them,
    so that any 4 consecutive windows between them serve all five."""
    count = 1 + number % 3
    return [SERVICE_IDS[(number + k) % len(SERVICE_IDS)] for k in range(count)]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def devices_toml(port: int, store_url: str | None = None, instance: str | None = None,
                 instances: tuple[str, ...] = ()) -> str:
    """The load benchmark's hall; with `store_url`, on that PostgreSQL database as the
    daemon `instance`, window n managed by instances[(n - 1) % len(instances)]."""
    lines = [
        "# Written by benchmarks/run.py: a throw-away hall for the load benchmark.",
        "[hall]",
        'name = "基准测试大厅"',
        'timezone = "Asia/Shanghai"',
        'data_dir = "var"',
        *([f"instance = {_quote(instance)}"] if instance else []),
        "",
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
        "",
        *NO_LIMITS,
        *(["[store]", f"url = {_quote(store_url)}", ""] if store_url else []),
    ]
    for service_id, name, prefix, code in SERVICES:
        lines += [
            "[[services]]",
            f"id = {_quote(service_id)}",
            f"name = {_quote(name)}",
            f"prefix = {_quote(prefix)}",
            f"code = {_quote(code)}",
            "",
        ]
    for number in range(1, WINDOW_COUNT + 1):
        served = ", ".join(_quote(s) for s in window_services(number))
        lines += [
            "[[windows]]",
            f'id = "{number}"',
            f'name = "{number}号窗口"',
            f"services = [{served}]",
            *([f"instance = {_quote(window_instance(number, instances))}"] if instances else []),
            "",
        ]
    return "\n".join(lines)


def window_instance(number: int, instances: tuple[str, ...]) -> str:
    """The daemon that manages window `number` when `instances` share the hall: in
    turn, so that windows 1..k are split evenly whatever k."""
    return instances[(number - 1) % len(instances)]


def one_service_hall(port: int, windows: int,
                     per_window: Callable[[int], list[str]] = lambda n: []) -> list[str]:
    """The lines of a hall with one service (不动产登记, A) and windows "1".."N"
    serving it; `per_window(n)` adds lines to window n's table (its board)."""
    lines = ["[hall]", 'name = "基准测试大厅"', 'data_dir = "var"', "",
             "[server]", 'host = "127.0.0.1"', f"port = {port}", "", *NO_LIMITS,
             "[[services]]", 'id = "property"', 'name = "不动产登记"', 'prefix = "A"',
             'code = "640000-000-01"', ""]
    for n in range(1, windows + 1):
        lines += ["[[windows]]", f'id = "{n}"', f'name = "{n}号窗口"',
                  'services = ["property"]', *per_window(n), ""]
    return lines


def write_hall(directory: Path, port: int, store_url: str | None = None,
               instance: str | None = None, instances: tuple[str, ...] = ()) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "devices.toml"
    path.write_text(devices_toml(port, store_url, instance, instances), encoding="utf-8")
    return path


def big_hall_toml(port: int, windows: int = 150, services: int = 10) -> str:
    """A hall at the top of the range kioskd is made for: `windows` windows, each
    serving 2–3 of `services` services, the last ten temporary; no devices."""
    lines = ["# Written by a kioskd benchmark: a throw-away hall of "
             f"{windows} windows.", "[hall]", 'name = "基准测试大厅"',
             'timezone = "Asia/Shanghai"', 'data_dir = "var"', "",
             "[server]", 'host = "127.0.0.1"', f"port = {port}", "", *NO_LIMITS]
    for i in range(services):
        lines += ["[[services]]", f'id = "s{i}"', f'name = "事项{i}"',
                  f'prefix = "{chr(ord("A") + i)}"', f'code = "640100-{i:03d}-01"', ""]
    for n in range(1, windows + 1):
        served = ", ".join(f'"s{(n + k * 3) % services}"' for k in range(2 + n % 2))
        lines += ["[[windows]]", f'id = "{n}"', f'name = "{n}号窗口"', f"services = [{served}]",
                  *(["temporary = true"] if n > windows - 10 else []), ""]
    return "\n".join(lines)
