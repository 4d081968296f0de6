"""devices.toml: the shipped demo hall loads, and every mistake a technician can make is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import hall_toml
from kioskd.config import (
    KNOWN_DRIVERS,
    Config,
    ConfigError,
    Server,
    check_config,
    load_config,
    loads_config,
    read_env_file,
)

SHIPPED = Path(__file__).resolve().parents[1] / "devices.toml"

def write(tmp_path: Path, text: str, name: str = "devices.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, extra: str = "", *, hall: str = "", env: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, hall_toml(extra, hall=hall)), env=env or {})


def problems(tmp_path: Path, extra: str = "", *, hall: str = "",
             env: dict[str, str] | None = None) -> list[str]:
    return check_config(write(tmp_path, hall_toml(extra, hall=hall)), env=env or {})


# -- the shipped demo hall ----------------------------------------------------------

def test_the_shipped_demo_hall_loads_cleanly():
    assert check_config(SHIPPED, env={}) == []
    config = load_config(SHIPPED, env={})
    assert config.hall.timezone == "Asia/Shanghai"
    assert config.hall.data_dir == SHIPPED.parent / "var"
    assert config.server == Server(host="127.0.0.1", port=8080)
    assert config.path == SHIPPED


def test_the_demo_hall_has_the_services_the_notice_names_each_with_a_full_guide():
    config = load_config(SHIPPED, env={})
    assert len(config.services) >= 5
    names = " ".join(s.name for s in config.services)
    for field in ("不动产登记", "企业开办", "投资项目", "施工许可", "社会保障卡"):
        assert field in names
    prefixes = [s.prefix for s in config.services]
    assert len(set(prefixes)) == len(prefixes)
    assert all(len(p) == 1 for p in prefixes)
    for service in config.services:
        assert service.code.startswith("640100-"), service.id
        assert service.guide.materials and service.guide.time_limit, service.id
        assert service.guide.fee and service.guide.basis.startswith("《"), service.id
        assert service.service_time_min > 0


def test_the_demo_hall_has_comprehensive_specialised_and_temporary_windows():
    config = load_config(SHIPPED, env={})
    assert len(config.windows) >= 6
    temporary = [w for w in config.windows if w.temporary]
    assert len(temporary) >= 1 and "临时" in temporary[0].name
    assert any(len(w.services) >= 3 for w in config.windows if not w.temporary)   # 综合受理
    assert any(len(w.services) == 1 for w in config.windows)                      # specialised
    served = {s for w in config.windows for s in w.services}
    assert served == {s.id for s in config.services}   # nobody queues for a service no window calls


def test_the_demo_kiosk_prints_on_the_demo_printer():
    config = load_config(SHIPPED, env={})
    assert config.devices["kiosk_1"].options == {"printer": "printer_1", "offline_after_s": 15.0}
    printer = config.devices["printer_1"]
    assert printer.driver == "escpos"
    assert printer.options["connection"] == "tcp://127.0.0.1:9100"
    assert printer.options["encoding"] == "gb18030"
    assert config.devices["voice"].driver == "voice"


# -- a valid hall -------------------------------------------------------------------

def test_a_minimal_hall_gets_the_documented_defaults(tmp_path):
    config = load(tmp_path)
    assert config.hall.name == "测试大厅"
    assert (config.hall.timezone, config.hall.number_width) == ("Asia/Shanghai", 3)
    assert (config.hall.readmit_within_min, config.hall.readmit_after) == (30, 3)
    assert config.hall.data_dir == tmp_path / "var"
    assert config.server == Server(host="127.0.0.1", port=8080)
    assert config.auth.kiosk == () and config.auth.windows == {}
    assert config.devices == {}
    service = config.service("property")
    assert service is not None and service.service_time_min == 5.0 and service.guide.materials == ()
    window = config.window("1")
    assert window is not None and window.board is None and window.temporary is False
    assert config.service("nope") is None and config.window("2") is None


def test_a_window_keeps_its_services_in_its_order_of_preference(tmp_path):
    config = load(tmp_path, """
        [[services]]
        id = "social"
        name = "社会保障卡"
        prefix = "E"
        code = "640100-005-01"

        [[windows]]
        id = "2"
        name = "2号窗口"
        services = ["social", "property"]
        temporary = true
    """)
    window = config.window("2")
    assert window.services == ("social", "property")
    assert window.temporary is True


def test_a_guide_is_read_in_full(tmp_path):
    text = hall_toml().replace('code = "640100-001-01"\n', '''code = "640100-001-01"
service_time_min = 12
[services.guide]
materials = ["不动产登记申请书", "申请人身份证明"]
time_limit = "5个工作日"
fee = "不收费"
basis = "《不动产登记暂行条例》"
notes = "窗口免费复印"
''')
    config = load_config(write(tmp_path, text), env={})
    service = config.service("property")
    assert service.service_time_min == 12.0 and isinstance(service.service_time_min, float)
    assert service.guide.materials == ("不动产登记申请书", "申请人身份证明")
    assert (service.guide.time_limit, service.guide.fee) == ("5个工作日", "不收费")
    assert (service.guide.basis, service.guide.notes) == ("《不动产登记暂行条例》", "窗口免费复印")


# -- every problem at once ----------------------------------------------------------

MANY_PROBLEMS = """\
[hall]
timezone = "Asia/Shangai"
number_width = 0

[server]
port = "8080"

[auth]
kiosk = ["${KIOSK_TOKEN}"]
[auth.windows]
"9" = ["clerk-9"]

[[services]]
id = "business"
name = "企业开办"
prefix = "A"
code = "640100-002-01"

[[services]]
id = "property"
name = "不动产登记"
prefix = "A"
code = "640100-001-01"
service_time_min = 0

[[windows]]
id = "3"
name = "3号窗口"
services = ["property", "foo"]
board = "board_9"

[[windows]]
id = 4
name = "4号窗口"
services = []

[devices.board_1]
driver = "modbus_digits"
port = "/dev/ttyUSB1"

[devices.kiosk_1]
driver = "terminal"
printer = "board_1"
baud = 9600

[devices.lamp]
driver = "neon"
"""


def test_a_file_with_many_problems_reports_every_one_of_them(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, MANY_PROBLEMS), env={})
    expected = [
        "[hall]: missing key 'name'",
        "[hall] timezone: unknown time zone 'Asia/Shangai' (did you mean 'Asia/Shanghai'?)",
        "[hall] number_width: 0 is out of range; expected 1 to 6",
        "[server] port: expected an integer, got string",
        "[auth] kiosk: ${KIOSK_TOKEN} is not set",
        "[auth.windows] 9: unknown window '9'",
        "[services.property] prefix: 'A' is already used by service 'business'",
        "[services.property] service_time_min: 0 is out of range; expected a number greater than 0",
        "[windows.3] services: unknown service 'foo'",
        "[windows.3] board: unknown device 'board_9' (did you mean 'board_1'?)",
        '[windows #2] id: expected a string, got integer; quote it: id = "4"',
        "[windows #2] services: is empty; a window must serve at least one service",
        "[devices.kiosk_1] printer: device 'board_1' is a modbus_digits device, not an escpos printer",
        "[devices.kiosk_1]: unknown key 'baud'",
        "[devices.lamp] driver: unknown driver 'neon'; known drivers: "
        "escpos, framed_text, keypad, modbus_digits, terminal, voice",
    ]
    for line in expected:
        assert line in caught.value.problems
    assert len(caught.value.problems) == len(expected), caught.value.problems
    assert str(caught.value) == "\n".join(caught.value.problems)


def test_problems_come_in_the_order_of_the_tables_whatever_the_file_order(tmp_path):
    text = hall_toml().replace("[hall]", '[server]\nport = 0\n\n[hall]')
    text = text.replace('name = "1号窗口"', "")
    found = check_config(write(tmp_path, '[devices.x]\ndriver = "?"\n' + text), env={})
    tables = [line.split("]")[0] for line in found]
    assert tables == ["[server", "[windows.1", "[devices.x"]


def test_check_config_returns_nothing_for_a_valid_file_and_the_lines_for_a_broken_one(tmp_path):
    assert check_config(write(tmp_path, hall_toml()), env={}) == []
    assert check_config(write(tmp_path, hall_toml(hall="number_width = 7")), env={}) == [
        "[hall] number_width: 7 is out of range; expected 1 to 6",
    ]


# -- the file itself ----------------------------------------------------------------

def test_a_missing_file_is_one_problem(tmp_path):
    path = tmp_path / "nowhere" / "devices.toml"
    assert check_config(path, env={}) == ["file not found"]


def test_a_toml_syntax_error_is_one_problem_with_line_and_column(tmp_path):
    path = write(tmp_path, '[hall]\nname = "测试大厅"\nport = \n')
    found = check_config(path, env={})
    assert len(found) == 1
    assert found[0].startswith("line 3, column 8: invalid TOML: ")


def test_a_file_not_saved_as_utf8_is_one_problem(tmp_path):
    path = tmp_path / "devices.toml"
    path.write_bytes('[hall]\nname = "测试大厅"\n'.encode("gbk"))
    assert check_config(path, env={}) == ["line 2: not valid UTF-8 (save the file as UTF-8)"]


# -- unknown keys and tables --------------------------------------------------------

@pytest.mark.parametrize("table, extra, line", [
    ("hall", "", "[hall]: unknown key 'timezon' (did you mean 'timezone'?)"),
    ("server", '[server]\nbind = "0.0.0.0"\n', "[server]: unknown key 'bind'"),
    ("auth", "[auth]\nclerk = []\n", "[auth]: unknown key 'clerk'"),
    ("window", '[[windows]]\nid = "2"\nname = "2号窗口"\nservices = ["property"]\ntemp = true\n',
     "[windows.2]: unknown key 'temp'"),
    ("terminal", '[devices.p]\ndriver = "escpos"\nconnection = "tcp://p"\n[devices.kiosk_1]\ndriver = "terminal"\n'
                 'printer = "p"\nbaud = 9600\n', "[devices.kiosk_1]: unknown key 'baud'"),
    ("top-level table", "[hal]\nname = 'x'\n", "[hal]: unknown table (did you mean 'hall'?)"),
])
def test_an_unknown_key_names_its_table_and_key(tmp_path, table, extra, line):
    hall = 'timezon = "Asia/Shanghai"' if table == "hall" else ""
    assert problems(tmp_path, extra, hall=hall) == [line]


def test_an_unknown_key_in_a_service_and_in_its_guide(tmp_path):
    text = hall_toml().replace('code = "640100-001-01"\n',
                               'code = "640100-001-01"\nwindow = "3"\n[services.guide]\nfees = "不收费"\n')
    assert check_config(write(tmp_path, text), env={}) == [
        "[services.property]: unknown key 'window'",
        "[services.property.guide]: unknown key 'fees' (did you mean 'fee'?)",
    ]


def test_a_key_outside_any_table_is_reported(tmp_path):
    text = 'port = 8080\n' + hall_toml()
    assert check_config(write(tmp_path, text), env={}) == [
        "(top level): unknown key 'port'; keys belong in a table such as [hall] or [server]",
    ]


# -- types --------------------------------------------------------------------------

@pytest.mark.parametrize("value, got", [('"8080"', "string"), ("true", "boolean"), ("8080.0", "float")])
def test_a_port_must_be_an_integer(tmp_path, value, got):
    assert problems(tmp_path, f"[server]\nport = {value}\n") == [
        f"[server] port: expected an integer, got {got}",
    ]


def test_a_boolean_is_not_a_number(tmp_path):
    assert problems(tmp_path, hall="number_width = true\nreadmit_after = false") == [
        "[hall] number_width: expected an integer, got boolean",
        "[hall] readmit_after: expected an integer, got boolean",
    ]
    text = hall_toml().replace('code = "640100-001-01"', 'code = "640100-001-01"\nservice_time_min = true')
    assert check_config(write(tmp_path, text), env={}) == [
        "[services.property] service_time_min: expected a number, got boolean",
    ]


def test_a_temporary_flag_must_be_a_boolean(tmp_path):
    found = problems(tmp_path, '[[windows]]\nid = "T1"\nname = "临时窗口"\n'
                               'services = ["property"]\ntemporary = "yes"\n')
    assert found == ["[windows.T1] temporary: expected a boolean (true or false), got string"]


def test_an_integer_window_id_asks_for_quotes(tmp_path):
    found = problems(tmp_path, '[[windows]]\nid = 2\nname = "2号窗口"\nservices = ["property"]\n')
    assert found == ['[windows #2] id: expected a string, got integer; quote it: id = "2"']


def test_an_integer_service_id_asks_for_quotes(tmp_path):
    found = problems(tmp_path, '[[services]]\nid = 5\nname = "社保"\nprefix = "E"\ncode = "640100-005-01"\n')
    assert found == ['[services #2] id: expected a string, got integer; quote it: id = "5"']


def test_a_services_list_must_hold_strings(tmp_path):
    found = problems(tmp_path, '[[windows]]\nid = "2"\nname = "2号窗口"\nservices = ["property", 1]\n')
    assert found == ['[windows.2] services: expected an array of strings, got integer at position 2; quote it: "1"']


def test_materials_must_be_a_list_of_strings(tmp_path):
    text = hall_toml().replace('code = "640100-001-01"\n',
                               'code = "640100-001-01"\n[services.guide]\nmaterials = "身份证"\n')
    assert check_config(write(tmp_path, text), env={}) == [
        "[services.property.guide] materials: expected an array of strings, got string",
    ]


def test_services_written_as_a_table_instead_of_an_array_of_tables(tmp_path):
    text = '[hall]\nname = "测试大厅"\n[services.property]\nname = "不动产登记"\n'
    found = check_config(write(tmp_path, text), env={})
    assert found == ["[services]: expected an array of tables — write each entry as [[services]] with an id key"]


def test_a_table_given_as_a_value_is_a_type_error(tmp_path):
    text = 'server = "127.0.0.1:8080"\n' + hall_toml()
    assert check_config(write(tmp_path, text), env={}) == ["[server]: expected a table, got string"]


# -- required keys ------------------------------------------------------------------

def test_a_hall_needs_its_name(tmp_path):
    text = hall_toml().replace('name = "测试大厅"\n', "")
    assert check_config(write(tmp_path, text), env={}) == ["[hall]: missing key 'name'"]


def test_a_file_without_a_hall_table(tmp_path):
    text = hall_toml().replace('[hall]\nname = "测试大厅"\n', "")
    assert check_config(write(tmp_path, text), env={}) == ["[hall]: missing table"]


@pytest.mark.parametrize("key", ["name", "prefix", "code"])
def test_a_service_needs_name_prefix_and_code(tmp_path, key):
    lines = {"name": 'name = "社保"', "prefix": 'prefix = "E"', "code": 'code = "640100-005-01"'}
    del lines[key]
    found = problems(tmp_path, '[[services]]\nid = "social"\n' + "\n".join(lines.values()) + "\n")
    assert found == [f"[services.social]: missing key '{key}'"]


def test_a_service_without_an_id_is_named_by_its_position(tmp_path):
    found = problems(tmp_path, '[[services]]\nname = "社保"\nprefix = "E"\ncode = "640100-005-01"\n')
    assert found == ["[services #2]: missing key 'id'"]


@pytest.mark.parametrize("key", ["name", "services"])
def test_a_window_needs_name_and_services(tmp_path, key):
    lines = {"name": 'name = "2号窗口"', "services": 'services = ["property"]'}
    del lines[key]
    found = problems(tmp_path, '[[windows]]\nid = "2"\n' + "\n".join(lines.values()) + "\n")
    assert found == [f"[windows.2]: missing key '{key}'"]


def test_a_window_without_an_id(tmp_path):
    found = problems(tmp_path, '[[windows]]\nname = "2号窗口"\nservices = ["property"]\n')
    assert found == ["[windows #2]: missing key 'id'"]


@pytest.mark.parametrize("key, value", [("name", '""'), ("code", '"  "')])
def test_blank_required_strings_are_problems(tmp_path, key, value):
    text = hall_toml().replace(f'{key} = "{"不动产登记" if key == "name" else "640100-001-01"}"',
                               f"{key} = {value}")
    assert check_config(write(tmp_path, text), env={}) == [f"[services.property] {key}: must not be empty"]


# -- ids, prefixes and references ---------------------------------------------------

def test_two_services_with_one_id(tmp_path):
    found = problems(tmp_path, '[[services]]\nid = "property"\nname = "不动产"\nprefix = "B"\ncode = "x"\n')
    assert found == ["[services #2] id: duplicate service id 'property' (entry 1 has it too)"]


def test_two_windows_with_one_id(tmp_path):
    found = problems(tmp_path, '[[windows]]\nid = "1"\nname = "一号"\nservices = []\n')
    assert found == [
        "[windows #2] id: duplicate window id '1' (entry 1 has it too)",
        "[windows #2] services: is empty; a window must serve at least one service",
    ]


def test_two_services_with_one_prefix(tmp_path):
    found = problems(tmp_path, '[[services]]\nid = "business"\nname = "企业开办"\nprefix = "A"\ncode = "x"\n')
    assert found == ["[services.business] prefix: 'A' is already used by service 'property'"]


@pytest.mark.parametrize("prefix", ["B", "Z", "AB", "ZZ"])
def test_a_prefix_of_one_or_two_uppercase_letters_is_accepted(tmp_path, prefix):
    config = load(tmp_path, f'[[services]]\nid = "s"\nname = "事项"\nprefix = "{prefix}"\ncode = "x"\n')
    assert config.service("s").prefix == prefix


@pytest.mark.parametrize("prefix", ["b", "ABC", "1", "A1", "Ä", "Ａ"])
def test_any_other_prefix_is_refused(tmp_path, prefix):
    found = problems(tmp_path, f'[[services]]\nid = "s"\nname = "事项"\nprefix = "{prefix}"\ncode = "x"\n')
    assert found == [f"[services.s] prefix: '{prefix}' must be 1 or 2 uppercase letters A-Z"]


def test_a_window_naming_an_unknown_service(tmp_path):
    found = problems(tmp_path, '[[windows]]\nid = "2"\nname = "2号窗口"\nservices = ["propery"]\n')
    assert found == ["[windows.2] services: unknown service 'propery' (did you mean 'property'?)"]


def test_a_window_naming_a_service_twice(tmp_path):
    found = problems(tmp_path, '[[windows]]\nid = "2"\nname = "2号窗口"\nservices = ["property", "property"]\n')
    assert found == ["[windows.2] services: 'property' is listed twice"]


def test_a_window_with_an_empty_services_list(tmp_path):
    found = problems(tmp_path, '[[windows]]\nid = "T1"\nname = "临时窗口"\nservices = []\ntemporary = true\n')
    assert found == ["[windows.T1] services: is empty; a window must serve at least one service"]


BOARD = '[devices.board_2]\ndriver = "modbus_digits"\nport = "/dev/ttyUSB1"\nunit = 2\n'


def test_a_window_with_its_call_board(tmp_path):
    config = load(tmp_path, '[[windows]]\nid = "2"\nname = "2号窗口"\nservices = ["property"]\n'
                            'board = "board_2"\n' + BOARD)
    assert config.window("2").board == "board_2"
    assert config.devices["board_2"].options == {"port": "/dev/ttyUSB1", "unit": 2}


def test_a_window_naming_an_unknown_board(tmp_path):
    found = problems(tmp_path, '[[windows]]\nid = "2"\nname = "2号窗口"\nservices = ["property"]\n'
                               'board = "board_3"\n' + BOARD)
    assert found == ["[windows.2] board: unknown device 'board_3' (did you mean 'board_2'?)"]


def test_a_window_whose_board_is_not_a_board(tmp_path):
    found = problems(tmp_path, '[[windows]]\nid = "2"\nname = "2号窗口"\nservices = ["property"]\n'
                               'board = "voice"\n[devices.voice]\ndriver = "voice"\n')
    assert found == ["[windows.2] board: device 'voice' is a voice device, "
                     "not a call board (framed_text or modbus_digits)"]


TEXT_BOARD = """[devices.{id}]
driver = "framed_text"
port = "tty-hall"
address = {address}
{more}
[devices.{id}.frame]
layout = ["header", "address", "command", "text", "checksum", "trailer"]
header = "AA 55"
command = "31"
checksum = "xor8"
trailer = "0D"
"""


def text_board(device_id: str, address: int = 1, more: str = "") -> str:
    return TEXT_BOARD.format(id=device_id, address=address, more=more)


def test_a_hall_board_cannot_hang_over_a_window(tmp_path):
    found = problems(tmp_path, '[[windows]]\nid = "2"\nname = "2号窗口"\nservices = ["property"]\n'
                               'board = "hall"\n' + text_board("hall", more='shows = "hall"'))
    assert found == ["[windows.2] board: device 'hall' shows the hall's latest calls "
                     "(shows = \"hall\"), not one window's"]


def test_one_board_over_two_windows(tmp_path):
    window = '[[windows]]\nid = "{0}"\nname = "{0}号窗口"\nservices = ["property"]\nboard = "board_2"\n'
    found = problems(tmp_path, window.format(2) + window.format(3) + BOARD)
    assert found == ["[windows.3] board: device 'board_2' is already the board of window 2"]


def test_boards_on_one_cable_need_addresses_of_their_own(tmp_path):
    found = problems(tmp_path, text_board("strip_1", 3) + text_board("strip_2", 3)
                     + BOARD + BOARD.replace("board_2", "board_3"))
    assert found == [
        f"[devices.strip_2] address: 3 on {tmp_path / 'tty-hall'} is also strip_1's; every "
        "device on a cable needs its own",
        "[devices.board_3] unit: 2 on /dev/ttyUSB1 is also board_2's; every device on a "
        "cable needs its own"]


def test_boards_on_one_cable_agree_on_its_settings_and_its_protocol(tmp_path):
    found = problems(tmp_path, text_board("strip_1", 1, "baudrate = 19200")
                     + text_board("strip_2", 3)
                     + BOARD.replace("/dev/ttyUSB1", "tty-hall"))
    port = tmp_path / "tty-hall"
    assert found == [
        f"[devices.strip_2] port: {port} is shared with strip_1 but its line settings differ; "
        "give both the same baudrate, bytesize, parity and stopbits",
        f"[devices.board_2] port: {port} is also strip_1's port, a framed_text device; one "
        "bus speaks one protocol"]


def test_a_board_timeout_shorter_than_its_slowest_write(tmp_path):
    more = 'lines = 4\ntimeout = 2\nreply_timeout = 0.5\n'
    board = text_board("hall", 1, more).replace('"command", "text"', '"command", "line", "text"')
    found = problems(tmp_path, board + 'ack = "06"\n')
    assert found == ["[devices.hall] timeout: 2 s is shorter than one write to this board may "
                     "take (6 s: every try of every frame); raise timeout or lower retries or "
                     "reply_timeout"]


@pytest.mark.parametrize("window_id", ["12", "T1", "vip-1", "a_b"])
def test_window_ids_are_plain_names(tmp_path, window_id):
    config = load(tmp_path, f'[[windows]]\nid = "{window_id}"\nname = "窗口"\nservices = ["property"]\n')
    assert config.window(window_id) is not None


@pytest.mark.parametrize("window_id", ["", "3 号", "a/b", "三"])
def test_window_ids_with_other_characters_are_refused(tmp_path, window_id):
    found = problems(tmp_path, f'[[windows]]\nid = "{window_id}"\nname = "窗口"\nservices = ["property"]\n')
    assert found == [f"[windows #2] id: window id '{window_id}' may only contain "
                     "letters A-Z a-z, digits, '_' and '-'"]


# -- [hall] and [server] ranges -----------------------------------------------------

def test_a_time_zone_must_exist(tmp_path):
    assert problems(tmp_path, hall='timezone = "Asia/Shangai"') == [
        "[hall] timezone: unknown time zone 'Asia/Shangai' (did you mean 'Asia/Shanghai'?)",
    ]
    assert problems(tmp_path, hall='timezone = "../../etc/passwd"') == [
        "[hall] timezone: unknown time zone '../../etc/passwd'",
    ]
    assert load(tmp_path, hall='timezone = "Asia/Urumqi"').hall.timezone == "Asia/Urumqi"


@pytest.mark.parametrize("port", [1, 8080, 65535])
def test_a_port_in_range(tmp_path, port):
    assert load(tmp_path, f"[server]\nhost = '0.0.0.0'\nport = {port}\n").server == Server("0.0.0.0", port)


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_a_port_out_of_range(tmp_path, port):
    assert problems(tmp_path, f"[server]\nport = {port}\n") == [
        f"[server] port: {port} is out of range; expected 1 to 65535",
    ]


@pytest.mark.parametrize("width, ok", [(0, False), (1, True), (6, True), (7, False)])
def test_number_width_is_one_to_six_digits(tmp_path, width, ok):
    found = problems(tmp_path, hall=f"number_width = {width}")
    assert found == ([] if ok else [f"[hall] number_width: {width} is out of range; expected 1 to 6"])


@pytest.mark.parametrize("key", ["readmit_within_min", "readmit_after"])
def test_readmission_settings_may_be_zero_but_not_negative(tmp_path, key):
    assert getattr(load(tmp_path, hall=f"{key} = 0").hall, key) == 0
    assert problems(tmp_path, hall=f"{key} = -1") == [f"[hall] {key}: -1 is out of range; expected at least 0"]


@pytest.mark.parametrize("minutes, ok", [(0, False), (-2.5, False), (0.5, True), (7, True)])
def test_service_time_must_be_positive(tmp_path, minutes, ok):
    text = hall_toml().replace('code = "640100-001-01"', f'code = "640100-001-01"\nservice_time_min = {minutes}')
    found = check_config(write(tmp_path, text), env={})
    expected = f"[services.property] service_time_min: {minutes} is out of range; expected a number greater than 0"
    assert found == ([] if ok else [expected])


# -- ${VAR} expansion ---------------------------------------------------------------

AUTH = """
[auth]
kiosk = ["${KIOSK_TOKEN}"]
technician = ["tech-${SITE}-1"]
supervisor = ["${SUPERVISOR_TOKEN}", "backup"]
[auth.windows]
"1" = ["${WINDOW_1_TOKEN}"]
"""


def test_tokens_come_from_the_environment(tmp_path):
    env = {"KIOSK_TOKEN": "k-secret", "SITE": "yc", "SUPERVISOR_TOKEN": "s-secret", "WINDOW_1_TOKEN": "w1"}
    auth = load(tmp_path, AUTH, env=env).auth
    assert auth.kiosk == ("k-secret",)
    assert auth.technician == ("tech-yc-1",)
    assert auth.supervisor == ("s-secret", "backup")
    assert auth.windows == {"1": ("w1",)}


def test_every_unset_variable_is_reported(tmp_path):
    assert problems(tmp_path, AUTH, env={"SITE": "yc"}) == [
        "[auth] kiosk: ${KIOSK_TOKEN} is not set",
        "[auth] supervisor: ${SUPERVISOR_TOKEN} is not set",
        "[auth.windows] 1: ${WINDOW_1_TOKEN} is not set",
    ]


def test_os_environ_is_the_default_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KIOSKD_TEST_HALL", "环境大厅")
    path = write(tmp_path, hall_toml().replace('name = "测试大厅"', 'name = "${KIOSKD_TEST_HALL}"'))
    assert load_config(path).hall.name == "环境大厅"
    monkeypatch.delenv("KIOSKD_TEST_HALL")
    assert check_config(path) == ["[hall] name: ${KIOSKD_TEST_HALL} is not set"]


def test_variables_expand_in_device_options_and_data_dir(tmp_path):
    config = load(tmp_path, '[devices.printer_1]\ndriver = "escpos"\nconnection = "tcp://${PRINTER_HOST}:9100"\n'
                            'profile = "${PAPER}"\n[devices.voice]\ndriver = "voice"\nplayer = ["${PLAYER}", "-q"]\n',
                  hall='data_dir = "${STATE}/kioskd"',
                  env={"PRINTER_HOST": "10.0.0.7", "PAPER": "58mm", "STATE": "/srv",
                       "PLAYER": "aplay"})
    printer = config.devices["printer_1"]
    assert printer.options == {"connection": "tcp://${PRINTER_HOST}:9100", "profile": "${PAPER}"}
    assert printer.settings.connection.host == "10.0.0.7"
    assert printer.settings.profile.chars_per_line == 32
    assert config.devices["voice"].settings.player == ("aplay", "-q")
    assert config.hall.data_dir == Path("/srv/kioskd")
    assert problems(tmp_path, '[devices.p]\ndriver = "escpos"\nconnection = "${PRINTER_URL}"\n') == [
        "[devices.p] connection: ${PRINTER_URL} is not set",
    ]


def test_a_literal_dollar_brace_and_a_malformed_reference(tmp_path):
    hall = load(tmp_path, hall='data_dir = "$${NOT_EXPANDED}"', env={"NOT_EXPANDED": "x"}).hall
    assert hall.data_dir == tmp_path / "${NOT_EXPANDED}"
    assert problems(tmp_path, "[auth]\nkiosk = ['${ KIOSK }']\n") == [
        "[auth] kiosk: malformed ${...}: write ${NAME} with letters, digits and '_' (or $${ for a literal ${)",
    ]


def test_a_variable_set_to_nothing_is_not_a_token(tmp_path):
    assert problems(tmp_path, "[auth]\nkiosk = ['${KIOSK_TOKEN}']\n", env={"KIOSK_TOKEN": ""}) == [
        "[auth] kiosk: empty token (an unset or empty variable?)",
    ]


_toml_safe_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1,
).filter(lambda s: s.strip() and "${" not in s)


@given(name=_toml_safe_text)
def test_text_without_a_reference_passes_through_unchanged(name):
    text = hall_toml().replace('name = "测试大厅"', "name = " + json.dumps(name, ensure_ascii=False))
    assert loads_config(text, env={}).hall.name == name


# -- [auth.windows] -----------------------------------------------------------------

def test_a_clerk_token_for_a_window_that_does_not_exist(tmp_path):
    assert problems(tmp_path, '[auth.windows]\n"1" = ["w1"]\n"10" = ["w10"]\n') == [
        "[auth.windows] 10: unknown window '10'",
    ]


def test_tokens_must_be_lists_of_strings(tmp_path):
    assert problems(tmp_path, '[auth]\nkiosk = "secret"\n') == [
        "[auth] kiosk: expected an array of strings, got string",
    ]


# -- devices ------------------------------------------------------------------------

def test_the_known_drivers():
    assert KNOWN_DRIVERS == {"escpos", "modbus_digits", "framed_text", "voice", "keypad", "terminal"}


def test_a_device_needs_a_known_driver(tmp_path):
    assert problems(tmp_path, '[devices.printer_1]\nconnection = "tcp://127.0.0.1:9100"\n') == [
        "[devices.printer_1]: missing key 'driver'",
    ]
    assert problems(tmp_path, '[devices.printer_1]\ndriver = "escpo"\n') == [
        "[devices.printer_1] driver: unknown driver 'escpo' (did you mean 'escpos'?); "
        "known drivers: escpos, framed_text, keypad, modbus_digits, terminal, voice",
    ]


def test_device_options_are_kept_as_written_until_the_drivers_check_them(tmp_path):
    config = load(tmp_path, '[devices.voice]\ndriver = "voice"\nengine = "pyttsx3"\nplayer = ["aplay", "-q"]\n')
    assert config.devices["voice"].options == {"engine": "pyttsx3", "player": ["aplay", "-q"]}
    assert config.devices["voice"].settings.speech.engine == "pyttsx3"


@pytest.mark.parametrize("device_id", ["kiosk 1", "打印机", "a.b"])
def test_a_device_id_is_letters_digits_underscore_and_dash(tmp_path, device_id):
    found = problems(tmp_path, f'[devices."{device_id}"]\ndriver = "escpos"\nconnection = "tcp://p"\n')
    assert found == [f"[devices.\"{device_id}\"]: device id '{device_id}' may only contain "
                     "letters A-Z a-z, digits, '_' and '-'"]


PRINTERS = ('[devices.printer_1]\ndriver = "escpos"\nconnection = "tcp://10.0.0.7"\n'
            '[devices.printer_2]\ndriver = "escpos"\nconnection = "usb://04b8:0e15"\n')


def test_a_terminal_with_its_printer_and_a_fallback(tmp_path):
    config = load(tmp_path, PRINTERS + '[devices.kiosk_1]\ndriver = "terminal"\nprinter = "printer_1"\n'
                                       'fallback_printer = "printer_2"\n')
    assert config.devices["kiosk_1"].options == {"printer": "printer_1", "fallback_printer": "printer_2",
                                                 "offline_after_s": 15.0}


def test_a_terminal_needs_a_printer(tmp_path):
    assert problems(tmp_path, PRINTERS + '[devices.kiosk_1]\ndriver = "terminal"\n') == [
        "[devices.kiosk_1]: missing key 'printer'",
    ]


def test_a_terminal_naming_printers_that_do_not_exist_or_are_not_printers(tmp_path):
    found = problems(tmp_path, PRINTERS + BOARD + '[devices.kiosk_1]\ndriver = "terminal"\n'
                                                  'printer = "printr_1"\nfallback_printer = "board_2"\n')
    assert found == [
        "[devices.kiosk_1] printer: unknown device 'printr_1' (did you mean 'printer_1'?)",
        "[devices.kiosk_1] fallback_printer: device 'board_2' is a modbus_digits device, not an escpos printer",
    ]


def test_a_terminal_whose_fallback_is_its_own_printer(tmp_path):
    found = problems(tmp_path, PRINTERS + '[devices.kiosk_1]\ndriver = "terminal"\nprinter = "printer_1"\n'
                                          'fallback_printer = "printer_1"\n')
    assert found == ["[devices.kiosk_1] fallback_printer: is the same device as printer"]


def test_a_reference_to_a_broken_device_reports_only_the_device(tmp_path):
    found = problems(tmp_path, '[devices.printer_1]\ndriver = "thermal"\n'
                               '[devices.kiosk_1]\ndriver = "terminal"\nprinter = "printer_1"\n')
    assert len(found) == 1 and found[0].startswith("[devices.printer_1] driver: unknown driver 'thermal'")


# -- data_dir -----------------------------------------------------------------------

def test_data_dir_is_relative_to_the_config_file_not_the_working_directory(tmp_path, monkeypatch):
    write(tmp_path, hall_toml(hall='data_dir = "state"'), name="etc/kioskd/devices.toml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("..") / "etc" / "kioskd" / "devices.toml", env={})
    assert config.hall.data_dir == tmp_path / "etc" / "kioskd" / "state"
    assert config.path == (elsewhere / ".." / "etc" / "kioskd" / "devices.toml").absolute()


def test_data_dir_may_climb_out_of_the_config_folder_or_be_absolute(tmp_path):
    path = write(tmp_path, hall_toml(hall='data_dir = "../var/lib/kioskd"'), name="etc/devices.toml")
    assert load_config(path, env={}).hall.data_dir == tmp_path / "var" / "lib" / "kioskd"
    path = write(tmp_path, hall_toml(hall='data_dir = "/var/lib/kioskd"'), name="etc/devices.toml")
    assert load_config(path, env={}).hall.data_dir == Path("/var/lib/kioskd")


def test_a_reference_to_a_broken_service_or_window_reports_only_the_entry(tmp_path):
    found = problems(tmp_path, '[[services]]\nid = 5\nname = "社保"\nprefix = "E"\ncode = "x"\n'
                               '[[windows]]\nid = 2\nname = "2号窗口"\nservices = ["property", "5"]\n'
                               '[auth.windows]\n"2" = ["clerk-2"]\n')
    assert found == [
        '[services #2] id: expected a string, got integer; quote it: id = "5"',
        '[windows #2] id: expected a string, got integer; quote it: id = "2"',
    ]


# -- a ticket printer's own options (read by the escpos driver's configure) ---------------

def test_a_printer_with_every_option(tmp_path):
    config = load(tmp_path, '[devices.p]\ndriver = "escpos"\n'
                            'connection = "serial:///dev/ttyS0?baudrate=19200"\n'
                            'encoding = "gbk"\nprofile = "58mm-image"\ntimeout = 1.5\n'
                            'poll_interval = 10\nretry_limit = 5\nenabled = false\n')
    printer = config.devices["p"]
    assert (printer.timeout, printer.poll_interval, printer.retry_limit, printer.enabled) == \
        (1.5, 10.0, 5, False)
    assert printer.settings.connection.kind == "serial"
    assert printer.settings.encoding == "gbk"
    assert printer.settings.profile.qr == "image"
    assert printer.settings.emulate is False


@pytest.mark.parametrize("options, expected", [
    ('', "[devices.p]: missing key 'connection'"),
    ('connection = "lpt://1"', "[devices.p] connection: "),
    ('connection = "tcp://10.0.0.7:99999"', "[devices.p] connection: "),
    ('connection = "usb://04b8"', "[devices.p] connection: "),
    ('connection = "tcp://p"\nencoding = "utf-8"', "[devices.p] encoding: 'utf-8' is not one of gb18030, gbk"),
    ('connection = "tcp://p"\nprofile = "76mm"', "[devices.p] profile: unknown profile '76mm'"),
    ('connection = "tcp://p"\nbaud = 9600', "[devices.p]: unknown key 'baud'"),
    ('connection = "tcp://p"\ntimeout = 0', "[devices.p] timeout: 0 is out of range"),
    ('connection = "tcp://p"\nretry_limit = -1', "[devices.p] retry_limit: -1 is out of range"),
    ('connection = "tcp://10.0.0.7:9100"\nemulate = true', "[devices.p] emulate: an emulated printer "
                                                          "listens on a loopback TCP address"),
    ('connection = "usb://04b8:0e15"\nemulate = true', "[devices.p] emulate: "),
])
def test_a_printer_option_that_is_wrong_is_named(tmp_path, options, expected):
    found = problems(tmp_path, f'[devices.p]\ndriver = "escpos"\n{options}\n')
    assert len(found) == 1 and found[0].startswith(expected), found


def test_a_board_flash_time_is_not_negative(tmp_path):
    found = problems(tmp_path, text_board("hall", 1, 'shows = "hall"\nflash_s = -0.5\n'))
    assert found == ["[devices.hall] flash_s: -0.5 is out of range; expected 0 (never flash) "
                     "or more seconds"]


# -- [[categories]]: the kiosk's groups of services ------------------------------------

def test_categories_group_services_for_the_kiosk_in_file_order(tmp_path):
    config = load_config(write(tmp_path, hall_toml("""
        [[categories]]
        id = "realty"
        name = "不动产"
        name_en = "Real estate"
        services = ["property"]
        """)), env={})
    assert [(c.id, c.name, c.name_en, c.services) for c in config.categories] == [
        ("realty", "不动产", "Real estate", ("property",))]


def test_a_category_names_known_services_each_once_and_at_least_one(tmp_path):
    found = problems(tmp_path, """
        [[categories]]
        id = "a"
        name = "甲"
        services = ["property", "propery"]

        [[categories]]
        id = "b"
        name = "乙"
        services = ["property"]

        [[categories]]
        id = "c"
        services = []

        [[categories]]
        id = "a"
        name = "重复"
        services = []
        """)
    assert any("[categories.a] services: unknown service 'propery'" in p and "property" in p
               for p in found), found
    assert any("[categories.b] services: service 'property' is already in category 'a'" in p
               for p in found), found
    assert any("[categories.c]: missing key 'name'" in p for p in found), found
    assert any("[categories.c] services: lists no service" in p for p in found), found
    assert any("duplicate category id 'a'" in p for p in found), found


def test_a_terminal_says_how_long_its_page_may_be_silent(tmp_path):
    printer = '[devices.p]\ndriver = "escpos"\nconnection = "tcp://127.0.0.1:9100"\n'
    config = load_config(write(tmp_path, hall_toml(
        printer + '[devices.k]\ndriver = "terminal"\nprinter = "p"\noffline_after_s = 30\n')), env={})
    assert config.devices["k"].options["offline_after_s"] == 30
    found = problems(tmp_path, printer + '[devices.k]\ndriver = "terminal"\nprinter = "p"\n'
                                         'offline_after_s = 0\n')
    assert any("[devices.k] offline_after_s" in p for p in found), found


# -- supervision: [alerts], [services.alerts], [appointments], [evaluation], [audit] ------

def test_supervision_has_defaults_a_hall_can_run_with(tmp_path):
    config = load(tmp_path)
    assert (config.alerts.check_every_s, config.alerts.pause_min,
            config.alerts.device_offline_s) == (5.0, 15.0, 60.0)
    limits = config.service("property").thresholds
    assert (limits.wait_min, limits.serve_min, limits.waiting_per_window) == (30.0, 30.0, 10.0)
    assert (config.appointments.check_in_before_min,
            config.appointments.check_in_after_min) == (15, 30)
    assert config.evaluation.within_s == 120.0 and config.audit.retention_days == 180
    assert config.auth.booking == () and config.auth.evaluator == ()


def test_a_service_overrides_the_halls_thresholds_key_by_key_and_0_turns_one_off(tmp_path):
    config = load(tmp_path, """
        [alerts]
        wait_min = 20
        waiting_per_window = 8
        pause_min = 0

        [services.alerts]
        wait_min = 45
        serve_min = 0
        """)
    limits = config.service("property").thresholds
    assert (limits.wait_min, limits.serve_min, limits.waiting_per_window) == (45.0, 0.0, 8.0)
    assert config.alerts.pause_min == 0.0


def test_supervision_mistakes_name_their_table_and_key(tmp_path):
    found = problems(tmp_path, """
        [alerts]
        wait_min = -5
        check_every_s = 0
        pause_minutes = 10

        [services.alerts]
        serve_min = "long"
        wait = 3

        [appointments]
        check_in_before_min = -1

        [evaluation]
        within_s = 0

        [audit]
        retention_days = 90
        """)
    expected = ["[alerts] wait_min", "[alerts] check_every_s", "[alerts]: unknown key 'pause_minutes'",
                "serve_min: expected a number", "unknown key 'wait'",
                "[appointments] check_in_before_min", "[evaluation] within_s",
                "[audit] retention_days"]
    for words in expected:
        assert any(words in p for p in found), (words, found)
    assert len(found) == len(expected), found


def test_a_tokens_env_beside_the_file_fills_its_variables_the_environment_wins(
        tmp_path: Path, monkeypatch):
    """As systemd's EnvironmentFile= reads it: comments, quotes, `export`."""
    monkeypatch.delenv("KIOSK_T", raising=False)
    monkeypatch.delenv("SUPER_T", raising=False)
    (tmp_path / "tokens.env").write_text(
        "# the hall's tokens\n\nexport KIOSK_T=from-file\nSUPER_T=\"quoted value\"\n"
        "not a line\n; also a comment\n", encoding="utf-8")
    (tmp_path / "tokens.env").chmod(0o640)
    assert read_env_file(tmp_path / "tokens.env") == {"KIOSK_T": "from-file",
                                                      "SUPER_T": "quoted value"}
    path = write(tmp_path, hall_toml('[auth]\nkiosk = ["${KIOSK_T}"]\n'
                                     'supervisor = ["${SUPER_T}"]\n'))
    config = load_config(path)
    assert config.auth.kiosk == ("from-file",) and config.auth.supervisor == ("quoted value",)
    monkeypatch.setenv("KIOSK_T", "from-env")
    assert load_config(path).auth.kiosk == ("from-env",)
    # an explicit env is the whole truth: the file is not read
    with pytest.raises(ConfigError, match="KIOSK_T"):
        load_config(path, env={})
    assert read_env_file(tmp_path / "missing.env") == {}


@pytest.mark.parametrize("mode, word", [(0o644, "read"), (0o604, "read"), (0o662, "change")])
def test_a_tokens_env_any_user_may_read_or_change_is_refused(tmp_path: Path, mode, word):
    (tmp_path / "tokens.env").write_text("KIOSK_T=secret-kiosk-token\n", encoding="utf-8")
    (tmp_path / "tokens.env").chmod(mode)
    path = write(tmp_path, hall_toml('[auth]\nkiosk = ["${KIOSK_T}"]\n'))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = caught.value.problems
    assert f"tokens.env: every user of this PC can {word} it (mode {mode:04o})" in problem
    assert "chmod 640" in problem and "secret-kiosk-token" not in problem
    (tmp_path / "tokens.env").chmod(0o640)                   # the group (kioskd) may read it
    assert load_config(path).auth.kiosk == ("secret-kiosk-token",)


def test_tokens_written_in_a_file_every_user_may_read_are_named(tmp_path: Path):
    from kioskd.config import exposed_tokens
    path = write(tmp_path, hall_toml('[auth]\nkiosk = ["written-kiosk-token"]\n'
                                     'supervisor = ["${SUPER_T}"]\n'
                                     '[auth.windows]\n"1" = ["written-window-token"]\n'))
    path.chmod(0o644)
    warnings = exposed_tokens(load_config(path, env={"SUPER_T": "from-env"}))
    assert [w.split(":")[0] for w in warnings] == ["[auth] kiosk", "[auth.windows] 1"]
    assert all("every user of this PC can read it (mode 0644)" in w and "tokens.env" in w
               for w in warnings)
    assert not any("written-" in w for w in warnings)
    path.chmod(0o640)
    assert exposed_tokens(load_config(path, env={"SUPER_T": "from-env"})) == []
