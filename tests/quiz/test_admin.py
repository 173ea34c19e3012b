"""The game show in the admin: question sets to edit; games, players and answers to look at."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from quiz import services
from quiz.models import Answer, Game, Player

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("boss", password="boss-pw-123"))
    return client


@pytest.fixture
def played(game: Game) -> Game:
    """The test game with two players, one answer and the first question open."""
    ada, _ = services.player_join(code=game.code, nickname="Ada")
    services.player_join(code=game.code, nickname="Grace")
    game = services.game_start(game=game)
    assert game.current_question is not None
    Answer.objects.create(
        game=game, player=ada, question=game.current_question, choice=1, received_at=game.question_opened_at
    )
    return game


def test_the_quiz_has_its_page_in_the_admin(admin_client: Client) -> None:
    html = admin_client.get("/admin/quiz/").content.decode()
    for name in ("Games", "Players", "Answers", "Question sets", "Questions"):
        assert name in html


def test_the_games_list_shows_state_and_player_count(admin_client: Client, played: Game) -> None:
    response = admin_client.get("/admin/quiz/game/")
    assert response.status_code == 200
    html = response.content.decode()
    assert played.code in html
    assert '<td class="field-state">Question</td>' in html
    assert '<td class="field-player_count">2</td>' in html
    assert f'href="/quiz/{played.code}/host/"' in html


@pytest.mark.parametrize("model", ["game", "player", "answer"])
def test_what_a_show_did_is_read_only(admin_client: Client, played: Game, model: str) -> None:
    pk = {"game": played.pk, "player": Player.objects.first().pk, "answer": Answer.objects.get().pk}[model]
    assert admin_client.get(f"/admin/quiz/{model}/").status_code == 200
    assert admin_client.get(f"/admin/quiz/{model}/add/").status_code == 403
    view = admin_client.get(f"/admin/quiz/{model}/{pk}/change/")
    assert view.status_code == 200
    assert b'name="_save"' not in view.content  # a view page, no form to save
    state = played.state
    assert admin_client.post(f"/admin/quiz/{model}/{pk}/change/", {"state": "finished"}).status_code == 403
    played.refresh_from_db()
    assert played.state == state


def test_a_players_page_never_shows_the_token_hash(admin_client: Client, played: Game) -> None:
    player = Player.objects.get(nickname="Ada")
    html = admin_client.get(f"/admin/quiz/player/{player.pk}/change/").content.decode()
    assert "Ada" in html and player.token_hash not in html


def test_question_sets_are_edited_with_their_questions(admin_client: Client, game: Game) -> None:
    html = admin_client.get(f"/admin/quiz/questionset/{game.question_set_id}/change/").content.decode()
    assert "Capital of France?" in html and 'name="_save"' in html
    assert (
        '<td class="field-question_count">2</td>'
        in admin_client.get("/admin/quiz/questionset/").content.decode()
    )
