"""The FastAPI application: store, queue and bus wired together, routes mounted."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from .api import devices as devices_api
from .api import events as events_api
from .api import alerts as alerts_api
from .api import evaluation as evaluation_api
from .api import appointments as appointments_api
from .api import audit as audit_api
from .api import hall, supervision, tickets, windows
from .api.deps import SECURITY_SCHEMES, Guard
from .api.models import DeviceOut, Problem
from . import audit, backup, logs, stats, ui
from .aio import within
from .alerts import Watch
from .appointments import Appointments
from .boards import Boards
from .config import Config
from .devices import DeviceNotReady, Supervisor
from .events import EventBus
from .keypads import Keypads
from .limits import IssueLimits, TooManyTickets
from .metrics import Metrics
from .printing import Printing
from .privacy import scrub_text
from .ratings import Ratings
from .queue import Conflict, Invalid, NotFound, Queue, QueueError
from .store import Store, StoreClosed, StoreUnavailable, store_for
from .voice import Voices

log = logging.getLogger("kioskd")

API = "/api/v1"
STATUS_OF = {NotFound: 404, Conflict: 409, Invalid: 422}
HISTORY_AT_START = 20_000
MAX_BODY = 64 * 1024       # bytes; a larger body is answered 413
DETAIL_MAX = 1000          # characters of an error's detail
DAILY_BACKUP_TIMEOUT_S = 600   # a bound, not an aim: the copy runs off the loop
ECHO_MAX = 80              # characters of a quoted value the caller sent, echoed back


def create_app(config: Config, store: Store | None = None,
               clock: Callable[[], float] = time.time) -> FastAPI:
    """The daemon's application. `store` and `clock` are for tests."""
    bus = EventBus()
    if store is None:
        store = store_for(config)
    store.on_commit = bus.publish
    bus.listen(logs.log_events)
    queue = Queue(config, store, clock)
    devices = Supervisor(config, store, clock)
    boards = Boards(config, queue, bus, devices, clock)
    voices = Voices(config, queue, bus, devices, clock)
    alerts = Watch(config, queue, bus, devices)
    ratings = Ratings(queue, bus)
    keypads = Keypads(config, queue, ratings, bus, devices)
    metrics = Metrics(config, queue, bus, devices, voices)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await store.open()
        bus.remember(await store.view(lambda tx: tx.events_after(
            max(0, tx.last_event_id() - HISTORY_AT_START), HISTORY_AT_START)))
        await queue.setup()
        await devices.start()
        await boards.start()
        await voices.start()
        await alerts.start()
        await keypads.start()
        midnight = asyncio.create_task(_roll_over_at_midnight(queue), name="midnight")
        # past days' statistics summarised in the background: at start, after each midnight
        summaries = asyncio.create_task(stats.keep_summaries(queue), name="day-summaries")
        log.info("hall %s: %d services, %d windows, store %s", config.hall.name,
                 len(config.services), len(config.windows), getattr(store, "path", store))
        try:
            yield
        finally:
            midnight.cancel()
            summaries.cancel()
            await keypads.stop()
            await alerts.stop()
            await voices.stop()
            await boards.stop()
            await devices.stop()
            bus.close()
            await store.close()
            log.info("store: closed cleanly")

    app = FastAPIOffline(                # /docs from local files: a hall has no internet
        redoc_url=None,                  # ReDoc fetches its logo from its maker's CDN
        title="kioskd",
        # kioskd exports its own metrics; FastAPI's OpenTelemetry hooks cost ~4% per request
        telemetry={"tracing": False, "metrics": False, "logs": False},
        version="0.1.0",
        lifespan=lifespan,
        summary="Take-a-number queue and hall hardware for a government service hall.",
        description=(
            "Issue and call tickets, watch the hall live, and drive its printers, boards "
            "and voice.\n\nAuth: `Authorization: Bearer TOKEN`. Roles: `kiosk`, "
            "`technician`, `supervisor`, and one clerk token per window that acts for "
            "that window only. No or unknown token on a guarded route: 401; a token of "
            "the wrong role or another window: 403. Errors are `{\"detail\": \"...\"}`: "
            "404 unknown ticket or window, 409 an action that makes no sense in the "
            "current state (the queue is unchanged), 413 a body over 64 KiB, 422 bad input, "
            "429 too many tickets from one terminal or address ([limits], with "
            "`Retry-After`), 431 a request line and headers over 16 KiB, 503 a device or "
            "the store unavailable, or every event stream taken ([server] event_clients)."),
    )
    app.add_middleware(RefuseLargeBodies, limit=MAX_BODY)
    app.add_middleware(ui.PagePolicy)     # the docs pages' policy; /ui sets its own
    if config.server.cors_origins:
        # Closed unless the hall names the web origins whose pages call the API (a
        # front-desk system served from elsewhere); kioskd's own pages need none.
        app.add_middleware(CORSMiddleware, allow_origins=list(config.server.cors_origins),
                           allow_methods=["GET", "POST"], max_age=600,
                           allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
                           expose_headers=["Retry-After"])
    app.state.config = config
    app.state.bus = bus
    app.state.queue = queue
    app.state.ratings = ratings
    app.state.keypads = keypads
    app.state.appointments = Appointments(queue)
    app.state.devices = devices
    app.state.boards = boards
    app.state.voices = voices
    app.state.metrics = metrics
    app.state.alerts = alerts
    app.state.printing = Printing(config, queue, devices)
    app.state.guard = guard = Guard(config)
    app.state.issue_limits = IssueLimits(config.limits, clock)

    # Probes first (a watchdog asks them every few seconds and they must stay
    # cheap), then the routes a clerk and a kiosk press all day.
    @app.get("/livez", tags=["operations"], summary="The process answers (touches nothing)")
    async def livez() -> dict:
        return {"status": "ok"}

    @app.get("/healthz", tags=["operations"], summary="Is the daemon answering")
    async def healthz() -> dict:
        await store.view(lambda tx: None)     # the store answers, too
        answer = {"status": "ok", "hall": config.hall.name, "last_event": bus.last_id}
        if config.store.url is not None:      # one of the hall's daemons on a shared store
            answer |= {"store": "postgresql", "instance": config.instance_name}
        return answer

    # Public like /healthz: counts, states and device ids, never a token or a person.
    @app.get("/metrics", tags=["operations"], response_class=Response,
             summary="Prometheus metrics (text format; OpenMetrics when asked)",
             responses={200: {"content": {"text/plain": {}},
                              "description": "every metric is listed in docs/api.md"}})
    async def prometheus(request: Request) -> Response:
        body, content_type = await metrics.scrape(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    for router in (tickets.router, windows.router, hall.router, events_api.router,
                   devices_api.terminal_router, devices_api.router, supervision.router,
                   alerts_api.router, audit_api.router, appointments_api.router,
                   evaluation_api.router):
        app.include_router(router, prefix=API)
    app.mount("/ui/static", ui.static_files(), name="ui-static")
    app.include_router(ui.router)

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                                 description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            # Bad input is answered {"detail": "..."} (bad_input below), not with
            # FastAPI's list of errors that its default 422 documents.
            schemas = schema["components"].setdefault("schemas", {})
            schemas["HTTPValidationError"] = Problem.model_json_schema()
            schemas.pop("ValidationError", None)
            schemas.setdefault("Problem", Problem.model_json_schema())
            too_large = {"description": f"the body is over {MAX_BODY // 1024} KiB",
                         "content": {"application/json": {
                             "schema": {"$ref": "#/components/schemas/Problem"}}}}
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    if "requestBody" in operation:          # RefuseLargeBodies
                        operation["responses"].setdefault("413", too_large)
            app.openapi_schema = schema
        return app.openapi_schema
    app.openapi = openapi

    @app.exception_handler(QueueError)
    async def queue_error(request: Request, exc: QueueError) -> JSONResponse:
        status = next((STATUS_OF[k] for k in type(exc).__mro__ if k in STATUS_OF), 409)
        body = {"detail": _readable(guard.hide_tokens(str(exc)))}
        if exc.reason is not None:
            body["reason"] = exc.reason
        body.update(exc.answer)
        return JSONResponse(body, status_code=status)

    @app.exception_handler(TooManyTickets)
    async def too_many(request: Request, exc: TooManyTickets) -> JSONResponse:
        metrics.refused.labels(exc.limit).inc()
        if exc.first:                    # once a minute: a stuck button must not flood the log
            log.warning("tickets: %s (later refusals this minute are not logged)", exc)
        return JSONResponse({"detail": str(exc), "reason": "rate_limited",
                             "retry_after": exc.retry_after}, status_code=429,
                            headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(StoreClosed)
    @app.exception_handler(StoreUnavailable)
    async def store_error(request: Request, exc: Exception) -> JSONResponse:
        # `reason` lets a page say it plainly: the queue itself is away, not a device
        return JSONResponse({"detail": _readable(str(exc)), "reason": "store_unavailable"},
                            status_code=503)

    @app.exception_handler(DeviceNotReady)
    async def device_not_ready(request: Request, exc: DeviceNotReady) -> JSONResponse:
        device = DeviceOut.of(exc.status, queue)
        return JSONResponse({"detail": _readable(str(exc)), "device": device.model_dump()},
                            status_code=503)

    @app.exception_handler(RequestValidationError)
    async def bad_input(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _problem(guard.hide_tokens(_explain(exc)), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # FastAPI's answer to a body that is not UTF-8 or is nested too deeply:
            # bad input like any malformed JSON.
            return _problem(f"body: malformed JSON ({_parse_failure(exc)})", 422)
        if isinstance(exc.detail, str):
            exc.detail = _readable(guard.hide_tokens(exc.detail))
        return await http_exception_handler(request, exc)

    return app


_LONG_QUOTE = re.compile(r"'([^']{%d})[^']+'" % ECHO_MAX)


class RefuseLargeBodies:
    """413 with a JSON detail for a body over the limit: at once when its
    Content-Length says so, or as soon as a body sent without one grows past it.
    Every body kioskd takes is a few hundred bytes."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None:
            if length.isdigit() and int(length) > self.limit:
                await _problem(f"the body is over {self.limit} bytes", 413)(scope, receive, send)
                return
            return await self.app(scope, receive, send)    # the server holds it to its length
        received = 0

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise StarletteHTTPException(413, f"the body is over {self.limit} bytes")
            return message
        await self.app(scope, counted, send)


def _readable(detail: str) -> str:
    """An error's detail fit to send: any phone or ID number in what it echoes
    masked (a kiosk shows errors to the hall), what the caller sent is echoed at most
    ECHO_MAX characters long, the whole at most DETAIL_MAX, and a lone surrogate
    (valid in a JSON string, not in UTF-8) is shown escaped instead of failing
    the answer with a 500."""
    detail = _LONG_QUOTE.sub(lambda m: f"'{m.group(1)}…'", scrub_text(detail))
    if len(detail) > DETAIL_MAX:
        detail = detail[:DETAIL_MAX] + "…"
    return detail.encode("utf-8", "backslashreplace").decode("utf-8")


def _problem(detail: str, status_code: int) -> JSONResponse:
    return JSONResponse({"detail": _readable(detail)}, status_code=status_code)


def _explain(exc: RequestValidationError) -> str:
    """One readable sentence per problem, e.g. `service: Field required`."""
    parts = []
    for error in exc.errors():
        where = ".".join(_short(p) for p in error.get("loc", ()) if p != "body") or "body"
        message = error.get("msg", "invalid")
        if error.get("type") == "json_invalid":
            where, message = "body", f"malformed JSON ({error.get('ctx', {}).get('error', '')})"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def _parse_failure(exc: Exception) -> str:
    cause = exc.__cause__
    if isinstance(cause, RecursionError):
        return "nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return "not UTF-8 text"
    return "could not be parsed"


def _short(part: object) -> str:
    text = str(part)
    return text if len(text) <= ECHO_MAX else text[:ECHO_MAX] + "…"


async def _roll_over_at_midnight(queue: Queue) -> None:
    """Close yesterday's leftovers just after each local midnight, then let go of
    the audit entries past the hall's retention and take the day's backup (and
    both once at start: the daemon may have been off at midnight)."""
    await _purge_expired(queue)
    await _daily_backup(queue)
    while True:
        delay = queue.next_midnight(queue.clock()) - queue.clock() + 1
        await asyncio.sleep(max(delay, 1))
        try:
            await queue.roll_over()
        except Exception:
            log.exception("queue: the day rollover failed; it runs again before the next operation")
        await _purge_expired(queue)
        await _daily_backup(queue)


async def _daily_backup(queue: Queue) -> None:
    """The day's copy of an SQLite store, as one of the store's own reads: in a
    worker thread (WAL: calls go on meanwhile), and waited for when the store closes."""
    db = getattr(queue.store, "path", None)
    if db is None or not queue.config.backup.keep:
        return
    folder = queue.config.backup.folder or queue.config.hall.data_dir / "backups"
    day = queue.day_of(queue.clock())
    try:
        made, removed = await within(queue.store.read(
            lambda _tx: backup.daily(db, folder, day, queue.config.backup.keep)),
            DAILY_BACKUP_TIMEOUT_S)
    except Exception as exc:
        log.error("backup: the day's copy in %s failed (%s); it is tried again after "
                  "midnight", folder, exc)
        return
    if made is not None:
        log.info("backup: %s%s", made, f"; removed {len(removed)} older" if removed else "")


async def _purge_expired(queue: Queue) -> None:
    """Purge in batches, each its own short transaction, so calls go on meanwhile."""
    try:
        while await queue.run(audit.purge_expired, queue.config.audit.retention_days,
                              queue.day_of):
            pass
    except Exception:
        log.exception("audit: purging expired entries failed; it runs again after midnight")
