"""Routes for the technician: every device's state, self-tests and reconnects."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Body, HTTPException, Request, status
from fastapi.responses import FileResponse

from ..devices import DeviceNotReady, Supervised, Supervisor, UnknownDevice
from .deps import GuardedRoute, actor, roles
from .models import DeviceOut, DeviceProblem, HeartbeatIn, HeartbeatOut, Problem

router = APIRouter(tags=["devices"], route_class=GuardedRoute,
                   dependencies=[roles("technician", "supervisor")])
# what a terminal's own page calls, with the kiosk's token
terminal_router = APIRouter(tags=["devices"], route_class=GuardedRoute,
                            dependencies=[roles("kiosk", "technician", "supervisor")])

ERRORS = {401: {"model": Problem}, 403: {"model": Problem}, 404: {"model": Problem},
          409: {"model": Problem}, 503: {"model": DeviceProblem}}


def _devices(request: Request) -> Supervisor:
    return request.app.state.devices


def _known(request: Request, device_id: str) -> None:
    if device_id not in request.app.state.config.devices:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device '{device_id}'")


def _out(request: Request, device_id: str) -> DeviceOut:
    _known(request, device_id)
    view = _devices(request).view(device_id)
    emulator = view.detail.get("emulator")
    if isinstance(emulator, dict) and emulator.get("last_png"):
        emulator["last_png"] = str(request.url_for("last_ticket_png", device_id=device_id).path)
    return DeviceOut.of(view, request.app.state.queue)


def _supervised(request: Request, device_id: str) -> Supervised:
    _known(request, device_id)
    try:
        return _devices(request).get(device_id)
    except UnknownDevice:
        raise HTTPException(status.HTTP_409_CONFLICT, f"'{device_id}' is a terminal: it has "
                            "no link of its own; test or reconnect its printer") from None


@router.get("/devices", response_model=list[DeviceOut], responses=ERRORS,
            summary="Every device and its state")
async def devices(request: Request) -> list[DeviceOut]:
    return [_out(request, status.id) for status in _devices(request).views()]


@router.get("/devices/{device_id}", response_model=DeviceOut, responses=ERRORS,
            summary="One device: state, what the driver knows, the last error")
async def device(device_id: str, request: Request) -> DeviceOut:
    return _out(request, device_id).answer()


@router.post("/devices/{device_id}/test", response_model=DeviceOut, responses=ERRORS,
             summary="Run the device's self-test (a printer prints its test page)")
async def self_test(device_id: str, request: Request) -> DeviceOut:
    """503 with the device's state when it is not ready or the test fails."""
    supervised = _supervised(request, device_id)
    await _audited(request, device_id, "device.test", supervised.self_test())
    return _out(request, device_id).answer()


@router.post("/devices/{device_id}/reconnect", response_model=DeviceOut, responses=ERRORS,
             summary="Close the device's link and open it again now")
async def reconnect(device_id: str, request: Request) -> DeviceOut:
    """Answers after the attempt, with the state it led to."""
    supervised = _supervised(request, device_id)
    await _audited(request, device_id, "device.reconnect", supervised.reconnect())
    return _out(request, device_id).answer()


async def _audited(request: Request, device_id: str, action: str, command) -> None:
    """Run a technician's command and write it to the audit log with its outcome."""
    outcome: dict = {"outcome": "done"}
    try:
        await command
    except DeviceNotReady as exc:
        outcome = {"outcome": "failed", "error": str(exc)}
        raise
    except TimeoutError:
        outcome = {"outcome": "failed", "error": "no answer in time"}
        raise
    finally:
        outcome["state"] = _devices(request).view(device_id).state.value
        await request.app.state.queue.record(actor(request), action, device=device_id,
                                             detail=outcome)


def _terminal(request: Request, device_id: str) -> str:
    _known(request, device_id)
    if device_id not in _devices(request).terminals:
        raise HTTPException(status.HTTP_409_CONFLICT, f"'{device_id}' is not a terminal")
    return device_id


@terminal_router.post("/devices/{device_id}/heartbeat", response_model=HeartbeatOut,
                      responses=ERRORS, summary="A terminal's page reports that it is alive")
async def heartbeat(device_id: str, request: Request,
                    body: HeartbeatIn | None = Body(None)) -> HeartbeatOut:
    """The kiosk page calls this every `interval_s`. The terminal is `ready` while
    it does and `offline` once it has been silent for the terminal's
    `offline_after_s`. When `reload_key` changes, the page reloads itself."""
    terminals = _devices(request).terminals
    report = body.model_dump(exclude_none=True) if body else {}
    report["address"] = request.client.host if request.client else None
    return HeartbeatOut(**await terminals.heartbeat(_terminal(request, device_id), report))


@router.post("/devices/{device_id}/reload", response_model=DeviceOut, responses=ERRORS,
             summary="Ask a terminal's page to reload itself")
async def reload(device_id: str, request: Request) -> DeviceOut:
    """The page learns it at its next report (within `heartbeat_s`). 409 for a
    device that is not a terminal."""
    _devices(request).terminals.ask_reload(_terminal(request, device_id))
    await request.app.state.queue.record(actor(request), "device.reload", device=device_id)
    return _out(request, device_id).answer()


@router.get("/devices/{device_id}/last-announcement.wav", response_class=FileResponse,
            responses={**ERRORS, 200: {"content": {"audio/wav": {}}}},
            summary="A voice's last announcement, as it was played")
async def last_announcement_wav(device_id: str, request: Request) -> FileResponse:
    _known(request, device_id)
    last = _devices(request).view(device_id).detail.get("last_announcement")
    wav = Path(last["wav"]) if isinstance(last, dict) and last.get("wav") else None
    if wav is None or not wav.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"'{device_id}' has no announcement to play (not a voice, "
                            "nothing said yet, or its WAV was evicted from the cache)")
    return FileResponse(wav, media_type="audio/wav")


@router.get("/devices/{device_id}/last-ticket.png", name="last_ticket_png",
            response_class=FileResponse, responses=ERRORS,
            summary="An emulated printer's last ticket, as a citizen would hold it")
async def last_ticket_png(device_id: str, request: Request) -> FileResponse:
    supervised = _supervised(request, device_id)
    png = getattr(supervised.emulator, "last_png", None)
    if png is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"'{device_id}' is not an emulated printer or has printed nothing yet")
    return FileResponse(png, media_type="image/png")
