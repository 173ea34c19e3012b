"""The quiz HTTP API: plain async views (:mod:`realtime.transport.endpoints`) over services and selectors.

Errors have one shape, ``{"error": {"code", "message"}}``, made by
:func:`error_response` alone, with the status of the error raised; 429 and 503
carry ``Retry-After``, 405 ``Allow``. Players authorize with the token their
join returned (``Authorization: Bearer``, or ``X-Player-Token``); the host's
endpoints need a staff member's session, and its CSRF token on a POST.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from realtime.auth.csrf import csrf_failure
from realtime.transport.endpoints import endpoint
from realtime.transport.parsers import RequestError, read_json

from .. import channels, selectors, services
from ..admission import admit_join, joins_in_flight
from ..conf import quiz_settings
from ..exceptions import (
    Forbidden,
    GameNotFound,
    InvalidPlayerToken,
    QuestionSetNotFound,
    QuizError,
    Unavailable,
)
from ..models import Game, Player, QuestionSet, nickname_clean, rejoin_code_for
from . import openapi

logger = logging.getLogger(__name__)


def error_response(exc: Exception) -> JsonResponse:
    """The one place a quiz API error becomes a response; it answers every exception."""
    if isinstance(exc, RequestError):
        status, code, message, headers = exc.status, exc.code, exc.message, exc.headers
    else:
        error = _as_quiz_error(exc)
        status, code, message = error.status, error.code, error.message
        retry_after = getattr(error, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return JsonResponse({"error": {"code": code, "message": message}}, status=status, headers=headers)


def _as_quiz_error(exc: Exception) -> QuizError:
    if isinstance(exc, QuizError):
        return exc
    if isinstance(exc, ValidationError):
        return QuizError("; ".join(exc.messages))
    if isinstance(exc, DatabaseError):
        # The database is down or overloaded: tell clients to come back, never a 500.
        logger.warning("database unavailable: %s", exc)
        return Unavailable(retry_after=2)
    if _redis_unreachable(exc):
        # The cache's Redis is down or failing over (docs/DEPLOYMENT.md, "Redis Sentinel").
        logger.warning("redis unavailable: %s", exc)
        return Unavailable(retry_after=1)
    logger.exception("unexpected error in the quiz API")
    return Unavailable()


def _redis_unreachable(exc: Exception) -> bool:
    try:
        from redis.exceptions import ConnectionError, TimeoutError
    except ImportError:  # a site without Redis
        return False
    # A Sentinel naming no master yet (a failover under way) is a ConnectionError too.
    return isinstance(exc, ConnectionError | TimeoutError)


# Every view of the quiz API: its errors leave through error_response.
api = functools.partial(endpoint, on_error=error_response)


async def staff_only(request: HttpRequest) -> None:
    """Admit an active staff member's session, with its CSRF token on an unsafe method.

    Raises:
        Forbidden: anyone else, or a missing or wrong CSRF token.
    """
    user = await request.auser()
    if not (user.is_active and user.is_staff):
        raise Forbidden()
    reason = csrf_failure(request)
    if reason is not None:
        raise Forbidden(f"CSRF check failed: {reason}")


def _field(body: Any, name: str) -> Any:
    return body.get(name) if isinstance(body, dict) else None


def _integer(body: Any, name: str) -> int:
    value = _field(body, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise QuizError(f"{name}: A valid integer is required.")
    return value


# The IETF httpapi draft's Idempotency-Key is a structured-field string ("...");
# a bare token is taken too. The token of a keyed join is derived from the key,
# so a key must be as hard to guess as a token: a UUID or 16+ random characters.
IDEMPOTENCY_KEY_MIN = 16
IDEMPOTENCY_KEY_MAX = 255


def idempotency_key(request: HttpRequest) -> str | None:
    """The request's ``Idempotency-Key``, unquoted; ``None`` without one.

    Raises:
        QuizError: a key that is too short, too long, or not printable ASCII.
    """
    header = request.headers.get("idempotency-key")
    if header is None:
        return None
    key = header.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not (IDEMPOTENCY_KEY_MIN <= len(key) <= IDEMPOTENCY_KEY_MAX and key.isascii() and key.isprintable()):
        raise QuizError(
            f"Idempotency-Key: {IDEMPOTENCY_KEY_MIN} to {IDEMPOTENCY_KEY_MAX} printable ASCII characters "
            "(a UUID, say)."
        )
    return key


def _token(request: HttpRequest) -> str:
    header = request.headers.get("authorization") or request.headers.get("x-player-token") or ""
    token = header.removeprefix("Bearer ").strip()
    if not token:
        raise InvalidPlayerToken()
    return token


# -- players -------------------------------------------------------------------


@api(post=openapi.JOIN)
async def join(request: HttpRequest, code: str) -> HttpResponse:
    """``POST /api/quiz/games/<code>/join {"nickname"}`` → 201 once the player is stored.

    With an ``Idempotency-Key``, a retry gets the first attempt's 201 body again.
    """
    # Admission first: a refused join costs no parsing and no database.
    with joins_in_flight:
        await admit_join(request)
        key = idempotency_key(request)
        nickname = nickname_clean(_field(read_json(request), "nickname"))
        player, token = await services.aplayer_join(code=code, nickname=nickname, key=key)
    return _joined(code, player, token, status=201)


def _joined(code: str, player: Player, token: str, status: int) -> JsonResponse:
    return JsonResponse(
        {
            "player_id": player.pk,
            "nickname": player.nickname,
            "token": token,
            "game": code,
            "channels": channels.channels_for_player(code, player.pk),
            "rejoin_code": rejoin_code_for(player.token_hash),
        },
        status=status,
    )


@api(post=openapi.REJOIN)
async def rejoin(request: HttpRequest, code: str) -> HttpResponse:
    """``POST /api/quiz/games/<code>/rejoin {"nickname", "rejoin_code"}`` → 200 with a new token."""
    await admit_join(request)  # a rejoin is a join: the same rates keep guessers slow
    body = read_json(request)
    nickname = nickname_clean(_field(body, "nickname"))
    rejoin_code = _field(body, "rejoin_code")
    if not isinstance(rejoin_code, str) or not rejoin_code.strip():
        raise QuizError("rejoin_code: The code the player's page showed is required.")
    player, token = await sync_to_async(services.player_rejoin)(
        code=code, nickname=nickname, rejoin_code=rejoin_code
    )
    return _joined(code, player, token, status=200)


@api(post=openapi.ANSWER)
async def answers(request: HttpRequest, code: str) -> HttpResponse:
    """``POST /api/quiz/games/<code>/answers {"question_id", "choice"}`` → 202 once stored."""
    received_at = timezone.now()
    body = read_json(request)
    answer = await services.aanswer_submit(
        services.AnswerRequest(
            code=code,
            question_id=_integer(body, "question_id"),
            choice=_integer(body, "choice"),
            received_at=received_at,
            token=_token(request),
        )
    )
    return JsonResponse({"answer_id": answer.pk, "status": "accepted"}, status=202)


def _cached_response(payload: dict[str, Any] | None) -> JsonResponse:
    if payload is None:
        raise GameNotFound()
    response = JsonResponse(payload)
    response["Cache-Control"] = f"public, max-age={max(1, int(quiz_settings.cache_ttl))}"
    return response


@api(get=openapi.GAME_STATE)
async def game_state(request: HttpRequest, code: str) -> HttpResponse:
    """``GET /api/quiz/games/<code>``: state and current question (no answer), cached.

    ``server_time`` is computed per request, so clients can time countdowns
    against ``closes_at`` without trusting their own clocks.
    """
    state = await sync_to_async(selectors.game_state_cached)(code=code)
    if state is not None:
        state = {**state, "server_time": timezone.now().isoformat()}
    return _cached_response(state)


@api(get=openapi.LEADERBOARD)
async def leaderboard(request: HttpRequest, code: str) -> HttpResponse:
    """``GET /api/quiz/games/<code>/leaderboard``: top N and player count, cached."""
    return _cached_response(await sync_to_async(selectors.leaderboard_cached)(code=code))


@api(get=openapi.ME)
async def me(request: HttpRequest, code: str) -> HttpResponse:
    """``GET /api/quiz/games/<code>/me`` with the player's token: own score, rank and answers."""
    token = _token(request)

    def standing() -> dict[str, Any]:
        player = selectors.player_for_token(token=token)
        if player is None or player.game.code != code:
            raise InvalidPlayerToken()
        return selectors.player_standing(player=player)

    response = JsonResponse(await sync_to_async(standing)())
    response["Cache-Control"] = "private, no-store"
    return response


# -- the host ------------------------------------------------------------------


@api(post=openapi.QUESTION_SET_IMPORT)
async def question_set_import(request: HttpRequest) -> HttpResponse:
    """``POST /api/quiz/question-sets`` with the JSON of a question set (staff)."""
    await staff_only(request)
    body = read_json(request)

    def store() -> QuestionSet:
        return services.question_set_import(data=body)

    question_set = await sync_to_async(store)()
    count = await sync_to_async(selectors.question_count)(question_set=question_set)
    return JsonResponse({"id": question_set.pk, "questions": count}, status=201)


@api(post=openapi.GAME_CREATE)
async def game_create(request: HttpRequest) -> HttpResponse:
    """``POST /api/quiz/games {"question_set", "title"?}`` (staff)."""
    await staff_only(request)
    body = read_json(request)
    question_set = await sync_to_async(selectors.question_set_get)(pk=_integer(body, "question_set"))
    if question_set is None:
        raise QuestionSetNotFound()
    title = _field(body, "title")
    auto_reveal = _field(body, "auto_reveal") or False
    if not isinstance(auto_reveal, bool):
        raise QuizError("auto_reveal: true or false.")
    auto_next = _field(body, "auto_next")
    if auto_next is not None and (isinstance(auto_next, bool) or not isinstance(auto_next, int | float)):
        raise QuizError("auto_next: A number of seconds, or null.")
    game = await sync_to_async(services.game_create)(
        host=await request.auser(),
        question_set=question_set,
        title=str(title or ""),
        auto_reveal=auto_reveal,
        auto_next=None if auto_next is None else float(auto_next),
    )
    return _created(game)


def _created(game: Game) -> JsonResponse:
    return JsonResponse(
        {
            "code": game.code,
            "state": game.state,
            "title": game.title,
            "auto_reveal": game.auto_reveal,
            "auto_next": game.auto_next,
        },
        status=201,
    )


@api(post=openapi.PLAY_AGAIN)
async def play_again(request: HttpRequest, code: str) -> HttpResponse:
    """``POST /api/quiz/games/<code>/play-again`` (staff): the finished game's rematch, its lobby open."""
    await staff_only(request)
    game = await sync_to_async(selectors.game_get)(code=code)
    if game is None:
        raise GameNotFound()
    rematch = await sync_to_async(services.game_play_again)(game=game, host=await request.auser())
    return _created(rematch)


@api(post=openapi.GAME_CONTROL)
async def game_control(request: HttpRequest, code: str, action: str) -> HttpResponse:
    """``POST /api/quiz/games/<code>/<action>`` (staff): open, start, next, reveal, finish."""
    await staff_only(request)
    transition = services.GAME_TRANSITIONS.get(action)
    if transition is None:
        raise QuizError(f"Unknown action {action!r}.")
    game = await sync_to_async(selectors.game_get)(code=code)
    if game is None:
        raise GameNotFound()
    game = await sync_to_async(transition)(game=game)
    return JsonResponse({"code": game.code, "state": game.state, "question_index": game.question_index})


@api(post=openapi.PLAYER_REMOVE)
async def player_remove(request: HttpRequest, code: str, player_id: int) -> HttpResponse:
    """``POST /api/quiz/games/<code>/players/<id>/remove`` (staff): the player is out of the show."""
    await staff_only(request)
    game = await sync_to_async(selectors.game_get)(code=code)
    if game is None:
        raise GameNotFound()
    player = await sync_to_async(services.player_remove)(game=game, player_id=player_id)
    return JsonResponse({"player_id": player.pk, "nickname": player.nickname})
