"""The benchmark table of `make bench`: every row a figure from this run's results, a
failed benchmark's rows marked failed (never another run's numbers), the load rows'
PostgreSQL columns (one daemon, two sharing the database) from the same run, and the
suite that runs each benchmark and ends with the table. The benchmarks themselves are
timed by `make bench`, not here: these feed the printer fabricated figures and fake
benchmarks."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from kioskd.config import loads_config

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.append(str(BENCHMARKS))

import bench_hall  # noqa: E402
import bench_results  # noqa: E402
import run  # noqa: E402
import startup  # noqa: E402
import suite  # noqa: E402
import table  # noqa: E402


def lat(p50: float, p99: float) -> dict:
    return {"p50_ms": p50, "p99_ms": p99, "max_ms": p99 + 1, "n": 100}


def scenario(routes: dict[str, tuple[float, float, float]], cpu: dict | None = None) -> dict:
    return {"routes": {name: {"rps": rps, "p50_ms": p50, "p99_ms": p99}
                       for name, (rps, p50, p99) in routes.items()}, "cpu": cpu}


def cpu(daemon: float, server: float | None = None, daemons: int = 1) -> dict:
    return {"daemon_pct": daemon, "loop_pct": daemon / 2, "others_pct": daemon / 2,
            "client_pct": 20.0, "other_pct": 1.0, "server_pct": server, "daemons": daemons}


# What each benchmark records (bench_results.record), with figures easy to spot.
FIGURES = {
    "run": {
        "livez": {"8": scenario({"livez": (8000, 0.91, 1.91)}),
                  "32": scenario({"livez": (9000, 3.31, 6.31)})},
        "issue_call": {
            "8": scenario({"issue": (1100, 1.51, 4.01), "call-next": (1200, 1.61, 4.11)},
                          cpu(81.2)),
            "32": scenario({"issue": (2100, 6.51, 14.1), "call-next": (2200, 6.61, 15.1)},
                           cpu(96.4))},
        "durable_commit_ceilings": {"8": {"rows_per_s": 46000}, "32": {"rows_per_s": 128000}},
        "postgres": {
            "skipped": None, "durable": True,
            "server": {"server_version": "15.18 (Debian 15.18-0+deb12u1)", "fsync": "on",
                       "synchronous_commit": "on", "wal_sync_method": "fdatasync"},
            "durable_commits": {"rate": 3100.0, "p50_ms": 0.3, "p99_ms": 0.6, "seconds": 3.0},
            "concurrent_commits": {"8": {"connections": 8, "commits_per_s": 12300.0},
                                   "32": {"connections": 32, "commits_per_s": 20100.0}},
            "one_daemon": {
                "8": scenario({"issue": (510, 3.52, 7.02), "call-next": (520, 3.62, 7.12)},
                              cpu(90.4, 40.6)),
                "32": scenario({"issue": (610, 9.53, 21.3), "call-next": (620, 9.63, 22.3)},
                               cpu(95.2, 45.1))},
            "two_daemons": {
                "8": scenario({"issue": (530, 3.44, 8.04), "call-next": (540, 3.54, 8.14)},
                              cpu(120.4, 50.6, 2)),
                "32": scenario({"issue": (640, 9.44, 24.4), "call-next": (650, 9.54, 25.4)},
                               cpu(140.2, 55.4, 2))},
        },
    },
    "printing": {"to_paper": lat(2.22, 3.33), "answered_plain": lat(1.44, 2.55)},
    "boards": {"windows": 100, "buses": 4, "baud": 9600, "single": lat(18.1, 18.9),
               "single_floor": lat(17.7, 17.7), "burst": lat(250, 470),
               "burst_floor": lat(240, 460)},
    "keypads": {"single": lat(13.1, 14.9), "single_floor_ms": 10.4},
    "voice": {"warm": lat(15.5, 16.6), "cold": lat(420, 510), "aim_warm_p99_ms": 100.0},
    "fanout": {"displays": 500, "last": lat(61.1, 80.8), "first": lat(3.1, 6.1),
               "answer": lat(60.2, 79.9), "one_display": lat(5.9, 9.9),
               "client_cpu_per_call_ms": 9.87},
    "stats_year": {"days": 365, "tickets": 3_000_000, "past_day": {"p50_ms": 4.4, "p90_ms": 5.5},
                   "today": {"p50_ms": 66.6, "p90_ms": 77.7},
                   "year": {"p50_ms": 888, "p90_ms": 999}, "year_cold_s": 123.0,
                   "aim_day_ms": 100.0, "aim_year_s": 2.0},
    "history": {"history": 3_000_000, "year_call-next": lat(0.71, 2.81),
                "day_one_call-next": lat(0.69, 2.79)},
    "backup": {"history": 1_000_000, "during_call-next": lat(0.93, 9.31),
               "quiet_call-next": lat(0.81, 3.31), "copy_mb": 420.0, "copy_s": 2.5},
    "alerts_check": {"windows": 150, "waiting": 500, "in_transaction_ms": 12.3, "aim_ms": 100.0},
    "startup": {"windows": 150, "imports_s": 0.611,
                "demo": {"healthz_median_s": 1.234, "ready_median_s": 1.236},
                "big": {"healthz_median_s": 0.987, "ready_median_s": None,
                        "first_healthz_s": 1.111}},
    "memory": {"windows": 150, "start_rss_kib": 70 * 1024, "start_hwm_kib": 71 * 1024,
               "load_rss_kib": 80 * 1024, "load_hwm_kib": 82 * 1024, "imports_rss_kib": 60 * 1024,
               "answered": 12345, "load_seconds": 10.0, "streams": 100},
}
MACHINE = {"cpu": "Test CPU 9000", "cores": 2, "ram_gib": 8.0, "kernel": "Linux 6.1.0",
           "python": "3.11.7", "sqlite": "3.40.1", "tmp_fs": "ext4", "repo_fs": "ext4",
           "load": 0.05, "date": "2031-05-06 10:00 CST", "quick": False}


def a_run(folder: Path, monkeypatch, statuses: dict[str, object] | None = None,
          figures: dict | None = None) -> Path:
    """A results folder as suite.py leaves it: machine, status and figures."""
    monkeypatch.setenv(bench_results.ENV, str(folder))
    for name, data in (FIGURES if figures is None else figures).items():
        bench_results.record(name, data)
    exits = {name: 0 for name in FIGURES} if statuses is None else statuses
    (folder / "status.json").write_text(json.dumps(
        {name: {"exit": code, "seconds": 1.0} for name, code in exits.items()}))
    (folder / "machine.json").write_text(json.dumps(MACHINE))
    return folder


def rows(text: str) -> dict[str, tuple[str, str]]:
    """The table's rows: measure → (this run, against)."""
    return {measure: (figure, against)
            for measure, (figure, _, _, against) in all_columns(text).items()}


def all_columns(text: str) -> dict[str, tuple[str, str, str, str]]:
    """The table's rows: measure → (this run, PostgreSQL, PostgreSQL 2 daemons, against)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| measure"):
            cells = [c.strip() for c in line[1:-1].split(" | ")]
            assert len(cells) == 5, line
            out[cells[0]] = tuple(cells[1:])
    return out


def test_every_row_comes_from_the_runs_figures_under_the_machine(tmp_path, monkeypatch):
    text = table.render(a_run(tmp_path, monkeypatch))
    header = text.split("| measure")[0]
    for item in ("Test CPU 9000", "2 cores", "8 GiB RAM", "Linux 6.1.0", "Python 3.11.7",
                 "SQLite 3.40.1", "2031-05-06", "load 0.05"):
        assert item in header
    got = rows(text)
    assert len(got) == len(table.ROWS)
    assert not [m for m, (figure, _) in got.items() if "FAILED" in figure or "not run" in figure]

    assert got["issue, 8 clients (4 issuing)"] == (
        "p50 1.51 ms · p99 4.01 ms · 1,100/s",
        "GET /livez (does nothing), 8 clients: p50 0.91 ms · p99 1.91 ms")
    assert got["call-next, 32 clients (16 calling)"][0] == "p50 6.61 ms · p99 15.1 ms · 2,200/s"
    figure, against = got["issue + call-next throughput, 32 clients (CPU: % of one core)"]
    assert figure == "4,300/s · CPU daemon 96%"
    assert against == ("GET /livez (does nothing): 9,000/s (0.48×); durable commits, 32 rows "
                       "a commit: 128,000/s (0.03×); PostgreSQL durable commits, 32 connections "
                       "at once: 20,100/s")
    assert got["issue → last byte at the printer (emulated, loopback TCP)"] == (
        "p50 2.22 ms · p99 3.33 ms", "the issue answered, no printing: p50 1.44 ms · p99 2.55 ms")
    assert got["call → board frame on the wire, 100 windows at once, 4 buses"][1] == \
        "wire time, each bus busy back to back: p50 240 ms · p99 460 ms"
    assert got["call → voice playback starts, cold (synthesised on the call)"][0] == \
        "p50 420 ms · p99 510 ms"
    assert got["call → ticket.called at the last of 500 displays (event streams)"] == (
        "p50 61.1 ms · p99 80.8 ms",
        "1 display: p50 5.90 ms · p99 9.90 ms; clients' CPU 9.87 ms a call")
    assert got["statistics, the year (365 days)"] == (
        "p50 888 ms · p90 999 ms", "aim: < 2.00 s; cold, every day computed once: 123.0 s")
    assert got["start-up, exec → /healthz (READY=1), demo hall"] == (
        "median 1.23 s (1.24 s)", "the interpreter importing kioskd: 611 ms")
    assert got["start-up, exec → /healthz (READY=1), 150 windows"][0] == \
        "median 987 ms (no READY=1)"
    assert got["resident memory, 150 windows, after load"] == (
        "VmRSS 80 MiB · VmHWM 82 MiB", "12,345 issues/calls in 10 s, 100 event streams")


def test_the_load_rows_show_postgresql_with_one_daemon_and_two_beside_sqlite(
        tmp_path, monkeypatch):
    text = table.render(a_run(tmp_path, monkeypatch))
    assert ("| measure | this run (SQLite) | PostgreSQL, 1 daemon | PostgreSQL, 2 daemons "
            "| against |") in text
    header = text.split("| measure")[0]
    assert "PostgreSQL 15.18 server" in header
    assert "fsync on, synchronous_commit on: durable, like SQLite's synchronous=FULL" in header
    got = all_columns(text)
    assert got["issue, 8 clients (4 issuing)"][:3] == (
        "p50 1.51 ms · p99 4.01 ms · 1,100/s", "p50 3.52 ms · p99 7.02 ms · 510/s",
        "p50 3.44 ms · p99 8.04 ms · 530/s")
    assert got["call-next, 32 clients (16 calling)"][1:3] == (
        "p50 9.63 ms · p99 22.3 ms · 620/s", "p50 9.54 ms · p99 25.4 ms · 650/s")
    # two daemons: their CPU summed, the server's beside it
    assert got["issue + call-next throughput, 8 clients (CPU: % of one core)"][1:3] == (
        "1,030/s · CPU daemon 90%, PostgreSQL 41%", "1,070/s · CPU daemons 120%, PostgreSQL 51%")
    load = [m for m in got if m.endswith(("issuing)", "calling)", "(CPU: % of one core)"))]
    assert len(load) == 6 and all(got[m][1] and got[m][2] for m in load)
    assert all(got[m][1:3] == ("", "") for m in got if m not in load)


def test_postgresql_columns_say_why_they_did_not_run(tmp_path, monkeypatch):
    figures = {**FIGURES, "run": {**FIGURES["run"], "postgres": {
        "skipped": "PostgreSQL's server programs are not installed (Debian: apt-get install "
                   "postgresql)"}}}
    text = table.render(a_run(tmp_path, monkeypatch, figures=figures))
    assert "PostgreSQL columns: not run: PostgreSQL's server programs are not installed" in text
    got = all_columns(text)
    for n in (8, 32):
        figure, pg, pg2, against = got[f"issue + call-next throughput, {n} clients "
                                       "(CPU: % of one core)"]
        assert figure.startswith(("2,300/s", "4,300/s"))
        assert pg == pg2 == "not run"                       # why: once, above the table
        assert "PostgreSQL" not in against                   # no ceiling of a server not run
    assert got["issue, 32 clients (16 issuing)"][0] == "p50 6.51 ms · p99 14.1 ms · 2,100/s"

    # one of the two PostgreSQL runs missing from the figures: that cell says so, alone
    del figures["run"]
    broken = {**FIGURES["run"], "postgres": {**FIGURES["run"]["postgres"]}}
    del broken["postgres"]["two_daemons"]
    got = all_columns(table.render(a_run(tmp_path, monkeypatch,
                                         figures={**figures, "run": broken})))
    _, pg, pg2, _ = got["issue, 8 clients (4 issuing)"]
    assert pg == "p50 3.52 ms · p99 7.02 ms · 510/s"
    assert pg2.startswith("**FAILED** (figure missing:")


def test_a_failed_benchmark_shows_as_failed_never_with_figures(tmp_path, monkeypatch):
    figures = {**FIGURES, "memory": {"windows": 150}}        # recorded, but a figure short
    del figures["keypads"]                                  # ran, recorded nothing
    del figures["history"]                                  # not run at all
    statuses = {name: 0 for name in FIGURES if name != "history"}
    statuses.update(voice=1, stats_year="timeout")          # voice recorded, then failed
    got = rows(table.render(a_run(tmp_path, monkeypatch, statuses, figures)))

    voice = [got[m] for m in got if m.startswith("call → voice playback")]
    assert voice == [("**FAILED** (voice.py: exit 1)", "")] * 2
    assert all(figure == "**FAILED** (stats_year.py: timed out)" and against == ""
               for m, (figure, against) in got.items() if m.startswith("statistics"))
    assert got["keypad press → number on its display (RS-485, 9600 baud)"][0] == \
        "**FAILED** (no figures recorded)"
    assert got["call-next, 3,000,000 past tickets stored (queue engine)"][0] == \
        "not run (history.py)"
    assert got["resident memory, 150 windows, after start"][0].startswith(
        "**FAILED** (figure missing:")
    assert "420 ms" not in "".join(f + a for f, a in got.values())    # voice's cold p50
    assert got["issue, 8 clients (4 issuing)"][0] == "p50 1.51 ms · p99 4.01 ms · 1,100/s"

    # the load benchmark failed: its rows say so once, the PostgreSQL columns empty
    statuses["run"] = 1
    got = all_columns(table.render(a_run(tmp_path, monkeypatch, statuses, figures)))
    assert got["issue, 8 clients (4 issuing)"] == ("**FAILED** (run.py: exit 1)", "", "", "")


FAKE = """\
import json, sys
sys.path.insert(0, {benchmarks!r})
from bench_results import record
{body}
"""


def test_the_suite_runs_each_benchmark_and_ends_with_the_table(tmp_path, monkeypatch, capfd):
    scripts, results = tmp_path / "scripts", tmp_path / "results"
    scripts.mkdir()
    results.mkdir()
    (scripts / "good.py").write_text(FAKE.format(benchmarks=str(BENCHMARKS), body=textwrap.dedent(
        """\
        print("good: my own detailed printout")
        record("good", {"args": " ".join(sys.argv[1:]), "value": 7.5})
        """)))
    (scripts / "bad.py").write_text(FAKE.format(benchmarks=str(BENCHMARKS), body="sys.exit(3)"))
    (results / "bad.json").write_text(json.dumps(      # a previous run's figures in the folder
        {"benchmark": "bad", "figures": {"args": "", "value": 99.0}}))
    monkeypatch.setattr(table, "ROWS", [
        table.Row("good", "the good one", lambda f: f"{f['value']} ({f['args']})", lambda f: "x"),
        table.Row("bad", "the bad one", lambda f: f"{f['value']}", lambda f: "y"),
        table.Row("never", "one not chosen", lambda f: "", lambda f: ""),
    ])
    monkeypatch.delenv(bench_results.ENV, raising=False)

    code = suite.main(["--quick", "--results", str(results)],
                      benchmarks=[suite.Benchmark("good", ("--fast", "1"), ("--slow",)),
                                  suite.Benchmark("bad", ())],
                      directory=scripts)
    out = capfd.readouterr().out
    assert code == 1                                      # one failed
    status = json.loads((results / "status.json").read_text())
    assert {n: s["exit"] for n, s in status.items()} == {"good": 0, "bad": 3}
    got = rows(out)
    assert got["the good one"] == ("7.5 (--fast 1)", "x")  # quick arguments, its figure
    assert got["the bad one"] == ("**FAILED** (bad.py: exit 3)", "")
    assert got["one not chosen"] == ("not run (never.py)", "")
    assert "99.0" not in out
    assert "good: my own detailed printout" in out        # each keeps its printout
    assert out.rstrip().splitlines()[-1].endswith(f"Results: {results}")
    assert (results / "table.md").read_text().startswith("kioskd benchmarks")
    assert json.loads((results / "machine.json").read_text())["quick"] is True


def test_only_runs_the_benchmarks_named(tmp_path, monkeypatch, capfd):
    (tmp_path / "good.py").write_text(FAKE.format(benchmarks=str(BENCHMARKS),
                                                  body='record("good", {"value": 1})'))
    monkeypatch.setattr(table, "ROWS", [
        table.Row("good", "the good one", lambda f: str(f["value"]), lambda f: ""),
        table.Row("other", "the other one", lambda f: "", lambda f: "")])
    code = suite.main(["--only", "good", "--results", str(tmp_path / "r")],
                      benchmarks=[suite.Benchmark("good", ()), suite.Benchmark("other", ())],
                      directory=tmp_path)
    got = rows(capfd.readouterr().out)
    assert code == 0
    assert got == {"the good one": ("1", ""), "the other one": ("not run (other.py)", "")}


@pytest.mark.parametrize("hall", ["devices_toml", "one_service_hall", "big_hall_toml", "demo"])
def test_the_benchmarks_halls_do_not_limit_issuing(tmp_path, hall):
    """The benchmarks issue hundreds of tickets a second from 127.0.0.1."""
    text = {"devices_toml": lambda: bench_hall.devices_toml(8123),
            "one_service_hall": lambda: "\n".join(bench_hall.one_service_hall(8123, 3)),
            "big_hall_toml": lambda: bench_hall.big_hall_toml(8123),
            "demo": lambda: startup.demo_toml(8123)}[hall]()
    config = loads_config(text, base_dir=tmp_path)
    assert (config.limits.issue_per_terminal, config.limits.issue_per_address) == (0, 0)
    assert config.server.port == 8123
    if hall == "big_hall_toml":
        assert len(config.windows) == 150


def test_two_daemons_share_the_hall_each_with_half_the_windows_and_kiosks(tmp_path):
    """The two-daemon run: the same catalogue in both files, each its own instance on
    the shared store, windows in turn each daemon's, and every window's calls sent
    through the daemon that manages it (the other would answer 409)."""
    url = "postgresql://kioskd@127.0.0.1:5999/hall"
    configs = {name: loads_config(bench_hall.devices_toml(8123 + i, url, name, ("east", "west")),
                                  base_dir=tmp_path)
               for i, name in enumerate(("east", "west"))}
    east, west = configs["east"], configs["west"]
    assert (east.hall.instance, west.hall.instance) == ("east", "west")
    assert east.store.url == west.store.url == url
    assert [(w.id, w.instance) for w in east.windows] == \
        [(w.id, w.instance) for w in west.windows]
    managed = {name: [w.id for w in east.windows if w.instance == name] for name in configs}
    assert managed["east"][:4] == ["1", "3", "5", "7"]
    assert managed["west"][:4] == ["2", "4", "6", "8"]
    assert len(managed["east"]) == len(managed["west"]) == bench_hall.WINDOW_COUNT // 2
    assert loads_config(bench_hall.devices_toml(8123), base_dir=tmp_path).store.url is None

    bases = {"east": "http://127.0.0.1:1", "west": "http://127.0.0.1:2"}
    for clients in (8, 32):
        workers = run.hall_workers(clients, [bases["east"], bases["west"]])
        for name, base in bases.items():
            mine = [w for w in workers if w.base == base]
            assert len([w for w in mine if w.route is run.ISSUE]) == clients // 4
            calling = [w.request(None)[0].split("/")[-2] for w in mine
                       if w.route is run.CALL_NEXT]
            assert len(calling) == clients // 4
            assert set(calling) <= set(managed[name]), f"{name} calls another's window"
