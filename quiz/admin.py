"""The game show in the Django admin: question sets to edit, games and their players to look at.

Question sets and their questions are content: staff write them here (or
import JSON from the host page). Games, players and answers are what a show
did: read-only here (a game changes only through its transitions,
``quiz.services.games``), with the player count and the state on the lists.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from .models import Answer, Game, Player, Question, QuestionSet


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable by staff, changed only by the game itself."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class QuestionInline(admin.StackedInline):
    model = Question
    extra = 0
    fields = (("order", "time_limit", "points"), "text", "choices", "correct_choice")


@admin.register(QuestionSet)
class QuestionSetAdmin(admin.ModelAdmin):
    list_display = ("title", "question_count", "created_at")
    search_fields = ("title",)
    inlines = [QuestionInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[QuestionSet]:
        return super().get_queryset(request).annotate(question_count=Count("questions"))

    @admin.display(description="questions", ordering="question_count")
    def question_count(self, obj: Any) -> int:
        return int(obj.question_count)


@admin.register(Question)
class QuestionAdmin(admin.ModelAdmin):
    list_display = ("text", "question_set", "order", "correct_choice", "time_limit", "points")
    list_filter = ("question_set",)
    search_fields = ("text",)


class PlayerInline(ReadOnlyInline):
    model = Player
    fields = ("nickname", "score", "joined_at")
    readonly_fields = fields
    ordering = ("-score", "pk")


@admin.register(Game)
class GameAdmin(ReadOnlyAdmin):
    list_display = (
        "code",
        "title",
        "state",
        "player_count",
        "question_progress",
        "host",
        "created_at",
        "pages",
    )
    list_filter = ("state",)
    search_fields = ("code", "title")
    date_hierarchy = "created_at"
    inlines = [PlayerInline]
    fields = (
        ("code", "title", "state"),
        ("question_set", "question_index", "current_question"),
        ("question_opened_at", "question_closes_at"),
        ("auto_reveal", "auto_next", "next_step_at"),
        ("host", "next_game", "created_at", "updated_at"),
    )
    readonly_fields = (
        "code",
        "title",
        "state",
        "question_set",
        "question_index",
        "current_question",
        "question_opened_at",
        "question_closes_at",
        "auto_reveal",
        "auto_next",
        "next_step_at",
        "host",
        "next_game",
        "created_at",
        "updated_at",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Game]:
        return (
            super()
            .get_queryset(request)
            .select_related("host", "question_set")
            .annotate(player_count=Count("players", distinct=True))
        )

    @admin.display(description="players", ordering="player_count")
    def player_count(self, obj: Any) -> int:
        return int(obj.player_count)

    @admin.display(description="question")
    def question_progress(self, obj: Game) -> str:
        return "–" if obj.question_index < 0 else str(obj.question_index + 1)

    @admin.display(description="pages")
    def pages(self, obj: Game) -> str:
        return format_html(
            '<a href="{}">host</a> · <a href="{}">screen</a> · <a href="{}">play</a>',
            reverse("quiz:host", args=[obj.code]),
            reverse("quiz:screen", args=[obj.code]),
            reverse("quiz:play", args=[obj.code]),
        )


@admin.register(Player)
class PlayerAdmin(ReadOnlyAdmin):
    list_display = ("nickname", "game", "score", "answer_count", "joined_at")
    list_filter = ("game__state",)
    search_fields = ("nickname", "game__code")
    list_select_related = ("game",)
    exclude = ("token_hash",)  # a hash, but still nobody's business
    readonly_fields = ("game", "nickname", "score", "joined_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Player]:
        return super().get_queryset(request).annotate(answer_count=Count("answers"))

    @admin.display(description="answers", ordering="answer_count")
    def answer_count(self, obj: Any) -> int:
        return int(obj.answer_count)


@admin.register(Answer)
class AnswerAdmin(ReadOnlyAdmin):
    list_display = ("player", "game", "question", "choice", "correct", "points", "elapsed", "received_at")
    list_filter = ("correct", "game__state")
    search_fields = ("player__nickname", "game__code")
    list_select_related = ("player", "game", "question")
    readonly_fields = (
        "game",
        "player",
        "question",
        "choice",
        "received_at",
        "elapsed",
        "scored_at",
        "correct",
        "points",
    )
