"""The byte links a ticket printer is reached over: TCP, serial (or any pyserial URL), USB, a device file."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import select
import socket
import time
from abc import ABC, abstractmethod
from dataclasses import asdict
from typing import Any

import serial
import usb.core
import usb.util
from escpos.exceptions import DeviceNotFoundError
from escpos.printer import Network, Serial, Usb

from ..base import DeviceBusy, DeviceError, DeviceTimeout, DeviceUnavailable
from ..serialbus import open_serial
from .connection import Connection, SerialSettings

PRINTER_CLASS = 7                  # USB interface class of printers


def open_link(connection: Connection, timeout: float) -> Link:
    """Open the link to a printer. `timeout` (seconds) bounds a TCP connect, each write
    and, by default, each read. Raises DeviceUnavailable, DeviceBusy or DeviceTimeout."""
    links: dict[str, type[Link]] = {"tcp": TcpLink, "serial": SerialLink, "usb": UsbLink,
                                    "file": FileLink}
    return links[connection.kind](connection, timeout)


class Link(ABC):
    """An open byte link to one printer. Every call blocks for at most its timeout,
    is made from one thread at a time, and raises only DeviceErrors."""

    reads_back = True

    def __init__(self, connection: Connection, timeout: float) -> None:
        self.connection = connection
        self.timeout = timeout
        self._closed = False

    def write(self, data: bytes) -> None:
        """Send every byte within the link's timeout, else DeviceTimeout."""
        self._check_open()
        self._send(data)

    def read(self, n: int, timeout: float | None = None) -> bytes:
        """Exactly `n` bytes within `timeout` (default: the link's), else DeviceTimeout."""
        self._check_open()
        return self._receive(n, self.timeout if timeout is None else timeout)

    def drain(self) -> None:
        """Discard input nobody has read (a late answer to a timed-out query), without waiting."""
        self._check_open()
        self._discard_input()

    def close(self) -> None:
        """Release the link; never raises, safe to call twice."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):     # the link is gone either way
            self._release()

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Plain data about the link, for diagnostics."""

    @abstractmethod
    def _send(self, data: bytes) -> None: ...

    @abstractmethod
    def _receive(self, n: int, timeout: float) -> bytes: ...

    @abstractmethod
    def _discard_input(self) -> None: ...

    @abstractmethod
    def _release(self) -> None: ...

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceUnavailable(f"the link to {self.connection.text} is closed")


def _reason(error: BaseException | None) -> str:
    """An OS error's own words ("No route to host"), or the exception's text."""
    return getattr(error, "strerror", None) or str(error)


class TcpLink(Link):
    """A raw TCP socket (port 9100, "JetDirect"), opened and written through python-escpos's Network."""

    def __init__(self, connection: Connection, timeout: float) -> None:
        super().__init__(connection, timeout)
        self.address = f"{connection.host}:{connection.port}"
        self._printer = Network(connection.host, connection.port, timeout=timeout)
        try:
            self._printer.open()
        except DeviceNotFoundError as error:
            # python-escpos wraps every OSError in DeviceNotFoundError; the OSError
            # it was handling says what actually happened.
            raise self._connect_error(error.__context__) from error
        self._socket: socket.socket = self._printer.device
        # A status query (3 bytes) follows each job: without this, Nagle's algorithm
        # holds it until the job is acknowledged, and delayed ACK makes that 40 ms.
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _connect_error(self, cause: BaseException | None) -> DeviceUnavailable:
        if isinstance(cause, TimeoutError):
            return DeviceTimeout(f"no answer from {self.address} within {self.timeout:g} s")
        if isinstance(cause, ConnectionRefusedError):
            return DeviceUnavailable(f"connection refused by {self.address}")
        if isinstance(cause, socket.gaierror):
            return DeviceUnavailable(f"cannot look up printer host '{self.connection.host}': "
                                     f"{_reason(cause)}")
        return DeviceUnavailable(f"cannot connect to {self.address}: {_reason(cause)}")

    def _send(self, data: bytes) -> None:
        try:
            # A printer that closed an idle connection still lets the first write
            # "succeed" into the socket buffer and the ticket is lost: look first.
            if self._waiting(1, socket.MSG_PEEK) == b"":
                raise DeviceUnavailable(f"{self.address} closed the connection")
            self._printer._raw(data)    # python-escpos's transport hook: sendall under the timeout
        except TimeoutError:
            raise DeviceTimeout(f"{self.address} did not take {len(data)} bytes "
                                f"within {self.timeout:g} s") from None
        except OSError as error:
            raise DeviceUnavailable(f"connection to {self.address} lost: {_reason(error)}") from error

    def _receive(self, n: int, timeout: float) -> bytes:
        received = bytearray()
        deadline = time.monotonic() + timeout
        try:
            while len(received) < n and (remaining := deadline - time.monotonic()) > 0:
                self._socket.settimeout(remaining)
                chunk = self._socket.recv(n - len(received))
                if not chunk:
                    raise DeviceUnavailable(f"{self.address} closed the connection")
                received += chunk
        except TimeoutError:
            pass
        except OSError as error:
            raise DeviceUnavailable(f"connection to {self.address} lost: {_reason(error)}") from error
        finally:
            self._socket.settimeout(self.timeout)
        if len(received) < n:
            raise DeviceTimeout(f"no reply from {self.address} within {timeout:g} s "
                                f"(got {len(received)} of {n} bytes)")
        return bytes(received)

    def _discard_input(self) -> None:
        try:
            while (chunk := self._waiting(4096)) is not None:
                if not chunk:
                    raise DeviceUnavailable(f"{self.address} closed the connection")
        except OSError as error:
            raise DeviceUnavailable(f"connection to {self.address} lost: {_reason(error)}") from error

    def _waiting(self, size: int, flags: int = 0) -> bytes | None:
        """Up to `size` bytes already received, without waiting: None if there are none,
        b"" if the printer has closed the connection."""
        self._socket.settimeout(0)    # a socket with a timeout would wait for data first
        try:
            return self._socket.recv(size, flags)
        except BlockingIOError:
            return None
        finally:
            self._socket.settimeout(self.timeout)

    def describe(self) -> dict[str, Any]:
        return {"kind": "tcp", "connection": self.connection.text,
                "host": self.connection.host, "port": self.connection.port}

    def _release(self) -> None:
        self._printer.close()


class SerialLink(Link):
    """A serial port or any pyserial URL (rfc2217://, socket://, loop://)."""

    # python-escpos's Serial opens only device paths (serial.Serial(port=...)), cannot set
    # write_timeout, rtscts or an exclusive lock, and turns DSR/DTR flow control on unasked.
    # So the port is opened here with serial_for_url (device paths and URLs alike, all
    # settings) and handed to python-escpos's Serial, which writes through it. The port is
    # closed here too: python-escpos's close() flushes first (tcdrain), which waits forever
    # on a printer that holds flow control.

    def __init__(self, connection: Connection, timeout: float) -> None:
        super().__init__(connection, timeout)
        self.name = connection.device
        settings = connection.serial_settings or SerialSettings()
        self._port = open_serial(self.name, timeout=timeout, **asdict(settings))
        self._printer = Serial(devfile=self.name)
        self._printer.device = self._port

    def _send(self, data: bytes) -> None:
        try:
            self._printer._raw(data)    # python-escpos's transport hook: port.write
        except serial.SerialTimeoutException:
            raise DeviceTimeout(f"{self.name} did not take {len(data)} bytes within "
                                f"{self.timeout:g} s (printer offline, or flow control "
                                f"set differently from the printer's?)") from None
        except (serial.SerialException, OSError) as error:
            raise DeviceUnavailable(f"writing to {self.name} failed: {error}") from error

    def _receive(self, n: int, timeout: float) -> bytes:
        try:
            if self._port.timeout != timeout:
                self._port.timeout = timeout
            data = self._port.read(n)
        except (serial.SerialException, OSError) as error:
            raise DeviceUnavailable(f"reading from {self.name} failed: {error}") from error
        if len(data) < n:
            raise DeviceTimeout(f"no reply from {self.name} within {timeout:g} s "
                                f"(got {len(data)} of {n} bytes)")
        return data

    def _discard_input(self) -> None:
        try:
            self._port.reset_input_buffer()
        except (serial.SerialException, OSError) as error:
            raise DeviceUnavailable(f"{self.name} failed: {error}") from error

    def describe(self) -> dict[str, Any]:
        settings = self.connection.serial_settings or SerialSettings()
        return {"kind": "serial", "connection": self.connection.text, "device": self.name,
                **asdict(settings)}

    def _release(self) -> None:
        self._port.close()
        self._printer.close()           # sees the port closed: only forgets it


class UsbLink(Link):
    """A USB printer, claimed from libusb (pyusb) and written through python-escpos's Usb."""

    # python-escpos's Usb.open() detaches a kernel driver from interface 0 only and merely
    # logs when it cannot (the failure then surfaces at the first ticket), resets the device
    # on every open, and writes to endpoints 0x01/0x82 unless told otherwise. So the device
    # is found, its bulk endpoints read from its descriptors and its interface claimed here,
    # failing at open and plainly; python-escpos's Usb gets the device, the endpoints found
    # and a write timeout, writes through it and releases it.

    def __init__(self, connection: Connection, timeout: float) -> None:
        super().__init__(connection, timeout)
        self.ids = f"{connection.vendor_id:04x}:{connection.product_id:04x}"
        self.name = f"usb://{self.ids}"
        self._pending = bytearray()     # read from the printer, not yet asked for
        try:
            device = usb.core.find(idVendor=connection.vendor_id, idProduct=connection.product_id)
        except usb.core.NoBackendError as error:
            raise DeviceUnavailable("pyusb finds no libusb: install libusb-1.0") from error
        except usb.core.USBError as error:
            raise self._usb_error(error) from error
        if device is None:
            raise DeviceUnavailable(f"no USB device {self.ids} is plugged in")
        try:
            interface, self._out, self._in = self._claim(device)
        except DeviceError:
            with contextlib.suppress(usb.core.USBError):
                usb.util.dispose_resources(device)
            raise
        self.interface = interface.bInterfaceNumber
        self._device = device
        self._strings = _device_strings(device)
        self._printer = Usb(connection.vendor_id, connection.product_id,
                            timeout=_milliseconds(timeout), out_ep=self._out.bEndpointAddress,
                            in_ep=self._in.bEndpointAddress if self._in else None)
        self._printer.device = device

    @property
    def reads_back(self) -> bool:
        return self._in is not None

    def _claim(self, device: Any) -> tuple[Any, Any, Any]:
        """(interface, bulk OUT endpoint, bulk IN endpoint or None), with the interface claimed."""
        try:
            interface, out_endpoint, in_endpoint = self._find_endpoints(_configuration(device))
            number = interface.bInterfaceNumber
            try:
                kernel_driver = device.is_kernel_driver_active(number)
            except NotImplementedError:         # only libusb1 can tell (not on Windows)
                kernel_driver = False
            if kernel_driver:
                try:
                    device.detach_kernel_driver(number)
                except usb.core.USBError as error:
                    raise DeviceBusy(self._busy_message(error)) from error
            usb.util.claim_interface(device, number)
        except usb.core.USBError as error:
            raise self._usb_error(error) from error
        return interface, out_endpoint, in_endpoint

    def _find_endpoints(self, configuration: Any) -> tuple[Any, Any, Any]:
        wanted = self.connection.interface
        interfaces = [interface for interface in configuration if interface.bAlternateSetting == 0
                      and wanted in (None, interface.bInterfaceNumber)]
        if not interfaces:
            raise DeviceUnavailable(f"{self.name} has no interface {wanted}")
        interfaces.sort(key=lambda interface: interface.bInterfaceClass != PRINTER_CLASS)
        for interface in interfaces:
            out_endpoint = _bulk_endpoint(interface, usb.util.ENDPOINT_OUT)
            if out_endpoint is not None:
                return interface, out_endpoint, _bulk_endpoint(interface, usb.util.ENDPOINT_IN)
        where = f"interface {wanted} of {self.name}" if wanted is not None else self.name
        raise DeviceUnavailable(f"{where} has no bulk OUT endpoint: is it a printer?")

    def _busy_message(self, error: usb.core.USBError) -> str:
        vendor, product = self.ids.split(":")
        return (f"{self.name} is held by another driver (the kernel's usblp or CUPS): {error}. "
                f"Blacklist usblp (echo 'blacklist usblp' > /etc/modprobe.d/no-usblp.conf, "
                f"then replug the printer), remove the printer's CUPS queue (lpadmin -x QUEUE), "
                f"and let kioskd's user open the device with a udev rule: SUBSYSTEM==\"usb\", "
                f"ATTR{{idVendor}}==\"{vendor}\", ATTR{{idProduct}}==\"{product}\", "
                f"MODE=\"0660\", GROUP=\"lp\"")

    def _usb_error(self, error: usb.core.USBError) -> DeviceUnavailable:
        if isinstance(error, usb.core.USBTimeoutError):
            return DeviceTimeout(f"{self.name} did not answer within {self.timeout:g} s")
        if error.errno in (errno.EBUSY, errno.EACCES):
            return DeviceBusy(self._busy_message(error))
        if error.errno == errno.ENODEV:
            return DeviceUnavailable(f"USB device {self.ids} was unplugged")
        return DeviceUnavailable(f"{self.name} failed: {error}")

    def _send(self, data: bytes) -> None:
        try:
            self._printer._raw(data)    # python-escpos's transport hook: one bulk transfer
        except usb.core.USBTimeoutError:
            raise DeviceTimeout(f"{self.name} did not take {len(data)} bytes within "
                                f"{self.timeout:g} s (printer offline?)") from None
        except usb.core.USBError as error:
            raise self._usb_error(error) from error

    def _receive(self, n: int, timeout: float) -> bytes:
        if self._in is None:
            raise DeviceError(f"{self.name} has no bulk IN endpoint: it cannot read back")
        deadline = time.monotonic() + timeout
        while len(self._pending) < n and (remaining := deadline - time.monotonic()) > 0:
            try:
                # whole packets: asking for less than the printer sends is an overflow error
                self._pending += self._device.read(self._in.bEndpointAddress,
                                                   self._in.wMaxPacketSize, _milliseconds(remaining))
            except usb.core.USBTimeoutError:
                break
            except usb.core.USBError as error:
                raise self._usb_error(error) from error
        if len(self._pending) < n:
            raise DeviceTimeout(f"no reply from {self.name} within {timeout:g} s "
                                f"(got {len(self._pending)} of {n} bytes)")
        data = bytes(self._pending[:n])
        del self._pending[:n]
        return data

    def _discard_input(self) -> None:
        self._pending.clear()
        if self._in is None:
            return
        try:
            while self._device.read(self._in.bEndpointAddress, self._in.wMaxPacketSize, 1):
                pass
        except usb.core.USBTimeoutError:
            pass                        # nothing more is waiting
        except usb.core.USBError as error:
            raise self._usb_error(error) from error

    def describe(self) -> dict[str, Any]:
        return {"kind": "usb", "connection": self.connection.text,
                "vendor_id": f"{self.connection.vendor_id:04x}",
                "product_id": f"{self.connection.product_id:04x}",
                "bus": self._device.bus, "address": self._device.address,
                "interface": self.interface,
                "out_endpoint": f"0x{self._out.bEndpointAddress:02x}",
                "in_endpoint": f"0x{self._in.bEndpointAddress:02x}" if self._in else None,
                **self._strings}

    def _release(self) -> None:
        self._printer.close()           # usb.util.dispose_resources: releases the interface


def _configuration(device: Any) -> Any:
    """The device's active configuration, setting the first if it has none."""
    try:
        return device.get_active_configuration()
    except usb.core.USBError as error:
        if error.errno is not None:     # pyusb's "Configuration not set" carries no errno
            raise
    device.set_configuration()
    return device.get_active_configuration()


def _bulk_endpoint(interface: Any, direction: int) -> Any:
    for endpoint in interface:
        if (usb.util.endpoint_direction(endpoint.bEndpointAddress) == direction
                and usb.util.endpoint_type(endpoint.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK):
            return endpoint
    return None


def _device_strings(device: Any) -> dict[str, str]:
    """Manufacturer, product and serial number, those the device lets us read."""
    strings = {}
    for key in ("manufacturer", "product", "serial_number"):
        try:
            value = getattr(device, key)
        except (usb.core.USBError, ValueError, NotImplementedError):
            continue
        if value:
            strings[key] = value
    return strings


def _milliseconds(seconds: float) -> int:
    """A libusb timeout: whole milliseconds, never 0 (which means wait forever)."""
    return max(1, math.ceil(seconds * 1000))


class FileLink(Link):
    """A device file such as /dev/usb/lp0 (the kernel's usblp), or a plain file; write only."""

    # Not python-escpos's File: it opens with open(path, "wb"), which blocks on a FIFO
    # without a reader, creates a plain file in /dev when the printer is unplugged (and udev
    # then cannot create the node when it comes back), and writes without a timeout. The
    # path is opened here non-blocking and never created, and written with poll() under
    # the timeout.

    reads_back = False

    def __init__(self, connection: Connection, timeout: float) -> None:
        super().__init__(connection, timeout)
        self.path = connection.device
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as error:
            raise self._open_error(error) from error

    def _open_error(self, error: OSError) -> DeviceUnavailable:
        if error.errno == errno.ENOENT:
            return DeviceUnavailable(f"no such file {self.path} (printer unplugged, "
                                     f"or usblp not loaded?)")
        if error.errno == errno.EBUSY:
            return DeviceBusy(f"{self.path} is held by another program (CUPS?)")
        if error.errno == errno.EACCES:
            return DeviceUnavailable(f"permission denied on {self.path}: "
                                     f"add kioskd's user to the lp group")
        if error.errno == errno.ENXIO:
            return DeviceUnavailable(f"nothing is behind {self.path} (no printer, or no reader)")
        return DeviceUnavailable(f"cannot open {self.path}: {_reason(error)}")

    def _send(self, data: bytes) -> None:
        unsent = memoryview(data)
        deadline = time.monotonic() + self.timeout
        writable = select.poll()
        writable.register(self._fd, select.POLLOUT)
        while unsent:
            try:
                unsent = unsent[os.write(self._fd, unsent):]
            except BlockingIOError:
                pass
            except OSError as error:
                raise DeviceUnavailable(f"writing to {self.path} failed: {_reason(error)}") from error
            remaining = deadline - time.monotonic()
            if unsent and (remaining <= 0 or not writable.poll(math.ceil(remaining * 1000))):
                raise DeviceTimeout(f"{self.path} took {len(data) - len(unsent)} of {len(data)} "
                                    f"bytes within {self.timeout:g} s (printer offline?)")

    def _receive(self, n: int, timeout: float) -> bytes:
        raise DeviceError(f"{self.path} cannot read back: a file link is write-only")

    def _discard_input(self) -> None:
        pass                            # nothing ever comes in

    def describe(self) -> dict[str, Any]:
        return {"kind": "file", "connection": self.connection.text, "path": self.path}

    def _release(self) -> None:
        os.close(self._fd)
