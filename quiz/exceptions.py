"""The quiz's error tree; the API turns each into ``{"error": {"code", "message"}}`` with its status."""

from __future__ import annotations

from typing import ClassVar


class QuizError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    default_message: ClassVar[str] = "The request is not valid."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class GameNotFound(QuizError):
    status = 404
    code = "game_not_found"
    default_message = "No game has this code."


class GameNotJoinable(QuizError):
    status = 409
    code = "game_not_joinable"
    default_message = "This game is not open for joining."


class InvalidNickname(QuizError):
    """The nickname breaks :func:`quiz.models.nickname_clean`'s rule."""


class NicknameTaken(QuizError):
    status = 409
    code = "nickname_taken"
    default_message = "Another player in this game has this nickname."


class RejoinRefused(QuizError):
    """No player of the game has this nickname, or the rejoin code is not theirs (not told apart)."""

    status = 403
    code = "rejoin_refused"
    default_message = "This rejoin code does not match this nickname."


class InvalidTransition(QuizError):
    status = 409
    code = "invalid_transition"


class NotAnswerable(QuizError):
    status = 409
    code = "not_answerable"
    default_message = "This question is not open for answers."


class AlreadyAnswered(QuizError):
    status = 409
    code = "already_answered"
    default_message = "This player has already answered this question."

    def __init__(self, message: str | None = None, *, stored_choice: int | None = None) -> None:
        super().__init__(message)
        # The choice already stored: a retry of the same answer is no conflict.
        self.stored_choice = stored_choice


class InvalidChoice(QuizError):
    code = "invalid_choice"
    default_message = "The choice is not one of the question's choices."


class QuestionSetNotFound(QuizError):
    status = 404
    code = "question_set_not_found"
    default_message = "No question set has this id."


class InvalidPlayerToken(QuizError):
    status = 401
    code = "invalid_player_token"
    default_message = "A valid player token is required."


class Forbidden(QuizError):
    """The host's endpoints: a staff member's session (and its CSRF token) is required."""

    status = 403
    code = "forbidden"
    default_message = "Staff only."


class Throttled(QuizError):
    status = 429
    code = "throttled"
    default_message = "Too many joins right now; retry after the indicated delay."

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__()


class TooManyRejoins(Throttled):
    default_message = "Too many wrong rejoin codes for this nickname; retry after the indicated delay."


class Unavailable(QuizError):
    status = 503
    code = "unavailable"
    default_message = "The service is temporarily unavailable; retry shortly."

    def __init__(self, retry_after: int = 1) -> None:
        self.retry_after = retry_after
        super().__init__()


class ConcurrentScoring(Exception):
    """Another worker scored answers of this batch meanwhile; the batch rolled back."""
