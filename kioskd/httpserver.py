"""The HTTP/1.1 protocol the daemon serves with: uvicorn's httptools protocol with a
bound on a request's head.

httptools keeps a request line and headers of any length in memory (20 MB of one
header were taken whole when measured), so a few connections on the hall's LAN
could eat the PC's memory. Every request kioskd expects has a head of a few hundred
bytes; one over MAX_HEAD is answered 431 and its connection closed, before more of
it is read. Bodies have their own bound (app.RefuseLargeBodies).
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD = 16 * 1024    # bytes of request line and headers; uvicorn's h11 bound, too


class HeadTooLarge(Exception):
    """Raised in a parser callback to stop reading a request whose head is too long."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Refuses a request whose head is over MAX_HEAD with 431: counted exactly from
    the parsed request line and headers, and, while a head is still arriving, from
    the bytes received (httptools holds an unfinished header whole in memory)."""

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_head = True        # a connection starts with a request's head
        self._received = 0          # bytes received since this head began
        self._parsed = 0            # bytes of this head parsed
        self._too_large = False

    def on_message_begin(self) -> None:
        self._parsed = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)         # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True        # what follows is the next request's head
        self._received = 0

    def _count(self, size: int) -> None:
        self._parsed += size
        if self._parsed > MAX_HEAD:
            self._too_large = True
            raise HeadTooLarge      # httptools stops; uvicorn answers through send_400_response

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            # A chunk may hold a head's end and a body's start: counted whole, but
            # refused below only if the head is still unfinished after it.
            self._received += len(data)
        super().data_received(data)
        if (self._in_head and self._received > MAX_HEAD and not self._too_large
                and not self.transport.is_closing()):
            self._too_large = True
            self._refuse_head()

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse_head()
        else:
            super().send_400_response(msg)

    def _refuse_head(self) -> None:
        body = json.dumps({"detail": f"the request line and headers are over {MAX_HEAD} "
                           "bytes"}).encode()
        self.logger.warning("http: a request from %s had a head over %d bytes; refused (431)",
                            self.client[0] if self.client else "?", MAX_HEAD)
        self.transport.write(b"".join([
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n", body]))
        self.transport.close()
