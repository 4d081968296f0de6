"""What the daemon takes from the network, bounded: a request's head, cross-origin
callers, the number of event streams, and a display that stops reading.

The HTTP tests run the application behind a real uvicorn server with the daemon's
own protocol (test_api.served) and talk to it over loopback TCP sockets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket

import httpx
import pytest

from conftest import eventually, running, small_hall
from kioskd.config import Server
from kioskd.records import Event
from kioskd.httpserver import MAX_HEAD
from test_api import served, sse, subscribed

API = "/api/v1"


def hall(tmp_path, **server):
    config = small_hall(tmp_path / "var")
    return dataclasses.replace(config, server=dataclasses.replace(Server(), **server))


def exchange(port: int, request: bytes) -> bytes:
    """Send one raw request and read its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass                     # it stopped reading us: its answer is there to read
        return read_answer(s)


def read_answer(s: socket.socket) -> bytes:
    """One whole answer with a Content-Length, or what came before the server closed."""
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), None)
        if length is not None and len(body) >= length:
            break
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def body_of(answer: bytes) -> dict:
    return json.loads(answer.partition(b"\r\n\r\n")[2])


def get(path: str, *headers: bytes) -> bytes:
    return b"\r\n".join([f"GET {path} HTTP/1.1".encode(), b"Host: hall", *headers,
                         b"Connection: close", b"", b""])


# -- a request's head ---------------------------------------------------------------------

@pytest.mark.parametrize("what, request_", [
    ("one long header", get("/livez", b"X-Big: " + b"a" * (MAX_HEAD + 1))),
    ("many short headers", get("/livez", *(b"X-H%d: %s" % (n, b"v" * 40) for n in range(400)))),
    ("a long address", get("/livez?" + "q" * (MAX_HEAD + 1))),
    ("a megabyte of header", get("/livez", b"X-Big: " + b"a" * 1_000_000)),
])
async def test_a_head_over_the_bound_is_refused_431_and_the_daemon_goes_on(tmp_path, clock,
                                                                          what, request_):
    async with served(hall(tmp_path), clock) as (base, app):
        port = int(base.rsplit(":", 1)[1])
        answer = await asyncio.to_thread(exchange, port, request_)
        assert status_of(answer) == 431, (what, answer[:200])
        assert f"over {MAX_HEAD} bytes" in body_of(answer)["detail"]
        assert b"connection: close" in answer.lower()
        ok = await asyncio.to_thread(exchange, port, get("/livez"))
        assert status_of(ok) == 200


async def test_a_head_under_the_bound_and_a_body_after_it_are_served(tmp_path, clock):
    async with served(hall(tmp_path), clock) as (base, app):
        port = int(base.rsplit(":", 1)[1])
        near = get("/livez", b"X-Big: " + b"a" * (MAX_HEAD - 200))
        assert status_of(await asyncio.to_thread(exchange, port, near)) == 200
        # head and a 60 KB body in one write: the bound is the head's alone
        body = json.dumps({"service": "property", "pad": "x" * 60_000}).encode()
        post = (b"POST /api/v1/tickets HTTP/1.1\r\nHost: hall\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + body
        answer = await asyncio.to_thread(exchange, port, post)
        assert status_of(answer) == 422, answer[:300]          # `pad` is not a field
        # keep-alive: the bound starts again with each request on a connection
        def three_on_one_connection() -> list[int]:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                request = get("/livez", b"X-Pad: " + b"p" * (MAX_HEAD // 2))
                statuses = []
                for _ in range(3):
                    s.sendall(request.replace(b"Connection: close", b"Connection: keep-alive"))
                    statuses.append(status_of(read_answer(s)))
                return statuses
        assert await asyncio.to_thread(three_on_one_connection) == [200, 200, 200]


# -- cross-origin callers -----------------------------------------------------------------

async def test_cors_is_closed_unless_configured(tmp_path, clock):
    async with running(hall(tmp_path), clock) as client:
        r = await client.get(f"{API}/queue", headers={"Origin": "http://evil.example"})
        assert r.status_code == 200
        assert not any(k.lower().startswith("access-control-") for k in r.headers)
        pre = await client.options(f"{API}/tickets", headers={
            "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert pre.status_code >= 400
        assert "access-control-allow-origin" not in pre.headers


async def test_cors_admits_only_the_configured_origins(tmp_path, clock):
    desk = "http://10.0.0.5:8000"
    async with running(hall(tmp_path, cors_origins=(desk,)), clock) as client:
        pre = await client.options(f"{API}/tickets", headers={
            "Origin": desk, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == desk
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()
        r = await client.get(f"{API}/queue", headers={"Origin": desk})
        assert r.headers["access-control-allow-origin"] == desk
        assert "retry-after" in r.headers["access-control-expose-headers"].lower()

        other = await client.options(f"{API}/tickets", headers={
            "Origin": "http://10.0.0.6:8000", "Access-Control-Request-Method": "POST"})
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers
        r = await client.get(f"{API}/queue", headers={"Origin": "http://10.0.0.6:8000"})
        assert "access-control-allow-origin" not in r.headers


async def test_a_form_post_from_another_page_issues_nothing(tmp_path, clock):
    """A cross-site page may POST text/plain without asking first (no preflight); the
    body is not taken as JSON, so it issues nothing."""
    async with running(hall(tmp_path), clock) as client:
        before = (await client.get("/healthz")).json()["last_event"]
        r = await client.post(f"{API}/tickets", content=b'{"service": "property"}',
                              headers={"Content-Type": "text/plain",
                                       "Origin": "http://evil.example"})
        assert r.status_code == 422, r.text
        assert (await client.get("/healthz")).json()["last_event"] == before


# -- event streams --------------------------------------------------------------------------

async def test_event_streams_are_capped_exactly_even_when_displays_connect_together(tmp_path, clock):
    async with served(hall(tmp_path, event_clients=5), clock) as (base, app):
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as http:
            opened = [http.stream("GET", f"{API}/events") for _ in range(12)]
            responses = await asyncio.gather(*(o.__aenter__() for o in opened))
            try:
                statuses = sorted(r.status_code for r in responses)
                assert statuses == [200] * 5 + [503] * 7
                refused = next(r for r in responses if r.status_code == 503)
                assert refused.headers["Retry-After"] == "10"
                body = json.loads(await refused.aread())
                assert body["reason"] == "event_clients_full" and "event_clients" in body["detail"]
                assert app.state.bus.subscriber_count == 5
            finally:
                for o in opened:
                    await o.__aexit__(None, None, None)
            # the streams' places are free again once they close
            await eventually(lambda: app.state.bus.subscriber_count, lambda n: n == 0,
                             "the closed streams to leave the bus")
            async with http.stream("GET", f"{API}/events") as r:
                assert r.status_code == 200


async def test_a_display_that_stops_reading_is_dropped_and_the_others_get_everything(tmp_path, clock):
    """A display whose socket stops taking data (hung, unplugged without a FIN) is
    dropped once it is SUBSCRIBER_BACKLOG events behind; a reading one misses nothing.
    The events are published on the bus directly, 16 KB each, so the kernel's buffers
    fill in a few hundred events rather than tens of thousands of tickets."""
    async with served(hall(tmp_path), clock) as (base, app):
        bus = app.state.bus
        port = int(base.rsplit(":", 1)[1])
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # a tiny window, never read
        stuck.connect(("127.0.0.1", port))
        stuck.sendall(get(f"{API}/events").replace(b"Connection: close", b"Connection: keep-alive"))
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            await subscribed(app, 1)
            async with http.stream("GET", f"{API}/events") as r:
                await subscribed(app, 2)
                got: list[int] = []

                async def read_all() -> None:
                    async for message in sse(r):
                        got.append(int(message["id"]))
                reader = asyncio.create_task(read_all())

                sent: list[int] = []
                while bus.subscriber_count == 2:
                    assert len(sent) < 20_000, "the stuck display was never dropped"
                    event_id = bus.last_id + 1
                    bus.publish([Event(event_id, "alert", clock(), {"note": "x" * 16_000})])
                    sent.append(event_id)
                    if len(sent) % 100 == 0:        # a pace the reading display keeps up with
                        await eventually(lambda: len(got), lambda n: n >= len(sent) - 500,
                                         "the reading display to keep up", wait=30)
                # the hall goes on, and the reading display goes on reading
                ticket = await http.post(f"{API}/tickets", json={"service": "social"})
                assert ticket.status_code == 201
                bus.publish([Event(bus.last_id + 1, "alert", clock(), {"note": "after"})])
                sent.append(bus.last_id)
                await eventually(lambda: len(got), lambda n: n >= len(sent),
                                 "the reading display to get every event", wait=30)
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                assert got == sent                              # every one, in order
                assert len(sent) > 2000                         # dropped for its backlog, not before
        stuck.close()           # before the server stops: it would wait for the stuck write
