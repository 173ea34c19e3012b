"""The quiz API in the OpenAPI document: its bodies and one operation per view.

The serializers describe the bodies only: the views check input by hand (a DRF
serializer costs ~130 µs a request on the event loop, as much as the rest of a
join), and drf-spectacular turns these classes into components. Limits come
from the constants the code enforces.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from realtime.transport.schema import Operation, operation, retry_after, session_cookie

from ..models import NICKNAME_MAX_LENGTH, GameState
from ..services import GAME_TRANSITIONS


class ErrorDetailSerializer(serializers.Serializer[Any]):
    code = serializers.CharField(
        help_text="`bad_request`, `parse_error`, `game_not_found`, `nickname_taken`, `throttled`..."
    )
    message = serializers.CharField()


class QuizErrorSerializer(serializers.Serializer[Any]):
    error = ErrorDetailSerializer()


class JoinRequestSerializer(serializers.Serializer[Any]):
    nickname = serializers.CharField(
        max_length=NICKNAME_MAX_LENGTH, help_text="Surrounding spaces are dropped; unique in the game."
    )


class PlayerChannelsSerializer(serializers.Serializer[Any]):
    game = serializers.CharField(help_text="State and questions.")
    leaderboard = serializers.CharField()
    player = serializers.CharField(help_text="This player's own scores; only they may subscribe.")
    answers = serializers.CharField(help_text="Publish answers here over WebSocket.")


class JoinedSerializer(serializers.Serializer[Any]):
    player_id = serializers.IntegerField()
    nickname = serializers.CharField()
    token = serializers.CharField(help_text="The player's secret: `Authorization: Bearer <token>`.")
    game = serializers.CharField(help_text="The join code.")
    channels = PlayerChannelsSerializer()
    rejoin_code = serializers.CharField(
        help_text="6 letters to show the player: with their nickname they rejoin on another device."
    )


class RejoinRequestSerializer(serializers.Serializer[Any]):
    nickname = serializers.CharField(max_length=NICKNAME_MAX_LENGTH)
    rejoin_code = serializers.CharField(
        help_text="The code the player's page showed after joining; any case."
    )


class AnswerRequestSerializer(serializers.Serializer[Any]):
    question_id = serializers.IntegerField(help_text="The question being asked now.")
    choice = serializers.IntegerField(min_value=0, help_text="Index into the question's choices.")


class AnswerAcceptedSerializer(serializers.Serializer[Any]):
    answer_id = serializers.IntegerField()
    status = serializers.CharField(help_text="`accepted`: stored, to be scored.")


class QuestionSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    index = serializers.IntegerField(min_value=0)
    total = serializers.IntegerField()
    text = serializers.CharField()
    choices = serializers.ListField(child=serializers.CharField())
    time_limit = serializers.FloatField(help_text="Seconds.")
    points = serializers.IntegerField()


class LeaderboardEntrySerializer(serializers.Serializer[Any]):
    rank = serializers.IntegerField()
    player_id = serializers.IntegerField()
    nickname = serializers.CharField()
    score = serializers.IntegerField()


class LeaderboardSerializer(serializers.Serializer[Any]):
    type = serializers.CharField(help_text="`leaderboard`.")
    code = serializers.CharField()
    state = serializers.ChoiceField(choices=GameState.choices)
    players = serializers.IntegerField()
    answered = serializers.IntegerField(allow_null=True, help_text="Answers to the current question.")
    question_id = serializers.IntegerField(allow_null=True)
    final = serializers.BooleanField()
    top = LeaderboardEntrySerializer(many=True)


class GameStateSerializer(serializers.Serializer[Any]):
    type = serializers.CharField(help_text="`state`.")
    code = serializers.CharField()
    title = serializers.CharField()
    state = serializers.ChoiceField(choices=GameState.choices)
    server_time = serializers.DateTimeField(help_text="The server's clock, to time countdowns by.")
    question = QuestionSerializer(required=False, help_text="While asking or revealing; never the answer.")
    closes_at = serializers.DateTimeField(required=False, allow_null=True)
    correct_choice = serializers.IntegerField(required=False, help_text="During the reveal only.")
    counts = serializers.ListField(
        child=serializers.IntegerField(), required=False, help_text="Answers per choice, during the reveal."
    )
    next_game = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="Once finished: the join code of the rematch the host started (`null`: none yet).",
    )
    leaderboard_before = LeaderboardSerializer(
        required=False,
        help_text="While a question is open: the leaderboard as it stood when the question opened"
        " (the pages hold the live one until the reveal).",
    )


class StandingAnswerSerializer(serializers.Serializer[Any]):
    question_id = serializers.IntegerField()
    choice = serializers.IntegerField()
    scored = serializers.BooleanField()
    correct = serializers.BooleanField(allow_null=True, help_text="`null` until scored.")
    points = serializers.IntegerField(help_text="0 until scored.")


class StandingSerializer(serializers.Serializer[Any]):
    player_id = serializers.IntegerField()
    nickname = serializers.CharField()
    score = serializers.IntegerField()
    rank = serializers.IntegerField()
    players = serializers.IntegerField()
    answers = StandingAnswerSerializer(many=True)
    rejoin_code = serializers.CharField(help_text="The player's current rejoin code.")


class QuestionImportSerializer(serializers.Serializer[Any]):
    text = serializers.CharField()
    choices = serializers.ListField(child=serializers.CharField(), min_length=2, max_length=6)
    correct = serializers.IntegerField(min_value=0, help_text="The right choice's index (`correct_choice`).")
    time_limit = serializers.FloatField(required=False, min_value=1.0, max_value=600.0, help_text="Seconds.")
    points = serializers.IntegerField(required=False, min_value=0)


class QuestionSetImportSerializer(serializers.Serializer[Any]):
    title = serializers.CharField()
    questions = QuestionImportSerializer(many=True)


class QuestionSetImportedSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    questions = serializers.IntegerField(help_text="How many questions were stored.")


class GameCreateSerializer(serializers.Serializer[Any]):
    question_set = serializers.IntegerField(help_text="The id of a question set.")
    title = serializers.CharField(required=False, help_text="The question set's title if absent.")
    auto_reveal = serializers.BooleanField(
        required=False, default=False, help_text="Reveal the answer as soon as the question's time is up."
    )
    auto_next = serializers.FloatField(
        required=False,
        allow_null=True,
        min_value=0.0,
        max_value=600.0,
        help_text="Seconds after each reveal before the next question (the podium after the last);"
        " `null`: the host moves on.",
    )


class GameCreatedSerializer(serializers.Serializer[Any]):
    code = serializers.CharField(help_text="The join code.")
    state = serializers.ChoiceField(choices=GameState.choices)
    title = serializers.CharField()
    auto_reveal = serializers.BooleanField()
    auto_next = serializers.FloatField(allow_null=True)


class GameControlledSerializer(serializers.Serializer[Any]):
    code = serializers.CharField()
    state = serializers.ChoiceField(choices=GameState.choices)
    question_index = serializers.IntegerField(help_text="-1 before the first question.")


class HostQuestionSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    index = serializers.IntegerField()
    text = serializers.CharField()
    choices = serializers.ListField(child=serializers.CharField())
    correct_choice = serializers.IntegerField()
    time_limit = serializers.FloatField()
    points = serializers.IntegerField()


class HostGameSerializer(serializers.Serializer[Any]):
    code = serializers.CharField()
    title = serializers.CharField()
    state = serializers.ChoiceField(choices=GameState.choices)
    question_index = serializers.IntegerField()
    question_id = serializers.IntegerField(allow_null=True)
    opened_at = serializers.DateTimeField(allow_null=True)
    closes_at = serializers.DateTimeField(allow_null=True)
    server_time = serializers.DateTimeField()
    counts = serializers.ListField(child=serializers.IntegerField(), allow_null=True)
    questions = HostQuestionSerializer(many=True)
    auto_reveal = serializers.BooleanField(help_text="The answer is revealed when time is up.")
    auto_next = serializers.FloatField(allow_null=True, help_text="Seconds from a reveal to the next step.")
    next_game = serializers.CharField(
        allow_null=True, help_text="The join code of the rematch, once started."
    )


# -- operations ----------------------------------------------------------------

BODY_ERRORS = {
    400: "`parse_error` (not JSON) or `bad_request`: a field is missing or wrong.",
    413: "`payload_too_large`.",
    415: "`unsupported_media_type`: the body is not `application/json`.",
}
HOST_ERRORS = {403: "`forbidden`: not a staff member's session, or no CSRF token."}
PLAYER = {
    "playerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The token the player's join returned (or send it in `X-Player-Token`).",
    }
}
HOST = {"session": session_cookie}
CODE = OpenApiParameter("code", str, OpenApiParameter.PATH, description="The game's join code.")


def _operation(
    *,
    success: dict[int, Any],
    errors: dict[int, str],
    security: dict[str, Any] | None = None,
    parameters: tuple[OpenApiParameter, ...] = (CODE,),
    **schema: Any,
) -> Operation:
    """A quiz API operation: its success and error responses (``errors`` by status, described).

    Adds what every endpoint has: the 405 and 503 errors, ``Retry-After`` on
    429 and 503, the tag; and for the host's endpoints (``security=HOST``) 403.
    """
    host = security is HOST
    described = {**(HOST_ERRORS if host else {}), **errors}
    described.setdefault(405, "`method_not_allowed`.")
    described.setdefault(503, "`unavailable`: the database is unreachable; retry after the delay.")
    responses = {
        status: OpenApiResponse(QuizErrorSerializer, description=text) for status, text in described.items()
    }
    return operation(
        tags=["quiz host" if host else "quiz"],
        security=security,
        parameters=[*parameters, retry_after(429, 503)],
        responses={**success, **responses},
        **schema,
    )


JOIN = _operation(
    operation_id="game_join",
    summary="Join a game as a player",
    description=(
        "201 means the player is stored. Admission is rate-limited: a 429 or 503 carries `Retry-After`; "
        "retry with exponential backoff and jitter, never sooner than it says."
    ),
    request=JoinRequestSerializer,
    success={201: OpenApiResponse(JoinedSerializer, description="Joined: keep the token.")},
    errors={
        **BODY_ERRORS,
        404: "`game_not_found`.",
        409: "`game_not_joinable` (not open, or over) or `nickname_taken`.",
        429: "`throttled`: too many joins right now, from everyone or from this address.",
    },
)

REJOIN = _operation(
    operation_id="game_rejoin",
    summary="Rejoin a game as the player with this nickname, on another device",
    description=(
        "With the rejoin code the player's page showed. The player keeps their score and answers and gets"
        " a new token (and code); the old token and code stop working. Rate-limited like joins, and after"
        " 10 wrong codes in 10 minutes for a nickname its rejoins wait (429)."
    ),
    request=RejoinRequestSerializer,
    success={200: OpenApiResponse(JoinedSerializer, description="Rejoined: keep the new token.")},
    errors={
        **BODY_ERRORS,
        403: "`rejoin_refused`: no such nickname in the game, or not its code.",
        404: "`game_not_found`.",
        429: "`throttled`: too many joins right now, or too many wrong codes for the nickname.",
    },
)

ANSWER = _operation(
    operation_id="answer_submit",
    summary="Answer the current question",
    description="202 means the answer is stored; it is scored soon after, and the score arrives on the "
    "player's channel.",
    security=PLAYER,
    request=AnswerRequestSerializer,
    success={202: OpenApiResponse(AnswerAcceptedSerializer, description="Stored, to be scored.")},
    errors={
        **BODY_ERRORS,
        400: f"{BODY_ERRORS[400]} `invalid_choice`: no such choice.",
        401: "`invalid_player_token`: no token, or not one of this game's players.",
        409: "`not_answerable` (not this question, or time is up) or `already_answered`.",
    },
)

GAME_STATE = _operation(
    operation_id="game_state",
    summary="The game's state and current question",
    description="Cached for a second. Never carries the right answer before the reveal.",
    success={200: GameStateSerializer},
    errors={404: "`game_not_found`."},
)

LEADERBOARD = _operation(
    operation_id="leaderboard_get",
    summary="The top players and the player count",
    description="Cached for a second; the same payload goes out on the leaderboard channel.",
    success={200: LeaderboardSerializer},
    errors={404: "`game_not_found`."},
)

ME = _operation(
    operation_id="player_standing",
    summary="The player's own score, rank and answers",
    description="What the player's page needs after a reload. Never cached.",
    security=PLAYER,
    success={200: StandingSerializer},
    errors={401: "`invalid_player_token`."},
)

QUESTION_SET_IMPORT = _operation(
    operation_id="question_set_import",
    summary="Import a question set",
    description="All or nothing: one question that breaks a rule (2 to 6 choices, the right one among them)"
    " stores none.",
    security=HOST,
    parameters=(),
    request=QuestionSetImportSerializer,
    success={201: QuestionSetImportedSerializer},
    errors=BODY_ERRORS,
)

GAME_CREATE = _operation(
    operation_id="game_create",
    summary="Create a game from a question set",
    description="The game starts in `draft`; `open` it for players to join.",
    security=HOST,
    parameters=(),
    request=GameCreateSerializer,
    success={201: GameCreatedSerializer},
    errors={**BODY_ERRORS, 404: "`question_set_not_found`."},
)

GAME_CONTROL = _operation(
    operation_id="game_control",
    summary="Move the game on: open, start, next, reveal, finish",
    description="Each action is allowed from some states only; the game channel tells every player.",
    security=HOST,
    parameters=(CODE, OpenApiParameter("action", str, OpenApiParameter.PATH, enum=list(GAME_TRANSITIONS))),
    request=None,
    success={200: GameControlledSerializer},
    errors={
        400: "`bad_request`: an unknown action.",
        404: "`game_not_found`.",
        409: "`invalid_transition`: not from the game's current state.",
    },
)

HOST_GAME = _operation(
    operation_id="host_game",
    summary="The game with every question and its right answer",
    description="For the host console and the big screen, to catch up after a reload. Never cached.",
    security=HOST,
    success={200: HostGameSerializer},
    errors={404: "`game_not_found`."},
)

PLAY_AGAIN = _operation(
    operation_id="game_play_again",
    summary="Play a finished game again with the same players",
    description="A new game of the same question set and settings, its lobby open; the finished game's"
    " channel announces it (`next_game`) so its players can join under the same nickname. Asking again"
    " gives the same game.",
    security=HOST,
    request=None,
    success={201: GameCreatedSerializer},
    errors={404: "`game_not_found`.", 409: "`invalid_transition`: the game is not finished."},
)
