"""The quiz namespace's channel rules, as ``realtime`` handlers (issue: channel rules via handlers).

Channels: ``/quiz/<code>/game`` and ``/quiz/<code>/leaderboard`` (everyone in the
game), ``/quiz/<code>/players/<id>`` (that player only), and ``/quiz/<code>/answers``
(players publish answers there; nobody hears them). Staff users (the host, the big
screen) may read everything and publish game control.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils import timezone

from realtime import handlers
from realtime.handlers import HandlerContext, OutgoingEvent

from . import services
from .conf import quiz_settings
from .exceptions import AlreadyAnswered, InvalidPlayerToken, QuizError


def _player(ctx: HandlerContext) -> dict[str, Any] | None:
    identity = ctx.identity or {}
    player = identity.get("handlerContext") if isinstance(identity, dict) else None
    return player if isinstance(player, dict) and "player_id" in player else None


async def _is_staff(ctx: HandlerContext) -> bool:
    identity = ctx.identity or {}
    if "handlerContext" in identity or "sub" not in identity or "username" not in identity:
        return False
    return await get_user_model().objects.filter(pk=identity["sub"], is_staff=True, is_active=True).aexists()


def _parts(ctx: HandlerContext) -> tuple[str, str, list[str]]:
    segments = list(ctx.channel.segments)
    code = segments[1] if len(segments) > 1 else ""
    kind = segments[2] if len(segments) > 2 else ""
    return code, kind, segments[3:]


@handlers.on_presence(quiz_settings.namespace)
async def quiz_presence(ctx: HandlerContext) -> dict[str, Any]:
    """What staff pages see of each connection on a game's presence channel: a player, or staff."""
    player = _player(ctx)
    if player is not None:
        return {"player": player["player_id"], "nickname": player["nickname"]}
    return {"staff": True}


# Async handlers: checks that need no database (most of them) cost no thread hop.
@handlers.on_subscribe(quiz_settings.namespace)
async def quiz_subscribe(ctx: HandlerContext) -> None:
    player = _player(ctx)
    code, kind, rest = _parts(ctx)
    if player is not None and player["game"] == code:
        if kind in ("game", "leaderboard") and not rest:
            return
        if kind == "players" and rest == [str(player["player_id"])]:
            return
    if await _is_staff(ctx):
        return
    if player is None or player["game"] != code:
        raise handlers.Unauthorized()
    raise handlers.Reject("Players may subscribe only to their game, its leaderboard and their own channel.")


@handlers.on_publish(quiz_settings.namespace)
async def quiz_publish(ctx: HandlerContext) -> list[OutgoingEvent] | None:
    if ctx.server:
        return None  # the game itself announcing: broadcast unchanged
    code, kind, rest = _parts(ctx)
    if kind == "answers" and not rest:
        return await _store_answers(ctx, code)
    if kind == "game" and await _is_staff(ctx):
        return list(ctx.events)  # type: ignore[arg-type]
    raise handlers.Unauthorized()


async def _store_answers(ctx: HandlerContext, code: str) -> list[OutgoingEvent]:
    """Answers over WebSocket: stored like the HTTP endpoint's, broadcast to nobody.

    Re-sending the same answer (a client retrying after a timeout it saw) is a
    success, so the player learns the answer was taken.
    """
    player_info = _player(ctx)
    if player_info is None or player_info["game"] != code:
        raise handlers.Unauthorized()
    received_at = timezone.now()
    requests = []
    for event in ctx.events:
        payload = event.payload if isinstance(event.payload, dict) else {}
        requests.append(
            services.AnswerRequest(
                code=code,
                question_id=payload.get("question_id"),
                choice=payload.get("choice"),
                received_at=received_at,
                player_id=player_info["player_id"],
            )
        )
    outcomes = await asyncio.gather(
        *(services.aanswer_submit(request) for request in requests), return_exceptions=True
    )
    failed: list[OutgoingEvent] = []
    for event, request, outcome in zip(ctx.events, requests, outcomes, strict=True):
        if not isinstance(outcome, BaseException):
            continue
        if isinstance(outcome, InvalidPlayerToken):
            raise handlers.Unauthorized()  # the player row is gone
        if isinstance(outcome, AlreadyAnswered) and outcome.stored_choice == request.choice:
            continue
        if isinstance(outcome, QuizError | ValidationError):
            failed.append(OutgoingEvent(event.id, error=getattr(outcome, "message", str(outcome))))
            continue
        raise outcome
    # Stored answers are accepted and dropped from the broadcast; failures are reported.
    return failed
