"""Who may call what: bearer tokens per role, a window's token for that window only."""

from __future__ import annotations

import hashlib
import hmac
import inspect
import ipaddress
import re
from collections.abc import Callable, Iterable
from datetime import date
from typing import TYPE_CHECKING

from fastapi import Depends, HTTPException, Request, status
from fastapi.routing import APIRoute

from ..config import Config
from ..queue import Invalid
from ..records import Actor

if TYPE_CHECKING:
    from ..queue import Queue

ROLES = ("kiosk", "technician", "supervisor", "booking", "evaluator")
# When a token holds several roles that let it in, the audit log names the first.
_ACTOR_ORDER = ("supervisor", "technician", "kiosk", "booking", "evaluator")
BEARER = "bearer"           # the OpenAPI security scheme's name
HIDDEN_MIN = 8              # characters: tokens at least this long are kept out of error details
SECURITY_SCHEMES = {BEARER: {
    "type": "http", "scheme": "bearer",
    "description": "A token from devices.toml [auth]: kiosk, technician, supervisor, "
                   "or a window's clerk token ([auth.windows]). No token or an unknown "
                   "one: 401; a token of the wrong role or another window: 403. A role "
                   "with no tokens configured is open (loopback only)."}}


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def open_principals(config: Config) -> list[str]:
    """Roles and windows (`window:ID`) with no token: open to anyone on a loopback
    bind, and the reason `kioskd run` refuses any other bind."""
    auth = config.auth
    return ([role for role in ROLES if not getattr(auth, role)]
            + [f"window:{w.id}" for w in config.windows if not auth.windows.get(w.id)])


def unguarded_roles(config: Config) -> list[str]:
    """`open_principals`, named as the config file names them."""
    return [f"[auth.windows] \"{p[len('window:'):]}\"" if p.startswith("window:")
            else f"[auth] {p}" for p in open_principals(config)]


class Guard:
    """Checks a request's bearer token against the configured ones in constant time.

    A role (or a window) with no tokens configured is open to anyone: allowed
    only on a loopback bind, which `kioskd run` enforces before it starts.
    """

    def __init__(self, config: Config):
        auth = config.auth
        self._tokens: list[tuple[bytes, str]] = []
        for role in ROLES:
            self._tokens += [(_digest(t), role) for t in getattr(auth, role)]
        for window_id, tokens in auth.windows.items():
            self._tokens += [(_digest(t), f"window:{window_id}") for t in tokens]
        self.open = frozenset(open_principals(config))
        # What `hide_tokens` looks for: a token this short would be guessed anyway,
        # and hiding it would garble details ("1" in "window 1").
        every = [*(t for role in ROLES for t in getattr(auth, role)),
                 *(t for tokens in auth.windows.values() for t in tokens)]
        self._plain = sorted({t for t in every if len(t) >= HIDDEN_MIN}, key=len, reverse=True)

    def hide_tokens(self, text: str) -> str:
        """`text` with every token of the hall in it, or the start of one (an echo cut
        short: 'AbCd…'), shown as `***`. For error details, which quote what the
        caller sent: a token pasted into a terminal's or a window's field would be
        echoed onto the kiosk's or the console's screen for anyone to read."""
        for token in self._plain:
            head = token[:HIDDEN_MIN]
            start = text.find(head)
            while start >= 0:
                end = start + len(head)
                while end - start < len(token) and text[end:end + 1] == token[end - start]:
                    end += 1
                text = text[:start] + "***" + text[end:]
                start = text.find(head, start + 3)
        return text

    def principals(self, token: str) -> set[str]:
        given = _digest(token)
        found = set()
        for expected, principal in self._tokens:     # no early exit: same time for every token
            if hmac.compare_digest(given, expected):
                found.add(principal)
        return found

    def check(self, request: Request, allowed: Iterable[str]) -> set[str]:
        allowed = set(allowed)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if header and (scheme.lower() != "bearer" or not token.strip()):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                                "use 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        if not header:
            if allowed & self.open:
                return set()
            raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                                f"a token is needed ({_describe(allowed)})",
                                headers={"WWW-Authenticate": "Bearer"})
        principals = self.principals(token.strip())
        if not principals:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown token",
                                headers={"WWW-Authenticate": "Bearer"})
        if principals & allowed or allowed & self.open:
            return principals
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"this token is for {_describe(principals)}; "
                            f"this needs {_describe(allowed)}")


def _describe(principals: Iterable[str]) -> str:
    names = sorted(p.replace("window:", "window ") for p in principals)
    return " or ".join(names)


def _guarding(allowed_for: Callable[[Request], Iterable[str]], who: str) -> Callable:
    """A dependency admitting `allowed_for(request)`; `who` says so in the API docs.
    Both are kept on the dependency so that a `GuardedRoute` runs the check before
    the body is read."""
    async def dependency(request: Request) -> set[str]:     # async: no thread hop
        return request.app.state.guard.check(request, allowed_for(request))
    dependency.allowed_for = allowed_for        # type: ignore[attr-defined]
    dependency.who = who                        # type: ignore[attr-defined]
    return Depends(dependency)


def roles(*allowed: str) -> Callable:
    """A dependency admitting the given roles."""
    return _guarding(lambda request: allowed, " or ".join(allowed))


def window_role(*others: str) -> Callable:
    """A dependency admitting the clerk of the window in the path, and `others`."""
    return _guarding(lambda request: (f"window:{request.path_params['w']}", *others),
                     " or ".join(("the clerk token of window `w`", *others)))


def any_window_or(*others: str) -> Callable:
    """A dependency admitting any window's clerk, and `others`."""
    def allowed_for(request: Request) -> tuple[str, ...]:
        config: Config = request.app.state.config
        return (*others, *(f"window:{w.id}" for w in config.windows))
    return _guarding(allowed_for, " or ".join(("any window's clerk token", *others)))


class GuardedRoute(APIRoute):
    """A route whose token check runs first, before FastAPI reads the body.

    The `roles(...)`-style dependencies of a route are taken out of its
    dependency list and checked in front of the handler: one check instead of a
    dependency solve, and a caller without a token hears 401/403 even when the
    body is malformed."""

    def __init__(self, path: str, endpoint: Callable, *, dependencies=None, **kwargs):
        self.allowed_for = None
        kept = []
        for dependency in dependencies or ():
            allowed_for = getattr(dependency.dependency, "allowed_for", None)
            if allowed_for is None:
                kept.append(dependency)
                continue
            self.allowed_for = allowed_for
            # Document it: Swagger's "Authorize" button, and who may call.
            kwargs["openapi_extra"] = {**(kwargs.get("openapi_extra") or {}),
                                       "security": [{BEARER: []}]}
            description = kwargs.get("description") or inspect.getdoc(endpoint) or ""
            kwargs["description"] = (f"{description}\n\n**Token:** "
                                     f"{dependency.dependency.who}.").strip()
        super().__init__(path, endpoint, dependencies=kept, **kwargs)

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()
        allowed_for = self.allowed_for
        if allowed_for is None:
            return handler

        async def guarded(request: Request):
            allowed = tuple(allowed_for(request))      # in the order the route names them
            request.state.principals = request.app.state.guard.check(request, allowed)
            request.state.allowed = allowed
            return await handler(request)
        return guarded


def check_terminal(config: Config, terminal: str) -> None:
    """Invalid (422) unless `terminal` is a device with driver = "terminal"."""
    device = config.devices.get(terminal)
    if device is None or device.driver != "terminal":
        known = [d.id for d in config.devices.values() if d.driver == "terminal"]
        raise Invalid(f"unknown terminal '{terminal}'; known: {', '.join(known) or 'none'}")


def acts_as(request: Request, principal: str) -> bool:
    """Whether the caller of a guarded route holds `principal` (a role, `window:3`):
    its token's, or, without a token, an open one."""
    principals = getattr(request.state, "principals", None)
    if principals:
        return principal in principals
    return principal in request.app.state.guard.open


def acts_as_token(request: Request, principal: str) -> bool:
    """Whether the caller presented a token holding `principal` (an open role on a
    loopback hall does not count: anyone there has it)."""
    return principal in (getattr(request.state, "principals", None) or ())


def actor(request: Request, terminal: str | None = None) -> Actor:
    """Who is asking, for the audit log: the principal of the caller's token that
    let it in (a window's clerk, a role), or, without a token on a loopback bind,
    the first open principal the route names (its own: `kiosk` for an issue, the
    window's clerk at a window). `terminal` names the kiosk it came through."""
    principals = getattr(request.state, "principals", None) or set()
    allowed = getattr(request.state, "allowed", None) or ()
    token = bool(principals)
    if not token:
        opened = [p for p in allowed if p in request.app.state.guard.open]
        return _actor_of(opened[0] if opened else "public", terminal, token)
    candidates = principals & set(allowed) or principals
    path_window = request.path_params.get("w")
    if f"window:{path_window}" in candidates:
        return _actor_of(f"window:{path_window}", terminal, token)
    for role in _ACTOR_ORDER:
        if role in candidates:
            return _actor_of(role, terminal, token)
    return _actor_of(sorted(candidates)[0], terminal, token)


def _actor_of(principal: str, terminal: str | None, token: bool) -> Actor:
    if principal.startswith("window:"):
        return Actor("window", window=principal[len("window:"):], terminal=terminal,
                     token=token)
    return Actor(principal, terminal=terminal, token=token)


ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def read_day(text: str | None, queue: Queue, name: str = "date") -> date:
    """A `YYYY-MM-DD` query parameter as the hall's local date; today when absent;
    422 saying what a date looks like otherwise."""
    if text is None:
        return date.fromisoformat(queue.day_of(queue.clock()))
    try:
        if ISO_DATE.fullmatch(text) and (day := date.fromisoformat(text)) < date.max:
            return day                           # (the last date has no next midnight)
    except ValueError:
        pass
    shown = text if len(text) <= 40 else text[:40] + "…"
    raise HTTPException(422, f"{name}: '{shown}' is not a date kioskd can read; use "
                        "YYYY-MM-DD, e.g. 2026-11-30")
