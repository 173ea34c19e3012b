"""The game show's pages (DESIGN §8): the player page, the host console and the big screen.

The pages are plain templates; their scripts talk to the quiz API and to the
realtime protocol with the shipped client (``realtime/realtime.js``). Players
authorize with their token (CUSTOM mode); the host console and the big screen
use the staff session (USER mode). ``host_game`` is the one staff-only JSON
read the public API lacks: the questions with their right answers; it is a
quiz API endpoint like the others (``quiz.api.views``), errors included.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_POST, require_safe

from . import channels, forms, selectors, services
from .api import openapi
from .api.views import api, staff_only
from .exceptions import GameNotFound
from .models import NICKNAME_MAX_LENGTH, Game, GameState, QuestionSet


def _game_or_404(code: str) -> Game:
    game = selectors.game_get(code=code)
    if game is None:
        raise Http404("No game has this code.")
    return game


def _canonical(code: str) -> str | None:
    """The stored spelling of a join code typed in any case, or ``None``."""
    cleaned = code.strip().upper()
    return cleaned if cleaned and selectors.game_exists(code=cleaned) else None


def _config(request: HttpRequest, game: Game) -> dict[str, Any]:
    """What every page's script needs: the game and the URLs it talks to."""
    code = game.code
    return {
        "code": code,
        "title": game.title,
        "state": game.state,
        # The server's clock when the page was made: countdowns need no synchronized client clock.
        "server_time": timezone.now().isoformat(),
        "event_endpoint": request.build_absolute_uri(reverse("realtime:event")),
        "join_url": request.build_absolute_uri(reverse("quiz:play", args=[code])),
        "landing_url": request.build_absolute_uri(reverse("quiz:landing")),
        "channels": {
            "game": channels.game_channel(code),
            "leaderboard": channels.leaderboard_channel(code),
            "host": channels.host_channel(code),
        },
        "api": {
            "state": reverse("quiz:game-state", args=[code]),
            "join": reverse("quiz:join", args=[code]),
            "rejoin": reverse("quiz:rejoin", args=[code]),
            "answers": reverse("quiz:answers", args=[code]),
            "leaderboard": reverse("quiz:leaderboard", args=[code]),
            "me": reverse("quiz:me", args=[code]),
            "control": {
                action: reverse("quiz:control", args=[code, action]) for action in services.GAME_TRANSITIONS
            },
            "host_game": reverse("quiz:host-game", args=[code]),
            "play_again": reverse("quiz:play-again", args=[code]),
        },
        "pages": {
            "play": reverse("quiz:play", args=["CODE"]),
            "host": reverse("quiz:host", args=["CODE"]),
            "screen": reverse("quiz:screen", args=["CODE"]),
            "join": reverse("quiz:join", args=["CODE"]),
        },
    }


@require_safe
def landing(request: HttpRequest) -> HttpResponse:
    """``/quiz/``: type a join code, land on the game's player page."""
    typed = request.GET.get("code", "")
    error = ""
    if typed:
        code = _canonical(typed)
        if code is not None:
            return redirect("quiz:play", code=code)
        error = "No game has this code. Check it and try again."
    return render(
        request, "quiz/landing.html", {"typed": typed, "error": error}, status=404 if error else 200
    )


@require_safe
def play(request: HttpRequest, code: str) -> HttpResponse:
    """``/quiz/<code>/``: join, answer, and follow score, rank and leaderboard live."""
    game = selectors.game_get(code=code)
    if game is None:
        canonical = _canonical(code)
        if canonical is not None and canonical != code:
            return redirect("quiz:play", code=canonical)
        raise Http404("No game has this code.")
    return render(
        request,
        "quiz/play.html",
        {"game": game, "config": _config(request, game), "nickname_max_length": NICKNAME_MAX_LENGTH},
    )


@require_safe
@staff_member_required
@ensure_csrf_cookie
def host(request: HttpRequest, code: str) -> HttpResponse:
    """``/quiz/<code>/host/``: the host's console (staff)."""
    game = _game_or_404(code)
    return render(request, "quiz/host.html", {"game": game, "config": _config(request, game)})


@require_safe
@staff_member_required
def host_home(request: HttpRequest) -> HttpResponse:
    """``/quiz/host/`` (staff): create a game from a question set, import a set, find a recent game."""
    question_sets = selectors.question_sets_list()
    chosen = request.GET.get("imported")
    create = forms.GameCreateForm(question_sets=question_sets, initial={"question_set": chosen})
    return _host_home(request, question_sets, create, forms.QuestionSetImportForm())


def _host_home(
    request: HttpRequest,
    question_sets: list[QuestionSet],
    create: forms.GameCreateForm,
    upload: forms.QuestionSetImportForm,
    status: int = 200,
) -> HttpResponse:
    return render(
        request,
        "quiz/host_home.html",
        {
            "create": create,
            "upload": upload,
            "question_sets": question_sets,
            "games": selectors.games_recent(),
        },
        status=status,
    )


@require_POST
@staff_member_required
def host_game_create(request: HttpRequest) -> HttpResponse:
    """The new-game form: the game is created with its lobby open; the host lands on its console."""
    question_sets = selectors.question_sets_list()
    form = forms.GameCreateForm(request.POST, question_sets=question_sets)
    if not form.is_valid():
        return _host_home(request, question_sets, form, forms.QuestionSetImportForm(), status=400)
    data = form.cleaned_data
    game = services.game_create(
        host=request.user,
        question_set=next(q for q in question_sets if q.pk == data["question_set"]),
        title=data["title"],
        auto_reveal=data["auto_reveal"],
        auto_next=data["auto_next"],
    )
    services.game_open(game=game)
    return redirect("quiz:host", code=game.code)


@require_POST
@staff_member_required
def host_question_set_import(request: HttpRequest) -> HttpResponse:
    """The import form: a question set from JSON (a file or pasted text), then back to the list."""
    form = forms.QuestionSetImportForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            question_set = services.question_set_import(data=form.cleaned_data["data"])
        except ValidationError as error:
            form.add_error(None, error)
        else:
            return redirect(f"{reverse('quiz:host-home')}?imported={question_set.pk}")
    question_sets = selectors.question_sets_list()
    return _host_home(
        request, question_sets, forms.GameCreateForm(question_sets=question_sets), form, status=400
    )


@require_safe
@staff_member_required
def screen(request: HttpRequest, code: str) -> HttpResponse:
    """``/quiz/<code>/screen/``: the big-screen leaderboard (staff)."""
    game = _game_or_404(code)
    return render(request, "quiz/screen.html", {"game": game, "config": _config(request, game)})


def _host_game(code: str) -> dict[str, Any] | None:
    game = selectors.game_get(code=code)
    if game is None:
        return None
    questions = selectors.game_questions(game=game)
    current = game.current_question
    return {
        "code": game.code,
        "title": game.title,
        "state": game.state,
        "question_index": game.question_index,
        "question_id": current.pk if current is not None else None,
        "opened_at": game.question_opened_at.isoformat() if game.question_opened_at else None,
        "closes_at": game.question_closes_at.isoformat() if game.question_closes_at else None,
        "server_time": timezone.now().isoformat(),
        "counts": selectors.answer_counts(question=current)
        if current is not None and game.state != GameState.LOBBY
        else None,
        "auto_reveal": game.auto_reveal,
        "auto_next": game.auto_next,
        "next_game": game.next_game.code if game.next_game is not None else None,
        "questions": [
            {
                "id": question.pk,
                "index": index,
                "text": question.text,
                "choices": list(question.choices),
                "correct_choice": question.correct_choice,
                "time_limit": question.time_limit,
                "points": question.points,
            }
            for index, question in enumerate(questions)
        ],
    }


@never_cache
@api(get=openapi.HOST_GAME)
async def host_game(request: HttpRequest, code: str) -> HttpResponse:
    """``/quiz/<code>/host/game.json`` (staff): the game with every question and its right answer.

    Also the current question's answer counts and the server's clock, so the
    console and the big screen can catch up after a reload. Errors are the quiz
    API's (``quiz.api.views.error_response``).
    """
    await staff_only(request)
    payload = await sync_to_async(_host_game)(code)
    if payload is None:
        raise GameNotFound()
    return JsonResponse(payload)
