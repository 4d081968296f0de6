"""Routes for the technician: every device's state, self-tests and reconnects."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse

from ..devices import Supervised, Supervisor, UnknownDevice
from .deps import GuardedRoute, roles
from .models import DeviceOut, DeviceProblem, Problem

router = APIRouter(tags=["devices"], route_class=GuardedRoute,
                   dependencies=[roles("technician", "supervisor")])

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
    await _supervised(request, device_id).self_test()
    return _out(request, device_id).answer()


@router.post("/devices/{device_id}/reconnect", response_model=DeviceOut, responses=ERRORS,
             summary="Close the device's link and open it again now")
async def reconnect(device_id: str, request: Request) -> DeviceOut:
    """Answers after the attempt, with the state it led to."""
    await _supervised(request, device_id).reconnect()
    return _out(request, device_id).answer()


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
