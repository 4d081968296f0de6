"""The byte links to a ticket printer: connection strings, and each transport's
writes, reads, timeouts, hang-ups and busy devices.

TCP runs over real loopback sockets, serial over a real pseudo-terminal pair and
pyserial's loop://, files over real files and FIFOs. USB runs against faked pyusb
(`usb.core.find` and two `usb.util` calls monkeypatched): no USB transport exists in
CI, so those tests check what the link asks of pyusb and how it reads its answers.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import termios
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest
import usb.core
import usb.util

from drivers.base import DeviceBusy, DeviceError, DeviceTimeout, DeviceUnavailable
from drivers.escpos.connection import Connection, SerialSettings, parse_connection
from drivers.escpos.transport import Link, open_link

INIT = b"\x1b@"                       # ESC @: what every job starts with
STATUS = b"\x10\x04\x01"              # DLE EOT 1: "how are you?"


def elapsed_while(action) -> float:
    start = time.monotonic()
    action()
    return time.monotonic() - start


def raises_after(error: type[Exception], action) -> tuple[pytest.ExceptionInfo, float]:
    start = time.monotonic()
    with pytest.raises(error) as raised:
        action()
    return raised, time.monotonic() - start


# ---------------------------------------------------------------------------
# connection strings
# ---------------------------------------------------------------------------

ACCEPTED = [
    ("tcp://10.0.0.5:9100", dict(kind="tcp", host="10.0.0.5", port=9100)),
    ("tcp://printer-1.hall.local", dict(kind="tcp", host="printer-1.hall.local", port=9100)),
    ("tcp://127.0.0.1:4242", dict(kind="tcp", host="127.0.0.1", port=4242)),
    ("serial:///dev/ttyUSB0", dict(kind="serial", device="/dev/ttyUSB0",
                                   serial_settings=SerialSettings())),
    ("serial:///dev/ttyUSB0?baudrate=19200&bytesize=8&parity=N&stopbits=1&rtscts=0",
     dict(kind="serial", device="/dev/ttyUSB0", serial_settings=SerialSettings(baudrate=19200))),
    ("serial:///dev/ttyS1?baudrate=38400&bytesize=7&parity=e&stopbits=2&rtscts=1&xonxoff=true",
     dict(kind="serial", device="/dev/ttyS1", serial_settings=SerialSettings(
         baudrate=38400, bytesize=7, parity="E", stopbits=2, rtscts=True, xonxoff=True))),
    ("serial:///dev/serial/by-id/usb-FTDI_FT232R-if00-port0?dsrdtr=1",
     dict(kind="serial", device="/dev/serial/by-id/usb-FTDI_FT232R-if00-port0",
          serial_settings=SerialSettings(dsrdtr=True))),
    # pyserial URLs: our line options are taken out, pyserial's own stay in the URL
    ("rfc2217://10.0.0.7:4001?baudrate=19200&logging=debug",
     dict(kind="serial", device="rfc2217://10.0.0.7:4001?logging=debug",
          serial_settings=SerialSettings(baudrate=19200))),
    ("socket://10.0.0.8:7000", dict(kind="serial", device="socket://10.0.0.8:7000",
                                    serial_settings=SerialSettings())),
    ("loop://", dict(kind="serial", device="loop://", serial_settings=SerialSettings())),
    ("usb://04b8:0e15", dict(kind="usb", vendor_id=0x04B8, product_id=0x0E15, interface=None)),
    ("usb://0FE6:811E?interface=1", dict(kind="usb", vendor_id=0x0FE6, product_id=0x811E,
                                         interface=1)),
    ("file:///dev/usb/lp0", dict(kind="file", device="/dev/usb/lp0")),
]


@pytest.mark.parametrize("text, fields", ACCEPTED, ids=[text for text, _ in ACCEPTED])
def test_a_well_formed_connection_parses_into_its_parameters(text, fields):
    connection = parse_connection(text)

    assert connection.text == text
    assert {key: getattr(connection, key) for key in fields} == fields


REJECTED = [
    ("10.0.0.5:9100", "is not a connection; expected tcp://"),
    ("", "is not a connection"),
    ("lpt://1", "unknown scheme 'lpt://'"),
    ("http://10.0.0.5", "unknown scheme 'http://'"),
    ("tcp://10.0.0.5:", "missing port after ':'"),
    ("tcp://:9100", "missing host"),
    ("tcp://10.0.0.5:http", "port 'http' is not a number from 1 to 65535"),
    ("tcp://10.0.0.5:0", "port '0' is not a number from 1 to 65535"),
    ("tcp://10.0.0.5:70000", "port '70000' is not a number"),
    ("tcp://10.0.0.5:9100/print", "nothing after it"),
    ("tcp://10.0.0.5:9100?timeout=3", "nothing after it"),
    ("tcp://[::1]:9100", "IPv6 addresses are not supported"),
    ("serial://dev/ttyUSB0", "after three slashes, as in serial:///dev/ttyUSB0"),
    ("serial:///", "missing device path"),
    ("serial:///dev/ttyUSB0?baud=9600", "unknown serial option 'baud'; known: baudrate,"),
    ("serial:///dev/ttyUSB0?baudrate=fast", "bad baudrate 'fast', expected bits per second"),
    ("serial:///dev/ttyUSB0?baudrate=0", "bad baudrate '0'"),
    ("serial:///dev/ttyUSB0?baudrate=-9600", "bad baudrate '-9600'"),
    ("serial:///dev/ttyUSB0?baudrate=", "option 'baudrate=' has no value"),
    ("serial:///dev/ttyUSB0?baudrate=9600&baudrate=19200", "baudrate is given twice"),
    ("serial:///dev/ttyUSB0?bytesize=9", "bad bytesize '9', expected 5, 6, 7 or 8"),
    ("serial:///dev/ttyUSB0?parity=X", "bad parity 'X', expected N, E, O, M or S"),
    ("serial:///dev/ttyUSB0?stopbits=3", "bad stopbits '3', expected 1, 1.5 or 2"),
    ("serial:///dev/ttyUSB0?rtscts=maybe", "bad rtscts 'maybe', expected 0 or 1"),
    ("rfc2217://10.0.0.7:4001?baudrate=fast", "bad baudrate 'fast'"),
    ("usb://4b8:e15", "expected usb://VID:PID with four hex digits each"),
    ("usb://04b8-0e15", "expected usb://VID:PID"),
    ("usb://epson:tm88", "expected usb://VID:PID"),
    ("usb://04b8:0e15/1", "expected usb://VID:PID"),
    ("usb://04b8:0e15?iface=0", "unknown usb option 'iface'; known: interface"),
    ("usb://04b8:0e15?interface=one", "bad interface 'one', expected a number from 0 to 255"),
    ("usb://04b8:0e15?interface=256", "bad interface '256'"),
    ("file://dev/usb/lp0", "expected an absolute path after three slashes"),
    ("file:///dev/usb/lp0?sync=1", "a file connection takes no options"),
    ("tcp://10.0.0.5:9100#front", "a connection has no '#' part"),
]


@pytest.mark.parametrize("text, message", REJECTED, ids=[text or "empty" for text, _ in REJECTED])
def test_a_malformed_connection_is_refused_in_one_line_that_quotes_it(text, message):
    with pytest.raises(ValueError) as raised:
        parse_connection(text)

    assert message in str(raised.value)
    assert repr(text) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_parsing_opens_nothing():
    """`kioskd check` parses connections on a machine without the printers."""
    assert parse_connection("serial:///dev/ttyNOSUCH9").device == "/dev/ttyNOSUCH9"
    assert parse_connection("usb://ffff:fffe").vendor_id == 0xFFFF
    assert parse_connection("file:///nonexistent/lp0").device == "/nonexistent/lp0"


# ---------------------------------------------------------------------------
# TCP: a real loopback socket stands in for the printer's port 9100
# ---------------------------------------------------------------------------

@pytest.fixture
def tcp_printer() -> Iterator[tuple[Link, socket.socket]]:
    """An open link and the printer's end of it. The kernel completes the handshake
    for a listening socket, so accept() needs no thread."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)
        link = open_link(parse_connection(f"tcp://127.0.0.1:{listener.getsockname()[1]}"), 2.0)
        printer, _ = listener.accept()
        printer.settimeout(5)
        yield link, printer
        link.close()
        printer.close()


def receive(printer: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = printer.recv(n - len(data))
        assert chunk, "the link closed the connection"
        data += chunk
    return data


def test_tcp_a_job_arrives_whole(tcp_printer):
    link, printer = tcp_printer
    job = INIT + bytes(range(256)) * 80 + b"\x1dV\x00"      # ~20 KB, a ticket with a logo

    link.write(job)

    assert receive(printer, len(job)) == job


def test_tcp_read_returns_exactly_the_bytes_asked_for_across_segments(tcp_printer):
    link, printer = tcp_printer
    printer.sendall(b"\x16")
    printer.sendall(b"\x12\x7e")

    assert link.read(2) == b"\x16\x12"
    assert link.read(1) == b"\x7e"


def test_tcp_a_silent_printer_times_out_promptly(tcp_printer):
    link, printer = tcp_printer
    link.write(STATUS)

    raised, took = raises_after(DeviceTimeout, lambda: link.read(1, timeout=0.1))

    assert 0.05 < took < 1.0
    port = printer.getsockname()[1]
    assert str(raised.value) == f"no reply from 127.0.0.1:{port} within 0.1 s (got 0 of 1 bytes)"


def test_tcp_a_printer_that_hangs_up_is_unavailable_on_read_at_once(tcp_printer):
    link, printer = tcp_printer
    printer.close()

    raised, took = raises_after(DeviceUnavailable, lambda: link.read(1))

    assert not isinstance(raised.value, DeviceTimeout)
    assert took < 1.0                                          # not the link's 2 s timeout
    assert "closed the connection" in str(raised.value)
    with pytest.raises(DeviceUnavailable, match="closed the connection"):
        link.drain()


def test_tcp_a_printer_that_hangs_up_is_unavailable_on_write(tcp_printer):
    link, printer = tcp_printer
    printer.close()
    deadline = time.monotonic() + 2

    with pytest.raises(DeviceUnavailable) as raised:
        while time.monotonic() < deadline:
            link.write(INIT)

    assert not isinstance(raised.value, DeviceTimeout)


def test_tcp_a_ticket_after_the_printer_hung_up_is_refused_not_lost(tcp_printer):
    """Printers close idle port-9100 connections. The first write after that would
    land in the socket buffer and vanish; the link looks before it writes."""
    link, printer = tcp_printer
    printer.close()
    with pytest.raises(DeviceUnavailable):
        link.read(1)                                           # the hang-up has arrived

    with pytest.raises(DeviceUnavailable, match="closed the connection"):
        link.write(INIT + "A012".encode() + b"\n")


def test_tcp_drain_discards_a_late_answer_so_the_next_read_gets_the_fresh_one(tcp_printer):
    link, printer = tcp_printer
    # One segment: once the link has read its first byte, the late one is waiting too.
    printer.sendall(b"\x12\x14")
    assert link.read(1) == b"\x12"

    link.drain()
    printer.sendall(b"\x16")

    assert link.read(1) == b"\x16"


def test_tcp_drain_does_not_wait_when_nothing_is_waiting(tcp_printer):
    link, _ = tcp_printer

    assert elapsed_while(link.drain) < 0.5                     # the link's timeout is 2 s


def test_tcp_connection_refused_names_the_address():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]                       # free once the listener closes

    with pytest.raises(DeviceUnavailable) as raised:
        open_link(parse_connection(f"tcp://127.0.0.1:{port}"), 1.0)

    assert str(raised.value) == f"connection refused by 127.0.0.1:{port}"


def test_tcp_describe_and_a_closed_link(tcp_printer):
    link, printer = tcp_printer
    port = printer.getsockname()[1]

    assert link.describe() == {"kind": "tcp", "connection": f"tcp://127.0.0.1:{port}",
                               "host": "127.0.0.1", "port": port}
    assert link.reads_back
    link.close()
    link.close()
    with pytest.raises(DeviceUnavailable, match="is closed"):
        link.write(INIT)
    assert printer.recv(1) == b""                              # the printer saw the link go


# ---------------------------------------------------------------------------
# serial: a real pseudo-terminal pair; the test plays the printer on the master
# ---------------------------------------------------------------------------

@pytest.fixture
def pty_pair() -> Iterator[tuple[int, int, str]]:
    """(master fd, slave fd, slave path), the slave in raw mode."""
    master, slave = os.openpty()
    tty.setraw(slave)
    yield master, slave, os.ttyname(slave)
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:                                        # a test hung the printer up
            pass


@pytest.fixture
def serial_printer(pty_pair) -> Iterator[tuple[Link, int]]:
    master, _, path = pty_pair
    link = open_link(parse_connection(f"serial://{path}?baudrate=9600"), 2.0)
    yield link, master
    link.close()


def read_master(master: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        ready, _, _ = select.select([master], [], [], 5)
        assert ready, f"the printer got {data!r}, waited for {n} bytes"
        data += os.read(master, n - len(data))
    return data


def test_serial_a_job_arrives_byte_for_byte(serial_printer):
    link, master = serial_printer
    job = INIT + "请到5号窗口\n".encode("gb18030") + b"\r\x00\xff\x1dV\x00"

    link.write(job)

    assert read_master(master, len(job)) == job                # raw: LF stays LF, no CR added


def test_serial_line_settings_reach_the_port(pty_pair):
    """(A pty keeps speed, stop bits and flow control, but forces 8 bits without parity.)"""
    _, slave, path = pty_pair
    link = open_link(parse_connection(f"serial://{path}?baudrate=19200&stopbits=2&rtscts=1"), 1.0)
    try:
        _, _, cflag, _, ispeed, ospeed, _ = termios.tcgetattr(slave)
        assert ispeed == ospeed == termios.B19200
        assert cflag & termios.CSTOPB
        assert cflag & termios.CRTSCTS
    finally:
        link.close()


def test_serial_read_returns_the_printers_answer(serial_printer):
    link, master = serial_printer
    link.write(STATUS)
    assert read_master(master, len(STATUS)) == STATUS

    os.write(master, b"\x16\x12")

    assert link.read(2) == b"\x16\x12"


def test_serial_a_silent_printer_times_out_promptly(serial_printer):
    link, _ = serial_printer

    raised, took = raises_after(DeviceTimeout, lambda: link.read(1, timeout=0.1))

    assert 0.05 < took < 1.0
    assert "within 0.1 s" in str(raised.value)


def test_serial_drain_discards_a_late_answer(serial_printer):
    link, master = serial_printer
    os.write(master, b"\x12\x14")
    assert link.read(1) == b"\x12"                             # the late byte came with it

    link.drain()
    os.write(master, b"\x16")

    assert link.read(1) == b"\x16"


def test_serial_a_printer_that_takes_nothing_times_the_write_out(pty_pair):
    path = pty_pair[2]                                         # nobody reads the master
    link = open_link(parse_connection(f"serial://{path}"), 0.2)
    try:
        raised, took = raises_after(DeviceTimeout, lambda: link.write(bytes(1 << 20)))
    finally:
        link.close()

    assert took < 1.5
    assert "did not take 1048576 bytes within 0.2 s" in str(raised.value)


def test_serial_a_hung_up_line_is_unavailable_not_a_timeout(serial_printer):
    link, master = serial_printer
    os.close(master)

    raised, took = raises_after(DeviceUnavailable, lambda: link.read(1))

    assert not isinstance(raised.value, DeviceTimeout)
    assert took < 1.0


def test_serial_a_port_open_in_another_program_is_busy(serial_printer, pty_pair):
    path = pty_pair[2]

    with pytest.raises(DeviceBusy, match=f"{path} is already open in another program"):
        open_link(parse_connection(f"serial://{path}"), 1.0)


def test_serial_a_missing_adapter_is_unavailable():
    with pytest.raises(DeviceUnavailable) as raised:
        open_link(parse_connection("serial:///dev/ttyNOSUCH9?baudrate=19200"), 1.0)

    assert str(raised.value) == "no serial device /dev/ttyNOSUCH9 (adapter unplugged?)"


def test_serial_over_a_pyserial_url():
    link = open_link(parse_connection("loop://?baudrate=19200"), 0.2)
    try:
        link.write(STATUS)
        assert link.read(3) == STATUS                          # loop:// echoes what it is sent
        link.write(b"\x14")
        link.drain()
        with pytest.raises(DeviceTimeout):
            link.read(1)
        with pytest.raises(DeviceTimeout, match="loop:// did not take 5000 bytes"):
            link.write(bytes(5000))                            # loop:// holds 4096
        assert link.describe()["device"] == "loop://"
        assert link.describe()["baudrate"] == 19200
    finally:
        link.close()


@pytest.mark.parametrize("url", ["loop://?speed=fast", "socket://127.0.0.1:99999"])
def test_serial_a_url_pyserial_cannot_open_is_reported_not_crashed_on(url):
    with pytest.raises(DeviceUnavailable, match=f"cannot open {url.split('?')[0]}"):
        open_link(parse_connection(url), 0.2)


# ---------------------------------------------------------------------------
# USB: faked pyusb (no USB transport exists in CI)
# ---------------------------------------------------------------------------

BULK, INTERRUPT = usb.util.ENDPOINT_TYPE_BULK, usb.util.ENDPOINT_TYPE_INTR


class FakeEndpoint:
    def __init__(self, address: int, attributes: int = BULK, max_packet: int = 64):
        self.bEndpointAddress = address
        self.bmAttributes = attributes
        self.wMaxPacketSize = max_packet


class FakeInterface(list):
    """Iterates its endpoints, as pyusb's Interface does."""

    def __init__(self, number: int, endpoints: list[FakeEndpoint], interface_class: int = 7):
        super().__init__(endpoints)
        self.bInterfaceNumber = number
        self.bAlternateSetting = 0
        self.bInterfaceClass = interface_class


class FakeUsbPrinter:
    """Just enough of pyusb's Device: descriptors, the kernel driver, bulk transfers."""

    idVendor, idProduct, bus, address = 0x04B8, 0x0E15, 1, 7
    manufacturer, product, serial_number = "EPSON", "TM-T88V", "J7VF012345"

    def __init__(self, *interfaces: FakeInterface, kernel_driver: bool = False):
        self.configuration = list(interfaces)
        self.configured = True
        self.kernel_driver = kernel_driver
        self.detach_error: usb.core.USBError | None = None
        self.transfer_error: usb.core.USBError | None = None
        self.writes: list[tuple[int, bytes, int]] = []        # (endpoint, data, timeout ms)
        self.reads: list[tuple[int, int, int]] = []           # (endpoint, size, timeout ms)
        self.answers: list[bytes] = []                         # packets the printer has to send

    def get_active_configuration(self):
        if not self.configured:
            raise usb.core.USBError("Configuration not set")
        return self.configuration

    def set_configuration(self):
        self.configured = True

    def is_kernel_driver_active(self, number: int) -> bool:
        return self.kernel_driver

    def detach_kernel_driver(self, number: int) -> None:
        if self.detach_error:
            raise self.detach_error
        self.kernel_driver = False

    def write(self, endpoint: int, data: bytes, timeout: int) -> int:
        if self.transfer_error:
            raise self.transfer_error
        self.writes.append((endpoint, bytes(data), timeout))
        return len(data)

    def read(self, endpoint: int, size: int, timeout: int) -> bytes:
        if self.transfer_error:
            raise self.transfer_error
        self.reads.append((endpoint, size, timeout))
        if not self.answers:
            raise usb.core.USBTimeoutError("Operation timed out", -7, errno.ETIMEDOUT)
        return self.answers.pop(0)


def tm_t88(**kwargs) -> FakeUsbPrinter:
    """A printer whose endpoints are not the usual 0x01/0x82, with an interrupt IN first."""
    return FakeUsbPrinter(FakeInterface(0, [FakeEndpoint(0x81, INTERRUPT), FakeEndpoint(0x03),
                                            FakeEndpoint(0x84)]), **kwargs)


class FakeUsbBus:
    """What is plugged in, and what the link claimed and released."""

    def __init__(self):
        self.plugged: FakeUsbPrinter | None = None
        self.claim_error: usb.core.USBError | None = None
        self.claimed: list[int] = []
        self.released = 0

    def find(self, idVendor: int, idProduct: int):
        device = self.plugged
        if device is not None and (device.idVendor, device.idProduct) == (idVendor, idProduct):
            return device
        return None

    def claim_interface(self, device, number: int) -> None:
        if self.claim_error:
            raise self.claim_error
        self.claimed.append(number)

    def dispose_resources(self, device) -> None:
        self.released += 1


@pytest.fixture
def usb_bus(monkeypatch) -> FakeUsbBus:
    bus = FakeUsbBus()
    monkeypatch.setattr(usb.core, "find", bus.find)
    monkeypatch.setattr(usb.util, "claim_interface", bus.claim_interface)
    monkeypatch.setattr(usb.util, "dispose_resources", bus.dispose_resources)
    return bus


@pytest.fixture
def usb_printer(usb_bus) -> Iterator[tuple[Link, FakeUsbPrinter]]:
    usb_bus.plugged = tm_t88()
    link = open_link(parse_connection("usb://04b8:0e15"), 1.5)
    yield link, usb_bus.plugged
    link.close()


def test_usb_endpoints_come_from_the_descriptors_and_writes_carry_the_timeout(usb_printer, usb_bus):
    link, printer = usb_printer
    printer.answers.append(b"\x16")

    link.write(STATUS)
    answer = link.read(1)

    assert printer.writes == [(0x03, STATUS, 1500)]
    assert answer == b"\x16"
    assert [endpoint for endpoint, _, _ in printer.reads] == [0x84]
    assert usb_bus.claimed == [0]
    assert link.describe() == {
        "kind": "usb", "connection": "usb://04b8:0e15", "vendor_id": "04b8", "product_id": "0e15",
        "bus": 1, "address": 7, "interface": 0, "out_endpoint": "0x03", "in_endpoint": "0x84",
        "manufacturer": "EPSON", "product": "TM-T88V", "serial_number": "J7VF012345"}


def test_usb_the_printer_interface_is_found_among_others(usb_bus):
    usb_bus.plugged = FakeUsbPrinter(
        FakeInterface(0, [FakeEndpoint(0x81, INTERRUPT)], interface_class=3),     # a HID keypad
        FakeInterface(1, [FakeEndpoint(0x85), FakeEndpoint(0x02)]))
    link = open_link(parse_connection("usb://04b8:0e15"), 1.0)
    try:
        link.write(INIT)
        assert usb_bus.plugged.writes == [(0x02, INIT, 1000)]
        assert usb_bus.claimed == [1]
        assert link.describe()["in_endpoint"] == "0x85"
    finally:
        link.close()

    with pytest.raises(DeviceUnavailable, match="interface 0 of usb://04b8:0e15 has no bulk OUT"):
        open_link(parse_connection("usb://04b8:0e15?interface=0"), 1.0)
    with pytest.raises(DeviceUnavailable, match="usb://04b8:0e15 has no interface 4"):
        open_link(parse_connection("usb://04b8:0e15?interface=4"), 1.0)


def test_usb_an_unconfigured_printer_is_configured(usb_bus):
    usb_bus.plugged = tm_t88()
    usb_bus.plugged.configured = False

    open_link(parse_connection("usb://04b8:0e15"), 1.0).close()

    assert usb_bus.plugged.configured


def test_usb_the_kernel_driver_is_detached_when_it_can_be(usb_bus):
    usb_bus.plugged = tm_t88(kernel_driver=True)

    open_link(parse_connection("usb://04b8:0e15"), 1.0).close()

    assert not usb_bus.plugged.kernel_driver


BUSY_ERRORS = {
    "usblp will not let go": dict(detach_error=usb.core.USBError("Resource busy", -6, errno.EBUSY)),
    "no permission to detach": dict(detach_error=usb.core.USBError(
        "Access denied (insufficient permissions)", -3, errno.EACCES)),
    "CUPS has claimed it": dict(claim_error=usb.core.USBError("Resource busy", -6, errno.EBUSY)),
}


@pytest.mark.parametrize("case", BUSY_ERRORS)
def test_usb_a_printer_held_by_usblp_or_cups_is_busy_with_a_hint(usb_bus, case):
    usb_bus.plugged = tm_t88(kernel_driver=True)
    usb_bus.plugged.detach_error = BUSY_ERRORS[case].get("detach_error")
    usb_bus.claim_error = BUSY_ERRORS[case].get("claim_error")

    with pytest.raises(DeviceBusy) as raised:
        open_link(parse_connection("usb://04b8:0e15"), 1.0)

    message = str(raised.value)
    assert message.startswith("usb://04b8:0e15 is held by another driver "
                              "(the kernel's usblp or CUPS): ")
    for hint in ("blacklist usblp", "lpadmin -x", 'ATTR{idVendor}=="04b8"', 'ATTR{idProduct}=="0e15"'):
        assert hint in message
    assert usb_bus.released == 1                               # the handle is not left open


def test_usb_no_printer_plugged_in(usb_bus):
    with pytest.raises(DeviceUnavailable) as raised:
        open_link(parse_connection("usb://04b8:0e15"), 1.0)

    assert not isinstance(raised.value, DeviceBusy)
    assert str(raised.value) == "no USB device 04b8:0e15 is plugged in"


def test_usb_a_write_the_printer_does_not_take_times_out(usb_printer):
    link, printer = usb_printer
    printer.transfer_error = usb.core.USBTimeoutError("Operation timed out", -7, errno.ETIMEDOUT)

    with pytest.raises(DeviceTimeout, match="usb://04b8:0e15 did not take 3 bytes within 1.5 s"):
        link.write(STATUS)


def test_usb_a_printer_unplugged_mid_job_is_unavailable(usb_printer):
    link, printer = usb_printer
    printer.transfer_error = usb.core.USBError("No such device (it may have been disconnected)",
                                               -4, errno.ENODEV)

    with pytest.raises(DeviceUnavailable) as raised:
        link.write(INIT)

    assert type(raised.value) is DeviceUnavailable
    assert str(raised.value) == "USB device 04b8:0e15 was unplugged"


def test_usb_reads_whole_packets_and_keeps_what_was_not_asked_for(usb_printer):
    link, printer = usb_printer
    printer.answers += [b"\x12\x16", b"\x7e"]

    assert link.read(1) == b"\x12"
    assert link.read(2) == b"\x16\x7e"
    assert [size for _, size, _ in printer.reads] == [64, 64]  # wMaxPacketSize, never less


def test_usb_a_silent_printer_times_out_within_the_read_timeout(usb_printer):
    link, printer = usb_printer

    with pytest.raises(DeviceTimeout, match="no reply from usb://04b8:0e15 within 0.1 s"):
        link.read(1, timeout=0.1)

    assert 1 <= printer.reads[0][2] <= 100                     # ms, and never 0 (= forever)


def test_usb_drain_discards_late_and_leftover_answers(usb_printer):
    link, printer = usb_printer
    printer.answers += [b"\x12\x14", b"\x14"]
    assert link.read(1) == b"\x12"                             # b"\x14" left over

    link.drain()                                               # and one more packet waiting
    printer.answers.append(b"\x16")

    assert link.read(1) == b"\x16"


def test_usb_a_printer_without_an_in_endpoint_does_not_read_back(usb_bus):
    usb_bus.plugged = FakeUsbPrinter(FakeInterface(0, [FakeEndpoint(0x02)]))
    link = open_link(parse_connection("usb://04b8:0e15"), 1.0)
    try:
        assert not link.reads_back
        assert link.describe()["in_endpoint"] is None
        link.drain()
        with pytest.raises(DeviceError, match="no bulk IN endpoint"):
            link.read(1)
    finally:
        link.close()


def test_usb_close_releases_the_device_once(usb_printer, usb_bus):
    link, _ = usb_printer

    link.close()
    link.close()

    assert usb_bus.released == 1
    with pytest.raises(DeviceUnavailable, match="is closed"):
        link.read(1)


def test_usb_unreadable_strings_are_left_out(usb_bus, monkeypatch):
    def denied(self):
        raise ValueError("The device has no langid (permission issue, no string descriptors)")
    monkeypatch.setattr(FakeUsbPrinter, "product", property(denied))
    usb_bus.plugged = tm_t88()

    link = open_link(parse_connection("usb://04b8:0e15"), 1.0)
    try:
        assert "product" not in link.describe()
        assert link.describe()["manufacturer"] == "EPSON"
    finally:
        link.close()


# ---------------------------------------------------------------------------
# file: a device file such as /dev/usb/lp0
# ---------------------------------------------------------------------------

def test_file_a_job_is_written_and_nothing_reads_back(tmp_path):
    lp0 = tmp_path / "lp0"
    lp0.write_bytes(b"")
    link = open_link(parse_connection(f"file://{lp0}"), 1.0)
    try:
        link.write(INIT + "A012\n".encode())
        link.drain()
        assert not link.reads_back
        with pytest.raises(DeviceError, match="cannot read back"):
            link.read(1)
        assert link.describe() == {"kind": "file", "connection": f"file://{lp0}", "path": str(lp0)}
    finally:
        link.close()

    assert lp0.read_bytes() == INIT + b"A012\n"


def test_file_reconnecting_does_not_erase_what_was_written(tmp_path):
    lp0 = tmp_path / "lp0"
    lp0.write_bytes(b"first ticket\n")

    link = open_link(parse_connection(f"file://{lp0}"), 1.0)
    link.write(b"second ticket\n")
    link.close()

    assert lp0.read_bytes() == b"first ticket\nsecond ticket\n"


def test_file_a_missing_device_is_unavailable_and_not_created(tmp_path: Path):
    lp0 = tmp_path / "lp0"

    with pytest.raises(DeviceUnavailable, match=f"no such file {lp0}"):
        open_link(parse_connection(f"file://{lp0}"), 1.0)

    assert not lp0.exists()                    # a plain file would squat the device's name


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "lp0"
    os.mkfifo(path)
    return path


def test_file_a_printer_that_takes_nothing_times_the_write_out(fifo):
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)       # there, but never reads
    link = open_link(parse_connection(f"file://{fifo}"), 0.2)
    try:
        raised, took = raises_after(DeviceTimeout, lambda: link.write(bytes(1 << 20)))
    finally:
        link.close()
        os.close(reader)

    assert took < 1.5
    assert "of 1048576 bytes within 0.2 s" in str(raised.value)


def test_file_with_nothing_behind_it_is_unavailable_without_hanging(fifo):
    with pytest.raises(DeviceUnavailable, match=f"nothing is behind {fifo}"):
        open_link(parse_connection(f"file://{fifo}"), 1.0)


def test_a_connection_is_plain_frozen_data():
    connection = parse_connection("tcp://10.0.0.5")

    assert connection == Connection("tcp", "tcp://10.0.0.5", host="10.0.0.5", port=9100)
    with pytest.raises(AttributeError):
        connection.port = 9101                                 # type: ignore[misc]
