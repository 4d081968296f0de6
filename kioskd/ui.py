"""The hall's web pages under /ui/: files from the project's `ui/` folder, served
with a content security policy that lets a page load and talk to this daemon only."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse, HTMLResponse
from starlette.staticfiles import StaticFiles

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
PAGES = {
    "kiosk": "触摸查询取号 · touch kiosk",
    "window": "窗口呼叫 · the clerk's console",
    "display": "大厅显示屏 · the hall display",
    "diagnostics": "设备诊断 · diagnostics (technician)",
    "supervisor": "大厅管理 · supervision (supervisor)",
    "rate": "服务评价 · the rating pad at a window (evaluator)",
}
# Nothing from outside the hall: scripts, styles, fonts, images and connections
# come from this daemon; blob: carries the tickets' pictures and announcements'
# audio that diagnostics fetches with its token.
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
       "style-src 'self'; script-src 'self'; connect-src 'self'; font-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


def _page(name: str) -> FileResponse:
    path = UI_DIR / f"{name}.html"
    if not path.is_file():            # an install without its pages: say so, no 500
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"page '{name}' is not installed ({path})")
    return FileResponse(path, media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/ui", response_class=HTMLResponse)
@router.get("/ui/", response_class=HTMLResponse)
async def index() -> HTMLResponse:
    links = "".join(f'<li><a href="/ui/{name}">{title}</a></li>' for name, title in PAGES.items())
    return HTMLResponse(f'<!doctype html><meta charset="utf-8"><title>kioskd</title>'
                        f'<link rel="stylesheet" href="/ui/static/kioskd.css">'
                        f'<main class="index"><h1>kioskd</h1><ul>{links}</ul></main>',
                        headers=HEADERS)


@router.get("/ui/ticket/{ticket_id}")
async def ticket_page(ticket_id: str) -> FileResponse:
    return _page("ticket")         # the page reads the id from its own address


@router.get("/ui/{name}")
async def page(name: str) -> FileResponse:
    if name not in PAGES:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no page '{name}'; pages: {', '.join(PAGES)}")
    return _page(name)


class _Static(StaticFiles):
    """The pages' scripts and styles, revalidated on every load (ETag) so a
    kiosk told to reload gets the new version."""

    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers.update(HEADERS)
        return response


def static_files() -> StaticFiles:
    return _Static(directory=UI_DIR / "static")


_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


class PagePolicy:
    """The same policy for every HTML answer that does not set its own: the API's
    docs (/docs) come from fastapi-offline with their scripts beside them and one
    inline start-up script, allowed by its hash; their styles are written by the
    docs' own scripts, hence 'unsafe-inline' for styles on those pages alone."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/api/"):
            return await self.app(scope, receive, send)      # JSON and events: no page
        start: dict | None = None
        chunks: list[bytes] = []

        async def held(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", ()))
                if (headers.get(b"content-type", b"").startswith(b"text/html")
                        and b"content-security-policy" not in headers):
                    start = message            # held until the body is known
                    return
            elif start is not None and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = b"".join(chunks)
                await send(_with_policy(start, body))
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)
        await self.app(scope, receive, held)


def _with_policy(start: dict, body: bytes) -> dict:
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
                      for script in _INLINE_SCRIPT.findall(body))
    policy = (CSP.replace("script-src 'self'", f"script-src 'self' {hashes}".rstrip())
                 .replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
                 .replace("img-src 'self' data: blob:", "img-src 'self' data:"))
    headers = [(k, v) for k, v in start.get("headers", ()) if k != b"content-length"]
    headers += [(b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()
                if k != "Content-Security-Policy"]
    headers += [(b"content-security-policy", policy.encode())]
    return {**start, "headers": headers}
