"""Every function that turns received bytes into a model or a reply, fuzzed with
random and truncated bytes and with valid frames cut short or bit-flipped:

- the emulated ESC/POS printer's decoder (`Decoder.feed`), and the picture of
  what it decoded (`render_ticket`);
- the printer's status answers (`decode_status`, and `TicketPrinter.status`
  reading DLE EOT answers from a real TCP peer that answers garbage);
- vendor frames (`FrameDecoder`) of four vendors' layouts, as the text boards'
  and keypads' emulators and the keypad reader use them;
- the emulated text boards, keypads and Modbus bus (their `_receive`: bytes
  off the wire in, the model and the replies out);
- the Modbus digit display's driver reading garbage replies over a real pty;
- WAV files (`read_wav`, `duration_of`).

"No crash": only the error types each documents (none for the decoders, which
report garbage as `Rejected` or `unhandled`; `ValueError` for decode_status;
`DeviceError` for drivers; `WavError` for WAV files). "No hang": each call runs
under a watchdog (SIGALRM) that fails the example when it has not returned in
WATCHDOG_S seconds. Hypothesis runs derandomized with bounded examples."""

from __future__ import annotations

import io
import os
import signal
import socket
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.pdu.register_message import (ReadHoldingRegistersRequest,
                                           ReadHoldingRegistersResponse,
                                           WriteMultipleRegistersRequest,
                                           WriteMultipleRegistersResponse,
                                           WriteSingleRegisterRequest)

from conftest import hall_toml
from test_frames import HALL as BOARD_HALL, VENDORS     # the vendors' frames, as they test them
from test_keypads import ANSWER_FRAME, KEY_FRAME
from drivers.base import DeviceError
from drivers.board import Display
from drivers.escpos import Settings as PrinterSettings
from drivers.escpos import codec
from drivers.escpos.codec import PrinterStatus, decode_status
from drivers.escpos.connection import parse_connection
from drivers.escpos.driver import TicketPrinter
from drivers.escpos.emulator import DecodedTicket, Decoder
from drivers.escpos.profiles import PROFILES
from drivers.escpos.render import render_ticket
from drivers.frames import Frame, FrameDecoder, FrameSpec, Rejected
from drivers.framed_text.emulator import EmulatedPort
from drivers.keypad.emulator import EmulatedKeypads
from drivers.modbus_digits import Settings as DigitSettings
from drivers.modbus_digits.driver import DigitDisplay
from drivers.modbus_digits.emulator import BusEmulator
from drivers.serialbus import SerialLine
from drivers.voice.wav import WavError, duration_of, read_wav
from kioskd.config import loads_config

WATCHDOG_S = 5.0
EXAMPLES = 200
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                suppress_health_check=list(HealthCheck))
FEW = settings(FUZZ, max_examples=40)         # the ones that go through a real link


class Hung(AssertionError):
    """A decoder or driver did not return within the watchdog's time."""


@contextmanager
def watchdog(what: str, seconds: float = WATCHDOG_S) -> Iterator[None]:
    """Fail, not hang, when the block runs longer than `seconds`."""
    def hung(_signum, _frame):
        raise Hung(f"{what} did not return within {seconds:g} s")
    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def garbled(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Valid bytes cut short, with a byte flipped, a slice dropped or noise around."""
    def mangle(data: bytes, how: str, at: int, byte: int, noise: bytes) -> bytes:
        at %= len(data) + 1
        if how == "cut":
            return data[:at]
        if how == "flip" and data:
            at %= len(data)
            return data[:at] + bytes([data[at] ^ (1 << byte % 8)]) + data[at + 1:]
        if how == "drop":
            return data[:at] + data[at + byte % 8 + 1:]
        return noise + data + noise[::-1]
    return st.builds(mangle, valid, st.sampled_from(["cut", "flip", "drop", "noise"]),
                     st.integers(0, 10_000), st.integers(0, 255), st.binary(max_size=16))


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` in pieces cut at `cuts` (any ints: taken modulo its length)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


# -- ESC/POS: the emulator's decoder -----------------------------------------------------

def printer_job(text: str, qr: str, size: int, cut: bool, picture: int) -> bytes:
    job = (codec.Job().initialize().align("center").bold().size(size, size).line(text)
           .bold(False).size().align("left").line("请到5号窗口").qr(qr, 3))
    if picture:
        job.image(Image.new("L", (picture, picture // 2 + 1), 0))
    job.feed(2).beep()
    if cut:
        job.cut()
    return job.bytes() + codec.status_query(4)


jobs = st.builds(printer_job, st.text(max_size=30), st.text(min_size=1, max_size=60),
                 st.integers(1, 3), st.booleans(), st.sampled_from([0, 8, 40]))
printer_bytes = st.one_of(st.binary(max_size=600), jobs, garbled(jobs),
                          st.lists(st.sampled_from([b"\x1b", b"\x1d", b"\x1c", b"\x10\x04",
                                                    b"\x1d(k", b"\x1dv0", b"\x00", b"\n",
                                                    b"A", b"\xff"]), max_size=40).map(b"".join))


def decode(pieces: list[bytes]) -> tuple[list[dict], bytes, DecodedTicket | None]:
    decoder = Decoder("gb18030", status=lambda: PrinterStatus(paper="near_end"))
    replies = b""
    tickets = []
    for piece in pieces:
        replies += decoder.feed(piece)
        tickets += decoder.take_tickets()
    return [t.as_dict() for t in tickets], replies, decoder.finish()


@FUZZ
@given(data=printer_bytes, cuts=st.lists(st.integers(0, 10_000), max_size=6))
def test_the_printer_decoder_takes_any_bytes_split_anywhere(data: bytes, cuts: list[int]):
    """Garbage is `unhandled`, never an exception; and bytes split anywhere between
    feeds decode as they do in one piece (a TCP peer splits where it likes)."""
    with watchdog("Decoder.feed"):
        whole = decode([data])
        pieces = decode(splits(data, cuts))
    assert pieces[:2] == whole[:2]
    assert (pieces[2] is None) == (whole[2] is None)
    if whole[2] is not None:
        assert pieces[2].as_dict() == whole[2].as_dict()


@settings(FUZZ, max_examples=60)
@given(data=printer_bytes)
def test_what_the_printer_decoded_can_be_drawn(data: bytes):
    """The emulator saves each job as a picture: whatever it decoded can be drawn."""
    decoder = Decoder()
    decoder.feed(data)
    for ticket in decoder.take_tickets() + [t for t in [decoder.finish()] if t]:
        with watchdog("render_ticket"):
            picture = render_ticket(ticket, PROFILES["80mm"])
        assert picture.width == PROFILES["80mm"].dots_per_line


# -- ESC/POS: the status the driver reads ------------------------------------------------

@FUZZ
@given(replies=st.dictionaries(st.integers(-2, 260), st.integers(-300, 600), max_size=4))
def test_status_answers_decode_or_are_refused_as_garbage(replies: dict[int, int]):
    try:
        status = decode_status(replies)
    except ValueError:
        return
    assert isinstance(status, PrinterStatus)
    assert set(replies) <= set(codec.STATUS_QUERIES)


class GarbagePrinter:
    """A TCP peer that answers the first bytes it hears with `answer`, then hangs up."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.answer = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with connection:
                try:
                    connection.recv(64)
                    connection.sendall(self.answer)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


@pytest.fixture(scope="module")
def garbage_printer():
    peer = GarbagePrinter()
    yield peer
    peer.close()


status_bytes = st.one_of(st.binary(max_size=6), st.lists(st.sampled_from(
    [0x12, 0x16, 0x1A, 0x32, 0x1E, 0x72, 0x7E]), min_size=3, max_size=3).map(bytes))


@FEW
@given(answer=status_bytes)
def test_the_printer_driver_reads_garbage_status_as_a_device_error(answer: bytes,
                                                                   garbage_printer):
    """The driver's status over a real socket to a peer answering garbage (or too
    little before hanging up): a PrinterStatus or a DeviceError, never another."""
    garbage_printer.answer = answer
    printer = TicketPrinter("printer_1", PrinterSettings(
        parse_connection(f"tcp://127.0.0.1:{garbage_printer.port}")), timeout=1.0)
    try:
        with watchdog("TicketPrinter.status"):
            printer.open()
            try:
                status = printer.status()
            except DeviceError:
                return
            assert isinstance(status, PrinterStatus)
    finally:
        printer.close()


# -- vendor frames --------------------------------------------------------------------------

def board_settings(vendor: str, tmp: Path):
    config = loads_config(BOARD_HALL.replace('port = "tty-board"\n',
                                        'port = "tty-board"\n' + VENDORS[vendor]),
                          base_dir=tmp, env={})
    return config.devices["board"].settings


KEYPADS = hall_toml('[devices.keypads]\ndriver = "keypad"\nport = "tty-keypads"\n'
                    + KEY_FRAME.format(id="keypads") + ANSWER_FRAME.format(id="keypads")
                    + '[devices.keypads.keypads]\n1 = "1"\n[devices.keypads.keys]\n"01" = "call-next"\n')
TMP = Path("/nonexistent-fuzz")          # nothing is opened: the ports are never started
SPECS: dict[str, FrameSpec] = {vendor: board_settings(vendor, TMP).frame for vendor in VENDORS}
KEYPAD_SETTINGS = loads_config(KEYPADS, base_dir=TMP, env={}).devices["keypads"].settings
SPECS["keys"] = KEYPAD_SETTINGS.frame
SPECS["answer"] = KEYPAD_SETTINGS.answer.frame


def frame_bytes(spec: FrameSpec) -> st.SearchStrategy[bytes]:
    """Frames of `spec` as its senders encode them."""
    def encode(address: int, text: str, line: int) -> bytes | None:
        kwargs = {}
        if spec.has("line"):
            kwargs["line"] = line
        if spec.has("effect"):
            kwargs["effect"] = "flash"
        if spec.has("key"):
            return spec.encode(address, key=b"\x01" * spec.key_bytes)
        try:
            return spec.encode(address, text, **kwargs)
        except ValueError:                  # the text holds the trailer: not sendable
            return None
    return (st.builds(encode, st.integers(0, 255), st.text(max_size=12), st.integers(0, 1))
            .filter(lambda b: b is not None))


def frame_stream(spec: FrameSpec) -> st.SearchStrategy[bytes]:
    one = frame_bytes(spec)
    return st.one_of(st.binary(max_size=300), garbled(one),
                     st.lists(st.one_of(one, garbled(one), st.binary(max_size=8)),
                              max_size=6).map(b"".join),
                     st.lists(st.sampled_from([spec.header, spec.trailer or b"", b"\x00",
                                               b"\xff"]), max_size=60).map(b"".join))


@FUZZ
@given(vendor=st.sampled_from(sorted(SPECS)), data=st.data())
def test_frames_decode_or_are_rejected_whatever_arrives(vendor: str, data):
    spec = SPECS[vendor]
    stream = data.draw(frame_stream(spec), label="stream")
    cuts = data.draw(st.lists(st.integers(0, 10_000), max_size=6), label="cuts")
    decoder = FrameDecoder(spec)
    out = []
    with watchdog("FrameDecoder.feed"):
        for piece in splits(stream, cuts):
            out += decoder.feed(piece)
        out += decoder.flush()
    assert all(isinstance(item, (Frame, Rejected)) for item in out)
    assert sum(len(item.raw) for item in out if isinstance(item, Frame)) <= len(stream)


@FUZZ
@given(vendor=st.sampled_from(sorted(SPECS)), data=st.data())
def test_good_frames_among_noise_are_found_split_anywhere(vendor: str, data):
    """Valid frames after noise, the stream split anywhere: every frame decodes."""
    spec = SPECS[vendor]
    frames = data.draw(st.lists(frame_bytes(spec), min_size=1, max_size=4), label="frames")
    noise = data.draw(st.binary(max_size=20).filter(lambda b: spec.header not in b),
                      label="noise")
    cuts = data.draw(st.lists(st.integers(0, 10_000), max_size=6), label="cuts")
    stream = noise + b"".join(frames)
    decoder = FrameDecoder(spec)
    out = []
    with watchdog("FrameDecoder.feed"):
        for piece in splits(stream, cuts):
            out += decoder.feed(piece)
    assert [item.raw for item in out if isinstance(item, Frame)] == frames, out


def test_a_crc_that_looks_like_the_trailer_survives_a_split_before_the_real_one():
    """Found by the fuzz above: this frame's CRC ends in 03, its trailer's byte.
    Split just before the real trailer, the decoder took the CRC's 03 for the
    trailer, found the checksum wrong and dropped the frame; in one piece it read."""
    spec = SPECS["crc16"]
    frame = bytes.fromhex("02 0000 44 01 a8aa3411 a403 03")
    assert frame == spec.encode(0, b"\xa8\xaa\x34\x11", line=1)
    decoder = FrameDecoder(spec)
    out = decoder.feed(frame[:-1]) + decoder.feed(frame[-1:])
    assert [item.raw for item in out] == [frame] and isinstance(out[0], Frame)


# -- the emulators: bytes off the wire in, the model and replies out ----------------------

class Replies(list):
    """What an emulator would have sent back on its port."""

    def __call__(self, data: bytes, *, after: float) -> None:
        self.append(data)


def test_an_emulator_fed_directly_decodes_and_answers(tmp_path: Path):
    """The fuzz below calls the emulators' `_receive` (what their pty thread calls
    with each chunk off the wire) and collects what they would send back: shown
    here with a good frame, which the board shows and acknowledges."""
    settings_ = board_settings("sum8", tmp_path)
    with closing(EmulatedPort(settings_.line)) as port:
        port.port.send = replies = Replies()
        board = port.add(settings_.address, settings_.frame, settings_.display.lines)
        port._receive(settings_.frame.encode(settings_.address, "A012", line=0,
                                             effect="steady"), time.monotonic())
    assert board.lines[0] == "A012" and replies == [settings_.frame.ack]


@FUZZ
@given(vendor=st.sampled_from(sorted(VENDORS)), data=st.data())
def test_the_emulated_text_board_takes_any_bytes(vendor: str, data):
    settings_ = board_settings(vendor, TMP)
    stream = data.draw(frame_stream(settings_.frame), label="stream")
    with closing(EmulatedPort(settings_.line)) as port, watchdog("EmulatedPort._receive"):
        port.port.send = Replies()
        board = port.add(settings_.address, settings_.frame, settings_.display.lines)
        for piece in splits(stream, data.draw(st.lists(st.integers(0, 999), max_size=4))):
            port._receive(piece, time.monotonic())
    assert len(board.lines) == settings_.display.lines


@FUZZ
@given(data=st.data())
def test_the_emulated_keypads_take_any_bytes(data):
    stream = data.draw(frame_stream(KEYPAD_SETTINGS.answer.frame), label="stream")
    with closing(EmulatedKeypads("keypads", KEYPAD_SETTINGS)) as keypads, \
            watchdog("EmulatedKeypads._receive"):
        keypads.port.send = Replies()
        for piece in splits(stream, data.draw(st.lists(st.integers(0, 999), max_size=4))):
            keypads._receive(piece, time.monotonic())


RTU_REQUESTS = FramerRTU(DecodePDU(is_server=False))


def modbus_request(kind: int, unit: int, address: int, values: list[int]) -> bytes:
    pdu = (ReadHoldingRegistersRequest(address=address, count=max(1, len(values)))
           if kind == 3 else
           WriteSingleRegisterRequest(address=address, registers=values[:1] or [0])
           if kind == 6 else
           WriteMultipleRegistersRequest(address=address, registers=values or [0]))
    pdu.dev_id = unit
    return RTU_REQUESTS.buildFrame(pdu)


requests = st.builds(modbus_request, st.sampled_from([3, 6, 16]), st.integers(0, 4),
                     st.integers(0, 8), st.lists(st.integers(0, 0xFFFF), max_size=6))


@FUZZ
@given(stream=st.one_of(st.binary(max_size=200), garbled(requests),
                        st.lists(st.one_of(requests, garbled(requests)), max_size=5)
                        .map(b"".join)),
       cuts=st.lists(st.integers(0, 999), max_size=4))
def test_the_emulated_modbus_bus_takes_any_bytes(stream: bytes, cuts: list[int]):
    with closing(BusEmulator(SerialLine(str(TMP / "tty-bus"), 9600))) as bus, \
            watchdog("BusEmulator._receive"):
        bus.port.send = Replies()
        for unit in (1, 2):
            bus.add_unit(unit, flash_register=9)
        for piece in splits(stream, cuts):
            bus._receive(piece, time.monotonic())
    for unit in (1, 2):
        assert len(bus.unit(unit).text) == 4


# -- the Modbus driver reading garbage replies over a real pty -----------------------------

class GarbageBus:
    """The far end of a pty: answers each request with the next reply it is given."""

    def __init__(self):
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        self.slave = slave
        self.reply = b""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import select
        while not self.stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                os.read(self.master, 512)
                if self.reply:
                    os.write(self.master, self.reply)
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture(scope="module")
def garbage_bus():
    bus = GarbageBus()
    display = DigitDisplay("board_1", DigitSettings(SerialLine(bus.path, 115200), Display(), 1,
                                                    reply_timeout=0.05, retries=0), 1.0)
    bus.reply = modbus_reply(3, 1, [0x41, 0x30, 0x31, 0x32])     # open() reads the text
    display.open()
    yield bus, display
    display.close()
    bus.close()


RTU_REPLIES = FramerRTU(DecodePDU(is_server=True))


def modbus_reply(kind: int, unit: int, values: list[int]) -> bytes:
    pdu = (ReadHoldingRegistersResponse(registers=values) if kind == 3 else
           WriteMultipleRegistersResponse(address=0, count=len(values)) if kind == 16 else
           ExceptionResponse(3, 2))
    pdu.dev_id = unit
    return RTU_REPLIES.buildFrame(pdu)


replies = st.builds(modbus_reply, st.sampled_from([3, 16, 0x83]), st.sampled_from([1, 1, 2]),
                    st.lists(st.integers(0, 0xFFFF), min_size=0, max_size=6))


@FEW
@given(reply=st.one_of(st.binary(min_size=1, max_size=40), replies, garbled(replies)))
def test_the_modbus_driver_reads_garbage_replies_as_a_device_error(reply: bytes, garbage_bus):
    bus, display = garbage_bus
    assume(reply)
    bus.reply = reply
    with watchdog("DigitDisplay._read_text"):
        display._start()
        try:
            values = display._read_text(attempts=1)
        except DeviceError:
            return
    assert len(values) == display.settings.width


# -- WAV files -------------------------------------------------------------------------------

def wav_file(channels: int, width: int, rate: int, frames: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(frames)
    return out.getvalue()


wavs = st.builds(wav_file, st.integers(1, 3), st.integers(1, 4), st.integers(1, 48_000),
                 st.binary(max_size=200))


@FUZZ
@given(data=st.one_of(st.binary(max_size=120), wavs, garbled(wavs),
                      wavs.map(lambda w: w[:36] + b"\xff" * 8 + w[44:])))
def test_a_wav_reads_or_is_refused_as_a_wav_error(data: bytes, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "fuzzed.wav"
    path.write_bytes(data)
    with watchdog("read_wav"):
        try:
            pcm = read_wav(path)
        except WavError:
            pcm = None
        try:
            seconds = duration_of(path)
        except WavError:
            seconds = None
    if pcm is not None:
        assert pcm.rate > 0 and len(pcm.frames) % 2 == 0
    if seconds is not None:
        assert seconds >= 0
