"""The game show's data (DESIGN §8): question sets, games, players and answers."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.crypto import salted_hmac

from .exceptions import InvalidNickname

NICKNAME_MAX_LENGTH = 40


class QuestionSet(models.Model):
    """Reusable questions; a game is played from one set."""

    title = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.title


class Question(models.Model):
    question_set = models.ForeignKey(QuestionSet, on_delete=models.CASCADE, related_name="questions")
    order = models.PositiveIntegerField(default=0)
    text = models.CharField(max_length=500)
    choices = models.JSONField(help_text="2 to 6 answer texts.")
    correct_choice = models.PositiveSmallIntegerField(help_text="Index of the right answer, from 0.")
    time_limit = models.FloatField(
        default=20.0, validators=[MinValueValidator(1.0), MaxValueValidator(600.0)]
    )
    points = models.PositiveIntegerField(default=1000)

    class Meta:
        ordering = ["question_set", "order", "pk"]

    def __str__(self) -> str:
        return self.text

    def clean(self) -> None:
        if not isinstance(self.choices, list) or not 2 <= len(self.choices) <= 6:
            raise ValidationError({"choices": "A question has 2 to 6 choices."})
        if not all(isinstance(choice, str) and choice.strip() for choice in self.choices):
            raise ValidationError({"choices": "Every choice is a non-empty text."})
        if self.correct_choice is not None and self.correct_choice >= len(self.choices):
            raise ValidationError({"correct_choice": "The correct choice must be one of the choices."})


class GameState(models.TextChoices):
    DRAFT = "draft", "Draft"
    LOBBY = "lobby", "Lobby"
    QUESTION = "question", "Question"
    REVEAL = "reveal", "Reveal"
    FINISHED = "finished", "Finished"


class Game(models.Model):
    """One show: players join with ``code``; the host moves it through its states."""

    code = models.CharField(max_length=12, unique=True)
    title = models.CharField(max_length=200)
    question_set = models.ForeignKey(QuestionSet, on_delete=models.PROTECT, related_name="games")
    host = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="hosted_games")
    state = models.CharField(max_length=10, choices=GameState.choices, default=GameState.DRAFT)
    # Index into the set's questions of the current (or last) question; -1 before the first.
    question_index = models.IntegerField(default=-1)
    current_question = models.ForeignKey(
        Question, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    question_opened_at = models.DateTimeField(null=True, blank=True)
    question_closes_at = models.DateTimeField(null=True, blank=True)
    # The show runs itself (quiz.autopilot) when the host asks for it, per game.
    auto_reveal = models.BooleanField(
        default=False, help_text="Reveal the answer as soon as the question's time is up."
    )
    auto_next = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(600.0)],
        help_text="Seconds after a reveal before the next question (the podium after the last one);"
        " empty: the host moves on.",
    )
    # When the autopilot takes the game's next step (reveal, next, finish); null: the host does.
    next_step_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The game the host started with the same players after this one ("play again").
    next_game = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        # The autopilot's queue: games with a step due, soonest first.
        indexes = [
            models.Index(
                fields=["next_step_at"], condition=models.Q(next_step_at__isnull=False), name="quiz_next_step"
            )
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.code})"


def nickname_clean(value: object) -> str:
    """The one nickname rule, for the join API, the join service and the player page.

    Returns:
        The nickname as stored: ``value`` without surrounding spaces.

    Raises:
        InvalidNickname: ``value`` is not a text of 1 to ``NICKNAME_MAX_LENGTH``
        characters once stripped.
    """
    nickname = value.strip() if isinstance(value, str) else ""
    if not 1 <= len(nickname) <= NICKNAME_MAX_LENGTH:
        raise InvalidNickname(f"nickname: A nickname is 1 to {NICKNAME_MAX_LENGTH} characters.")
    return nickname


def token_hash(token: str) -> str:
    """How a player's secret token is stored: its SHA-256, so the table never holds a usable token."""
    return hashlib.sha256(token.encode()).hexdigest()


REJOIN_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # 32 letters: no 0/O, 1/I
REJOIN_CODE_LENGTH = 6


def rejoin_code_for(stored_token_hash: str) -> str:
    """A player's rejoin code: 6 letters a person can read out and type on another device.

    Derived from the player's token (its stored hash) with the site's secret key,
    so nothing more is stored, only the server can make one, and a new token
    (after a rejoin) makes the old code worthless. 32 letters, 6 of them: about
    10⁹ codes, against guesses limited per nickname (quiz.services.player_rejoin).
    """
    digest = salted_hmac("quiz.rejoin", stored_token_hash, algorithm="sha256").digest()
    # 256 is a multiple of 32: each byte picks a letter without bias.
    return "".join(REJOIN_ALPHABET[byte % len(REJOIN_ALPHABET)] for byte in digest[:REJOIN_CODE_LENGTH])


def device_for(stored_token_hash: str) -> str:
    """Which of a player's tokens a socket was opened with, in its handler context.

    A rejoin gives the player a new token; the sockets of the old one (the old
    device) are closed by this tag while the new device's stay. Derived like the
    rejoin code, so it tells nothing about the token itself.
    """
    return salted_hmac("quiz.device", stored_token_hash, algorithm="sha256").hexdigest()[:16]


class Player(models.Model):
    game = models.ForeignKey(Game, on_delete=models.CASCADE, related_name="players")
    nickname = models.CharField(max_length=NICKNAME_MAX_LENGTH)
    token_hash = models.CharField(max_length=64, unique=True)
    # The SHA-256 of the join's Idempotency-Key ("" without one): a retry with
    # the same key gets this player back (quiz.services.players).
    join_key = models.CharField(max_length=64, blank=True, default="", editable=False)
    score = models.IntegerField(default=0)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["game", "nickname"], name="quiz_unique_nickname"),
            models.UniqueConstraint(
                fields=["game", "join_key"],
                condition=~models.Q(join_key=""),
                name="quiz_unique_join_key",
            ),
        ]
        indexes = [models.Index(fields=["game", "-score"], name="quiz_player_rank")]

    def __str__(self) -> str:
        return self.nickname


class Answer(models.Model):
    """One player's answer to one question; stored unscored, scored by the worker."""

    game = models.ForeignKey(Game, on_delete=models.CASCADE, related_name="answers")
    player = models.ForeignKey(Player, on_delete=models.CASCADE, related_name="answers")
    question = models.ForeignKey(Question, on_delete=models.PROTECT, related_name="answers")
    choice = models.PositiveSmallIntegerField()
    received_at = models.DateTimeField()
    # Seconds from the question opening to the answer's arrival, fixed at receipt.
    elapsed = models.FloatField(default=0.0)
    scored_at = models.DateTimeField(null=True, blank=True)
    correct = models.BooleanField(null=True)
    points = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["player", "question"], name="quiz_one_answer")]
        indexes = [
            # The worker's queue: unscored answers, oldest first.
            models.Index(fields=["received_at"], name="quiz_unscored", condition=models.Q(scored_at=None)),
            models.Index(fields=["question", "choice"], name="quiz_answer_counts"),
        ]

    def __str__(self) -> str:
        return f"{self.player} → {self.choice}"


class Feed(models.Model):
    """A game's coalesced broadcast (quiz.coalescer): its leaderboard, or its host progress.

    ``stale`` is set by the transaction of every change the feed shows (a join,
    a score that moved, an answer, a transition) and cleared by the broadcast
    that shows it; ``sent`` numbers the broadcasts and ``sent_at`` spaces them
    at least ``LEADERBOARD_INTERVAL`` apart. A game nobody changes costs nothing.
    """

    class Kind(models.TextChoices):
        LEADERBOARD = "leaderboard", "Leaderboard"
        PROGRESS = "progress", "Host progress"

    game = models.ForeignKey(Game, on_delete=models.CASCADE, related_name="feeds")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    stale = models.BooleanField(default=True)
    sent = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["game", "kind"], name="quiz_one_feed_per_kind")]
        # Games left with something to broadcast, for a process that starts.
        indexes = [models.Index(fields=["game"], condition=models.Q(stale=True), name="quiz_stale_feeds")]

    def __str__(self) -> str:
        return f"{self.game} {self.kind}"
