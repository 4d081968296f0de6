"""`kioskd check` fuzzed with broken devices.toml files: the repo's demo hall, the
installed hall's template (systemd/devices.toml) and the tests' minimal hall,
mutated (values of another type, deleted keys, unknown keys, random unicode,
deep nesting, huge and non-finite numbers, ids repeated, references to nothing)
or cut and scrambled as text. Whatever the file holds, checking it ends in a
Config or a ConfigError, never another exception, and every problem is one line
that starts with the place it is about: `[table]` or `[table] key`,
`[services #2]` for an entry without a usable id, `(top level)`, or `line N` for
TOML that does not parse. A single mutation is named: the key that was given a
value of the wrong type, or added unknown, appears on a problem line.

Hypothesis runs derandomized with bounded examples; a few files go through the
real command (`python -m kioskd.cli check -c FILE`) as a subprocess."""

from __future__ import annotations

import copy
import datetime as dt
import math
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import SHIPPED_HALL, demo_frame, hall_toml
from kioskd.config import ConfigError, Config, check_config, env_references, loads_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = 500
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                suppress_health_check=list(HealthCheck))


def _base(text: str) -> tuple[str, dict[str, str]]:
    """A hall's text and the environment its ${NAME}s need."""
    return text, {name: f"token-{name.lower()}" for name in env_references(text)}


BASES = {
    "demo": _base(SHIPPED_HALL.read_text(encoding="utf-8")),
    "template": _base((ROOT / "systemd" / "devices.toml").read_text(encoding="utf-8")),
    "minimal": _base(hall_toml()),
    "board": _base(hall_toml(
        '[devices.board_1]\ndriver = "framed_text"\nport = "/dev/ttyUSB1"\naddress = 1\n'
        + demo_frame("board_1"), window='board = "board_1"')),
}
DOCUMENTS = {name: tomllib.loads(text) for name, (text, _env) in BASES.items()}

# What a problem line starts with: the table (a quoted id may hold anything but an
# unescaped quote), an entry by position, the top level, or the line of bad TOML.
PLACE = re.compile(r'(\[(?:[^\]"]|"(?:[^"\\]|\\.)*")+\]|\(top level\)'
                   r'|line \d+(?:, column \d+)?|invalid TOML)(?: [^\n]*?)?: ')


# -- a TOML writer: every table inline, so any value of any shape can be written ----------

def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_string(text: str) -> str:
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def toml_document(document: dict[str, Any]) -> str:
    return "".join(f"{toml_string(key)} = {toml_value(value)}\n"
                   for key, value in document.items())


# -- mutations -------------------------------------------------------------------------

keys = st.one_of(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), st.text(max_size=12),
                 st.text(st.characters(categories=["Cc", "Zl", "Zp", "Lo"]), max_size=6))
scalars = st.one_of(
    st.text(max_size=24), st.booleans(),
    st.integers(), st.integers(min_value=2**63), st.integers(max_value=-2**63),
    st.floats(), st.dates(), st.datetimes(), st.times())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(keys, inner, max_size=3), max_leaves=8)


def nested(depth: int) -> Any:
    value: Any = "deep"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def kind(value: Any) -> str:
    for name, types in (("bool", bool), ("number", (int, float)), ("string", str),
                        ("array", list), ("table", dict)):
        if isinstance(value, types):
            return name
    return "date"


def places(node: Any, path: tuple = ()) -> list[tuple]:
    """Every path to a value in the document."""
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, child in items:
        found.append(path + (key,))
        found.extend(places(child, path + (key,)))
    return found


def parent_of(document: dict, path: tuple) -> Any:
    node = document
    for key in path[:-1]:
        node = node[key]
    return node


@st.composite
def mutated(draw, base: str | None = None) -> tuple[str, str, dict, list[tuple]]:
    """A base hall with 1-3 mutations: (base, TOML text, env, what was done)."""
    name = base or draw(st.sampled_from(sorted(BASES)))
    document = tomllib.loads(BASES[name][0])
    done = []
    for _ in range(draw(st.sampled_from([1, 1, 2, 3]))):     # one alone: named by a line
        paths = places(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = parent_of(document, path)
        old = parent[path[-1]]
        how = draw(st.sampled_from(["retype", "delete", "unknown key", "duplicate",
                                    "unicode", "huge", "nest", "rename"]))
        if how == "retype":
            parent[path[-1]] = new = draw(values)
            done.append(("retype", path, old, new))
        elif how == "delete":
            del parent[path[-1]]
            done.append(("delete", path))
        elif how == "unknown key":
            table = old if isinstance(old, dict) else parent
            where = path if isinstance(old, dict) else path[:-1]
            if not isinstance(table, dict):
                continue
            key = draw(keys.filter(lambda k: k not in table))
            table[key] = draw(values)
            done.append(("unknown key", where, key))
        elif how == "duplicate":                 # an entry twice: its id twice
            if isinstance(parent, list):
                parent.append(copy.deepcopy(old))
            else:
                parent[draw(keys)] = copy.deepcopy(old)
            done.append(("duplicate", path))
        elif how == "unicode":
            parent[path[-1]] = draw(st.text(min_size=1, max_size=40))
            done.append(("unicode", path))
        elif how == "huge":
            parent[path[-1]] = draw(st.sampled_from([2**63 - 1, -2**63, 2**200, 1e308,
                                                     -1e308, 5e-324, math.inf, math.nan]))
            done.append(("huge", path))
        elif how == "nest":
            parent[path[-1]] = nested(draw(st.integers(2, 40)))
            done.append(("nest", path))
        elif how == "rename" and isinstance(parent, dict):
            parent[draw(keys)] = parent.pop(path[-1])
            done.append(("rename", path))
    return name, toml_document(document), BASES[name][1], done


# -- the oracle ------------------------------------------------------------------------

def problems_of(text: str, env: dict[str, str], tmp_path: Path) -> list[str]:
    """What `kioskd check` says of the text: [] when valid, the problem lines when not.
    Any exception but ConfigError fails the test."""
    try:
        config = loads_config(text, base_dir=tmp_path, env=env)
    except ConfigError as exc:
        assert exc.problems, "a ConfigError without a problem"
        for line in exc.problems:
            assert isinstance(line, str) and line.splitlines() == [line], \
                f"a problem that is not one line: {line!r}"
            assert PLACE.match(line), f"a problem that names no table: {line!r}"
        return exc.problems
    assert isinstance(config, Config)
    return []


def plain(key: str) -> bool:
    """A key shown as it is written (no escapes, no quotes) in a problem line."""
    return bool(key) and key.isprintable() and key.strip() == key and not set(key) & set('"\\\'')


def names(problems: list[str], key: str) -> bool:
    return any(key in line for line in problems)


@pytest.mark.parametrize("base", sorted(BASES))
def test_every_base_hall_is_valid(base: str, tmp_path: Path) -> None:
    text, env = BASES[base]
    assert problems_of(text, env, tmp_path) == []
    assert problems_of(toml_document(DOCUMENTS[base]), env, tmp_path) == [], \
        "the fuzz's TOML writer changes what the file says"


@FUZZ
@given(case=mutated())
def test_mutated_halls_are_checked_never_crash(case, tmp_path_factory) -> None:
    base, text, env, done = case
    problems = problems_of(text, env, tmp_path_factory.getbasetemp())
    event("refused" if problems else "still valid")
    if len(done) != 1:
        return
    how, path, *more = done[0]
    event(f"one mutation: {how}")
    if how == "unknown key" and plain(more[0]):
        assert names(problems, more[0]), f"{base}: unknown key {more[0]!r} in {path}: {problems}"
    if how == "retype" and isinstance(path[-1], str) and kind(more[0]) != kind(more[1]) \
            and not isinstance(more[0], (dict, list)):
        assert names(problems, path[-1]), \
            f"{base}: {path} = {more[1]!r} (was {more[0]!r}) is not named: {problems}"


@FUZZ
@given(base=st.sampled_from(sorted(BASES)), data=st.data())
def test_cut_and_scrambled_text_is_checked_never_crash(base, data, tmp_path_factory) -> None:
    text, env = BASES[base]
    cut = data.draw(st.integers(0, len(text)), label="cut")
    scrambled = text[:cut] + data.draw(st.text(max_size=20), label="inserted") \
        + text[cut + data.draw(st.integers(0, 40), label="removed"):]
    problems_of(scrambled, env, tmp_path_factory.getbasetemp())


@FUZZ
@given(raw=st.binary(max_size=400) | st.builds(
    lambda text, at, byte: (text[:at] + bytes([byte]) + text[at + 1:]),
    st.sampled_from([BASES[b][0].encode() for b in sorted(BASES)]),
    st.integers(0, 5000), st.integers(0, 255)))
def test_random_bytes_as_a_file_are_checked_never_crash(raw: bytes, tmp_path_factory) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzzed.toml"
    path.write_bytes(raw)
    try:
        problems = check_config(path, env={})
    except Exception as exc:             # check_config reports; it never raises
        pytest.fail(f"check_config raised {exc!r} for {raw[:80]!r}")
    for line in problems:
        assert line.splitlines() == [line] and PLACE.match(line), line


def test_deep_nesting_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    """tomllib recurses into nested arrays: a file of a thousand `[` overflows it."""
    problems = problems_of("a = " + "[" * 1000 + "]" * 1000, {}, tmp_path)
    assert problems and "nested too deeply" in problems[0]


def test_a_control_character_in_a_key_stays_on_its_line(tmp_path: Path) -> None:
    """An unknown key with a newline in it (a quoted TOML key may hold one) is shown
    escaped: `kioskd check` prints one line per problem."""
    problems = problems_of(hall_toml(hall='"bad\\nkey" = 1'), {}, tmp_path)
    assert any("[hall]" in line and "bad\\nkey" in line for line in problems), problems


def _edited(base: str, edit) -> str:
    document = tomllib.loads(BASES[base][0])
    edit(document)
    return toml_document(document)


def _retyped_and_unknown(d: dict) -> None:
    d["hall"]["number_width"] = "3"
    d["server"]["颜色"] = "红"


def _duplicate_and_dangling(d: dict) -> None:
    d["windows"].append(dict(d["windows"][0]))
    d["windows"][0]["board"] = "nowhere"


# Files for the real command: valid ones, broken ones of every kind above.
CLI_FILES = {
    "demo": lambda: BASES["demo"][0],
    "template retyped, unknown key": lambda: _edited("template", _retyped_and_unknown),
    "duplicate id, dangling board": lambda: _edited("minimal", _duplicate_and_dangling),
    "nested too deeply": lambda: "a = " + "[" * 1000 + "]" * 1000,
    "cut short": lambda: BASES["demo"][0][:len(BASES["demo"][0]) // 3],
}


@pytest.mark.parametrize("name", sorted(CLI_FILES))
def test_the_check_command_never_shows_a_traceback(name: str, tmp_path: Path) -> None:
    """The real command: exit 0 for a valid file, 2 with one line per problem, each
    starting with the file's name, the same lines check_config gives; never a
    traceback."""
    text = CLI_FILES[name]()
    env = {n: f"token-{n.lower()}" for n in env_references(text)}
    path = tmp_path / "devices.toml"
    path.write_text(text, encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "kioskd.cli", "check", "-c", str(path)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", **env})
    assert "Traceback" not in result.stderr, result.stderr
    expected = problems_of(text, env, tmp_path)
    if expected:
        assert result.returncode == 2, (result.returncode, result.stderr)
        assert result.stderr.splitlines() == [f"{path}: {line}" for line in expected]
    else:
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"{path}: ok")
