"""Routes for evaluation (好差评): what a window's rating pad shows, and one rating."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field, StrictInt

from ..ratings import LEVEL, LEVELS, Rated, Ratings
from ..records import Actor
from .deps import GuardedRoute, actor, roles, window_role
from .models import Answer, Problem, StrictBody

router = APIRouter(tags=["evaluation"], route_class=GuardedRoute)

ERRORS = {401: {"model": Problem}, 403: {"model": Problem}, 404: {"model": Problem},
          422: {"model": Problem}}
RATERS = roles("evaluator", "supervisor")


class LevelOut(BaseModel):
    level: int = Field(examples=[4])
    name: str = Field(examples=["满意"])
    name_en: str = Field(examples=["Satisfied"])


class RatableTicket(BaseModel):
    id: str
    number: str = Field(examples=["A012"])
    service: str
    service_name: str = Field(examples=["不动产登记"])
    finished_at: str


class PadOut(Answer):
    window: str
    window_name: str
    ticket: RatableTicket | None = Field(
        description="the window's latest completed ticket while it can be rated; null when "
                    "there is none, it was rated, or its time is over")
    remaining_s: float | None = Field(description="seconds left to rate it; null without a ticket",
                                      examples=[87.5])
    within_s: float = Field(description="[evaluation] within_s: how long after completion "
                                        "a ticket may be rated")
    levels: list[LevelOut] = Field(description="the five levels, best first")


class RateRequest(StrictBody):
    ticket: str = Field(max_length=64, description="the ticket's id (GET .../rating)")
    level: StrictInt = Field(ge=1, le=5, description="5 非常满意, 4 满意, 3 基本满意, "
                             "2 不满意, 1 非常不满意", examples=[4])
    source: str = Field("pad", pattern=r"^[a-z][a-z0-9_]{0,31}$",
                        description="what took the rating: pad (default), keypad, ...")


class RatingOut(Answer):
    ticket: str
    number: str
    window: str
    window_name: str
    service: str
    service_name: str
    level: int
    name: str = Field(examples=["满意"])
    name_en: str = Field(examples=["Satisfied"])
    at: str
    source: str


class RefusalOut(Problem):
    reason: str = Field(description="which rule: not_done, no_show, cancelled, day_end, "
                                    "other_window, rated, late", examples=["rated"])


LEVELS_OUT = [LevelOut(level=v.level, name=v.name, name_en=v.name_en) for v in LEVELS]


def _ratings(request: Request) -> Ratings:
    return request.app.state.ratings


def _rater(request: Request) -> Actor:
    """Who rates. Never the clerk of a window: the citizen rates the clerk's service,
    and a clerk able to rate it would grade their own work (and could fill in
    非常满意 for everyone who walked away). Their token is refused here even where
    the evaluator role is open (a loopback demo)."""
    who = actor(request)
    if who.role == "window":
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "窗口工作人员不能为本人的服务评价，请由办事群众在评价器上评价 "
                            "(a clerk's token cannot rate; use the evaluator's)")
    return who


@router.get("/windows/{w}/rating", response_model=PadOut, responses=ERRORS,
            dependencies=[window_role("evaluator", "supervisor")],
            summary="What the window's rating pad should show now")
async def pending(w: str, request: Request) -> PadOut:
    """The window's most recently completed ticket that can still be rated — completed
    at this window (not a no-show, not cancelled, not closed at day end), not yet
    rated, finished within `[evaluation] within_s` — with the seconds left, and the
    five levels. `ticket` is null when there is nothing to rate. 404 for an unknown
    window. The window's clerk may read it too."""
    ratings = _ratings(request)
    config = request.app.state.config
    queue = request.app.state.queue
    found = await ratings.pending(w)
    ticket = None
    if found is not None:
        t = found.ticket
        ticket = RatableTicket(id=t.id, number=t.number, service=t.service,
                               service_name=config.service_name(t.service),
                               finished_at=queue.iso(t.finished_at))
    return PadOut(window=w, window_name=config.window(w).name, ticket=ticket,
                  remaining_s=round(found.remaining_s, 1) if found else None,
                  within_s=ratings.within_s, levels=LEVELS_OUT).answer()


@router.get("/windows/{w}/rating/access", responses=ERRORS, dependencies=[RATERS],
            summary="May this token rate at this window? (changes nothing)")
async def access(w: str, request: Request) -> dict:
    """200 when the token (or none, where the evaluator role is open) may rate at this
    window; 401/403 with the reason otherwise, 404 for an unknown window. The pad
    asks before it shows anything, so that the citizen never meets a token form."""
    _rater(request)
    if request.app.state.config.window(w) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"没有窗口 '{w}'")
    return {"window": w, "allowed": True}


@router.post("/windows/{w}/rating", response_model=RatingOut, status_code=201,
             dependencies=[RATERS],
             responses={**ERRORS, 409: {"model": RefusalOut,
                                        "description": "the rules refuse it; `reason` says which"}},
             summary="Rate a completed ticket (once, shortly after completion)")
async def rate(w: str, body: RateRequest, request: Request):
    """One rating of the ticket completed at this window, within `[evaluation]
    within_s` of its completion, once. Refused: 404 unknown window or ticket; 409 (with
    `reason`) the ticket is not completed (`not_done`, `no_show`, `cancelled`,
    `day_end`), was completed at another window (`other_window`), is rated already
    (`rated`), or its time is over (`late`); 422 a level that is not a whole number
    from 1 to 5. 不满意 and 非常不满意 raise a `bad_rating` alert. Not the window's
    clerk: they would be rating their own service."""
    who = _rater(request)
    rated = await _ratings(request).rate(w, body.ticket, body.level, body.source, actor=who)
    return _rating_out(request, rated).answer(status.HTTP_201_CREATED)


def _rating_out(request: Request, rated: Rated) -> RatingOut:
    config = request.app.state.config
    queue = request.app.state.queue
    rating = rated.rating
    level = LEVEL[rating.level]
    return RatingOut(ticket=rating.ticket, number=rated.ticket.number, window=rating.window,
                     window_name=config.window(rating.window).name, service=rating.service,
                     service_name=config.service_name(rating.service), level=rating.level,
                     name=level.name, name_en=level.name_en, at=queue.iso(rating.at),
                     source=rating.source)
