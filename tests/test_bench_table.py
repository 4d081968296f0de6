"""The benchmark table of `make bench`: every row a figure from this run's results, a
failed benchmark's rows marked failed (never another run's numbers), and the suite that
runs each benchmark and ends with the table. The benchmarks themselves are timed by
`make bench`, not here: these feed the printer fabricated figures and fake benchmarks."""

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
import startup  # noqa: E402
import suite  # noqa: E402
import table  # noqa: E402


def lat(p50: float, p99: float) -> dict:
    return {"p50_ms": p50, "p99_ms": p99, "max_ms": p99 + 1, "n": 100}


def scenario(routes: dict[str, tuple[float, float, float]]) -> dict:
    return {"routes": {name: {"rps": rps, "p50_ms": p50, "p99_ms": p99}
                       for name, (rps, p50, p99) in routes.items()}}


# What each benchmark records (bench_results.record), with figures easy to spot.
FIGURES = {
    "run": {
        "livez": {"8": scenario({"livez": (8000, 0.91, 1.91)}),
                  "32": scenario({"livez": (9000, 3.31, 6.31)})},
        "issue_call": {
            "8": scenario({"issue": (1100, 1.51, 4.01), "call-next": (1200, 1.61, 4.11)}),
            "32": scenario({"issue": (2100, 6.51, 14.1), "call-next": (2200, 6.61, 15.1)})},
        "durable_commit_ceilings": {"8": {"rows_per_s": 46000}, "32": {"rows_per_s": 128000}},
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
    out = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| measure"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            out[cells[0]] = (cells[1], cells[2])
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
    figure, against = got["issue + call-next throughput, 32 clients"]
    assert figure == "4,300/s"
    assert against == ("GET /livez (does nothing): 9,000/s (0.48×); durable commits, 32 rows "
                       "a commit: 128,000/s (0.03×)")
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
