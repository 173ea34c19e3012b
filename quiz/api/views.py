"""The quiz HTTP API: thin async views over services and selectors.

Errors have one shape, ``{"error": {"code", "message"}}``, with the status of
the :class:`quiz.exceptions.QuizError` raised; 429 and 503 carry ``Retry-After``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from adrf.views import APIView
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from realtime.api.parsers import SafeJSONParser

from .. import channels, selectors, services
from ..admission import admit_join, joins_in_flight
from ..conf import quiz_settings
from ..exceptions import GameNotFound, InvalidPlayerToken, QuizError, Throttled, Unavailable

logger = logging.getLogger(__name__)


def error_response(error: QuizError) -> Response:
    response = Response({"error": {"code": error.code, "message": error.message}}, status=error.status)
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def quiz_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, QuizError):
        return error_response(exc)
    if isinstance(exc, ValidationError):
        error = QuizError("; ".join(exc.messages))
        return error_response(error)
    if isinstance(exc, DatabaseError):
        # The database is down or overloaded: tell clients to come back, never a 500.
        logger.warning("database unavailable: %s", exc)
        return error_response(Unavailable(retry_after=2))
    if isinstance(exc, drf_exceptions.APIException):
        error = QuizError(str(exc.detail) if not isinstance(exc.detail, dict | list) else "Invalid request.")
        error.status = exc.status_code  # type: ignore[misc]
        error.code = exc.default_code  # type: ignore[misc]
        return error_response(error)
    logger.exception("unexpected error in the quiz API")
    return error_response(Unavailable())


class QuizView(APIView):
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    parser_classes = [SafeJSONParser]

    def get_exception_handler(self) -> Any:
        return quiz_exception_handler


class HostView(QuizView):
    """Staff only, with the session cookie and its CSRF token."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAdminUser]


def _nickname(data: Any) -> str:
    # By hand: a DRF serializer deep-copies its fields for every instance, on the hot path.
    nickname = data.get("nickname") if isinstance(data, dict) else None
    if not isinstance(nickname, str) or not 1 <= len(nickname.strip()) <= 40:
        raise QuizError("nickname: A nickname is 1 to 40 characters.")
    return nickname.strip()


class AnswerSerializer(serializers.Serializer[Any]):
    question_id = serializers.IntegerField()
    choice = serializers.IntegerField(min_value=0, max_value=5)


def _valid(serializer: serializers.Serializer[Any]) -> dict[str, Any]:
    if not serializer.is_valid():
        field, problems = next(iter(serializer.errors.items()))
        raise QuizError(f"{field}: {problems[0]}")
    return dict(serializer.validated_data)


@csrf_exempt
async def join(request: HttpRequest, code: str) -> HttpResponse:
    """``POST /api/quiz/games/<code>/join {"nickname"}`` → 201 once the player is stored.

    A plain async Django view with the errors the DRF views give: a crowd arrives
    by this path, and DRF's request wrapping, content negotiation and rendering
    cost more than everything else a join does on the event loop.
    """
    try:
        if request.method != "POST":
            raise drf_exceptions.MethodNotAllowed(request.method or "")
        # Admission first: a refused join costs no parsing and no database.
        with joins_in_flight:
            admit_join(request)
            nickname = _nickname(_json_body(request))
            player, token = await services.aplayer_join(code=code, nickname=nickname)
    except Exception as error:
        return _error_json(error)
    return JsonResponse(
        {
            "player_id": player.pk,
            "nickname": player.nickname,
            "token": token,
            "game": code,
            "channels": channels.channels_for_player(code, player.pk),
        },
        status=201,
    )


def _error_json(error: Exception) -> JsonResponse:
    """What :func:`quiz_exception_handler` answers, without DRF's rendering."""
    response = quiz_exception_handler(error, {})
    assert response is not None  # it answers every exception
    json_response = JsonResponse(response.data, status=response.status_code)
    if "Retry-After" in response:
        json_response["Retry-After"] = response["Retry-After"]
    if isinstance(error, drf_exceptions.MethodNotAllowed):
        json_response["Allow"] = "POST"
    return json_response


def _json_body(request: HttpRequest) -> Any:
    """The body as JSON, refused as DRF's ``SafeJSONParser`` refuses it."""
    if not request.body:
        return {}
    if request.content_type != "application/json":
        raise drf_exceptions.UnsupportedMediaType(request.content_type)
    try:
        return json.loads(request.body)
    except (ValueError, RecursionError) as error:
        raise drf_exceptions.ParseError(f"JSON parse error - {error}") from None


def _token(request: Request) -> str:
    header = request.headers.get("authorization") or request.headers.get("x-player-token") or ""
    token = header.removeprefix("Bearer ").strip()
    if not token:
        raise InvalidPlayerToken()
    return token


class AnswerView(QuizView):
    """``POST /api/quiz/games/<code>/answers {"question_id", "choice"}`` → 202 once stored."""

    async def post(self, request: Request, code: str) -> Response:
        received_at = timezone.now()
        data = _valid(AnswerSerializer(data=request.data))
        answer = await services.aanswer_submit(
            services.AnswerRequest(
                code=code,
                question_id=data["question_id"],
                choice=data["choice"],
                received_at=received_at,
                token=_token(request),
            )
        )
        return Response({"answer_id": answer.pk, "status": "accepted"}, status=202)


def _cached_response(payload: dict[str, Any] | None) -> Response:
    if payload is None:
        raise GameNotFound()
    response = Response(payload)
    response["Cache-Control"] = f"public, max-age={max(1, int(quiz_settings.cache_ttl))}"
    return response


class GameStateView(QuizView):
    """``GET /api/quiz/games/<code>``: state and current question (no answer), cached.

    ``server_time`` is computed per request, so clients can time countdowns
    against ``closes_at`` without trusting their own clocks.
    """

    async def get(self, request: Request, code: str) -> Response:
        state = await sync_to_async(selectors.game_state_cached)(code=code)
        if state is not None:
            state = {**state, "server_time": timezone.now().isoformat()}
        return _cached_response(state)


class MeView(QuizView):
    """``GET /api/quiz/games/<code>/me`` with the player's token: own score, rank and answers."""

    async def get(self, request: Request, code: str) -> Response:
        token = _token(request)

        def standing() -> dict[str, Any]:
            player = selectors.player_for_token(token=token)
            if player is None or player.game.code != code:
                raise InvalidPlayerToken()
            return selectors.player_standing(player=player)

        response = Response(await sync_to_async(standing)())
        response["Cache-Control"] = "private, no-store"
        return response


class LeaderboardView(QuizView):
    """``GET /api/quiz/games/<code>/leaderboard``: top N and player count, cached."""

    async def get(self, request: Request, code: str) -> Response:
        return _cached_response(await sync_to_async(selectors.leaderboard_cached)(code=code))


class GameCreateView(HostView):
    """``POST /api/quiz/games {"question_set", "title"?}`` (staff)."""

    def post(self, request: Request) -> Response:
        question_set = selectors.question_set_get(pk=request.data.get("question_set"))
        if question_set is None:
            raise Http404()
        game = services.game_create(
            host=request.user, question_set=question_set, title=str(request.data.get("title") or "")
        )
        return Response({"code": game.code, "state": game.state, "title": game.title}, status=201)


class QuestionSetImportView(HostView):
    """``POST /api/quiz/question-sets`` with the JSON of a question set (staff)."""

    def post(self, request: Request) -> Response:
        question_set = services.question_set_import(data=request.data)
        return Response(
            {"id": question_set.pk, "questions": selectors.question_count(question_set=question_set)},
            status=201,
        )


TRANSITIONS = {
    "open": services.game_open,
    "start": services.game_start,
    "next": services.game_next,
    "reveal": services.game_reveal,
    "finish": services.game_finish,
}


class GameControlView(HostView):
    """``POST /api/quiz/games/<code>/<action>`` (staff): open, start, next, reveal, finish."""

    def post(self, request: Request, code: str, action: str) -> Response:
        transition = TRANSITIONS.get(action)
        if transition is None:
            raise QuizError(f"Unknown action {action!r}.")
        game = selectors.game_get(code=code)
        if game is None:
            raise GameNotFound()
        game = transition(game=game)
        return Response({"code": game.code, "state": game.state, "question_index": game.question_index})


__all__ = ["Throttled"]
