"""The quiz pages: player page, host console, big screen, landing form, and the staff game JSON."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from quiz import services
from quiz.models import Game

pytestmark = pytest.mark.django_db

SCRIPTS = ("realtime/realtime.js", "quiz/common.js")


def page_config(html: str) -> dict:
    match = re.search(r'<script id="quiz-config" type="application/json">(.*?)</script>', html, re.S)
    assert match, "the page carries its configuration"
    return json.loads(match.group(1))


@pytest.fixture
def staff_client(host: User) -> Client:
    client = Client()
    client.force_login(host)
    return client


@pytest.fixture
def player_client() -> Client:
    """Signed in, but not staff."""
    client = Client()
    client.force_login(User.objects.create_user("someone", password="pw-someone-123"))
    return client


# -- the player page --------------------------------------------------------------


def test_the_player_page_renders_for_a_real_game(client: Client, game: Game) -> None:
    response = client.get(f"/quiz/{game.code}/")
    assert response.status_code == 200
    html = response.content.decode()
    for script in (*SCRIPTS, "quiz/play.js"):
        assert f'src="/static/{script}"' in html
    assert 'href="/static/quiz/quiz.css"' in html
    assert game.code in html and game.title in html
    config = page_config(html)
    assert config["code"] == game.code
    assert config["state"] == "lobby"
    assert config["event_endpoint"] == "http://testserver/event"
    assert config["api"]["join"] == f"/api/quiz/games/{game.code}/join"
    assert config["api"]["answers"] == f"/api/quiz/games/{game.code}/answers"
    assert config["api"]["state"] == f"/api/quiz/games/{game.code}"
    assert config["api"]["me"] == f"/api/quiz/games/{game.code}/me"
    # The nickname field holds what the join accepts (quiz.models.nickname_clean).
    assert 'maxlength="40"' in html
    # Players never get the staff endpoints' secrets in the page, only their URLs.
    assert "correct" not in html


def test_the_player_page_is_404_for_an_unknown_code(client: Client, game: Game) -> None:
    assert client.get("/quiz/NOPE99/").status_code == 404


def test_the_player_page_accepts_a_code_typed_in_lower_case(client: Client, game: Game) -> None:
    response = client.get(f"/quiz/{game.code.lower()}/")
    assert response.status_code == 302
    assert response["Location"] == f"/quiz/{game.code}/"


def test_the_player_page_config_is_safe_against_a_hostile_title(client: Client, game: Game) -> None:
    game.title = "</script><script>alert(1)</script>"
    game.save()
    html = client.get(f"/quiz/{game.code}/").content.decode()
    assert "<script>alert(1)</script>" not in html
    assert page_config(html)["title"] == game.title


# -- the landing form ----------------------------------------------------------------


def test_the_landing_page_shows_a_code_form(client: Client) -> None:
    response = client.get("/quiz/")
    assert response.status_code == 200
    assert b'name="code"' in response.content


def test_the_landing_form_sends_to_the_game(client: Client, game: Game) -> None:
    response = client.get("/quiz/", {"code": f"  {game.code.lower()} "})
    assert response.status_code == 302
    assert response["Location"] == f"/quiz/{game.code}/"


def test_the_landing_form_says_when_no_game_has_the_code(client: Client, game: Game) -> None:
    response = client.get("/quiz/", {"code": "NOPE99"})
    assert response.status_code == 404
    assert b"No game has this code" in response.content


# -- the host console and the big screen ---------------------------------------------


@pytest.mark.parametrize("page", ["host", "screen"])
def test_staff_pages_send_anonymous_visitors_to_the_login(client: Client, game: Game, page: str) -> None:
    response = client.get(f"/quiz/{game.code}/{page}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert f"next=/quiz/{game.code}/{page}/" in response["Location"]


@pytest.mark.parametrize("page", ["host", "screen"])
def test_staff_pages_send_non_staff_users_to_the_login(player_client: Client, game: Game, page: str) -> None:
    response = player_client.get(f"/quiz/{game.code}/{page}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize(("page", "script"), [("host", "quiz/host.js"), ("screen", "quiz/screen.js")])
def test_staff_pages_render_for_staff(staff_client: Client, game: Game, page: str, script: str) -> None:
    response = staff_client.get(f"/quiz/{game.code}/{page}/")
    assert response.status_code == 200
    html = response.content.decode()
    for src in (*SCRIPTS, "quiz/show.js", script):
        assert f'src="/static/{src}"' in html
    assert game.code in html
    config = page_config(html)
    assert config["channels"] == {
        "game": f"/quiz/{game.code}/game",
        "leaderboard": f"/quiz/{game.code}/leaderboard",
        "host": f"/quiz/{game.code}/host",
    }
    assert config["join_url"] == f"http://testserver/quiz/{game.code}/"
    assert config["api"]["host_game"] == f"/quiz/{game.code}/host/game.json"


def test_the_host_console_has_every_control_and_sets_the_csrf_cookie(
    staff_client: Client, game: Game
) -> None:
    response = staff_client.get(f"/quiz/{game.code}/host/")
    html = response.content.decode()
    for action in ("open", "start", "reveal", "next", "finish"):
        assert f'data-action="{action}"' in html
        assert page_config(html)["api"]["control"][action] == f"/api/quiz/games/{game.code}/{action}"
    assert "csrftoken" in response.cookies


@pytest.mark.parametrize("page", ["host", "screen"])
def test_staff_pages_are_404_for_an_unknown_code(staff_client: Client, page: str) -> None:
    assert staff_client.get(f"/quiz/NOPE99/{page}/").status_code == 404


# -- the staff game JSON -------------------------------------------------------------


def test_the_game_json_refuses_anonymous_visitors(client: Client, game: Game) -> None:
    response = client.get(f"/quiz/{game.code}/host/game.json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert b"correct" not in response.content


def test_the_game_json_refuses_non_staff_users(player_client: Client, game: Game) -> None:
    assert player_client.get(f"/quiz/{game.code}/host/game.json").status_code == 403


def test_the_game_json_refuses_a_players_token(client: Client, game: Game) -> None:
    _, token = services.player_join(code=game.code, nickname="ada")
    response = client.get(f"/quiz/{game.code}/host/game.json", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 403


def test_the_game_json_gives_staff_the_questions_with_their_answers(staff_client: Client, game: Game) -> None:
    response = staff_client.get(f"/quiz/{game.code}/host/game.json")
    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]
    data = response.json()
    assert data["code"] == game.code
    assert data["state"] == "lobby"
    assert data["question_index"] == -1
    assert data["question_id"] is None and data["counts"] is None
    assert data["server_time"]
    ids = list(game.question_set.questions.order_by("order", "pk").values_list("pk", flat=True))
    assert data["questions"] == [
        {
            "id": ids[0],
            "index": 0,
            "text": "2 + 2?",
            "choices": ["3", "4", "5"],
            "correct_choice": 1,
            "time_limit": 30.0,
            "points": 1000,
        },
        {
            "id": ids[1],
            "index": 1,
            "text": "Capital of France?",
            "choices": ["Paris", "Rome"],
            "correct_choice": 0,
            "time_limit": 30.0,
            "points": 500,
        },
    ]


def test_the_game_json_follows_the_game(staff_client: Client, game: Game) -> None:
    ada, _ = services.player_join(code=game.code, nickname="ada")
    bob, _ = services.player_join(code=game.code, nickname="bob")
    game = services.game_start(game=game)
    question = game.current_question
    services.answer_submit(player=ada, question_id=question.pk, choice=1)
    services.answer_submit(player=bob, question_id=question.pk, choice=2)

    data = staff_client.get(f"/quiz/{game.code}/host/game.json").json()
    assert data["state"] == "question"
    assert data["question_index"] == 0 and data["question_id"] == question.pk
    assert data["closes_at"] and data["opened_at"]
    assert data["counts"] == [0, 1, 1]

    services.game_reveal(game=game)
    data = staff_client.get(f"/quiz/{game.code}/host/game.json").json()
    assert data["state"] == "reveal" and data["counts"] == [0, 1, 1]


def test_the_game_json_is_404_for_an_unknown_code(staff_client: Client) -> None:
    response = staff_client.get("/quiz/NOPE99/host/game.json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "game_not_found"


def test_every_page_has_the_quizs_icon(client: Client, staff_client: Client, game: Game) -> None:
    from django.contrib.staticfiles import finders

    assert finders.find("quiz/favicon.svg"), "the icon is a static file of the quiz"
    link = '<link rel="icon" href="/static/quiz/favicon.svg" type="image/svg+xml">'
    assert link in client.get("/quiz/").content.decode()
    assert link in client.get(f"/quiz/{game.code}/").content.decode()
    for page in ("host", "screen"):
        assert link in staff_client.get(f"/quiz/{game.code}/{page}/").content.decode()


# -- the host's home: new game, import ----------------------------------------------


def test_the_host_home_is_for_staff(client: Client, player_client: Client) -> None:
    for visitor in (client, player_client):
        response = visitor.get("/quiz/host/")
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
        assert visitor.post("/quiz/host/games", {}).status_code == 302
        assert Game.objects.count() == 0


def test_the_host_home_lists_sets_and_recent_games(staff_client: Client, game: Game) -> None:
    services.player_join(code=game.code, nickname="Ada")
    html = staff_client.get("/quiz/host/").content.decode()
    assert f'<option value="{game.question_set_id}">Test set (2 questions)</option>' in html
    assert f'<a href="/quiz/{game.code}/host/">Test set</a>' in html
    assert "1 player<" in html


def test_a_game_created_from_the_host_home_opens_its_lobby(staff_client: Client, game: Game) -> None:
    response = staff_client.post(
        "/quiz/host/games",
        {"question_set": game.question_set_id, "title": "Friday", "auto_reveal": "on", "auto_next": "8"},
    )
    created = Game.objects.exclude(pk=game.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/quiz/{created.code}/host/"
    assert (created.title, created.state, created.auto_reveal, created.auto_next) == (
        "Friday",
        "lobby",
        True,
        8.0,
    )
    manual = staff_client.post("/quiz/host/games", {"question_set": game.question_set_id})
    assert manual.status_code == 302
    last = Game.objects.order_by("-pk").first()
    assert (last.title, last.auto_reveal, last.auto_next) == ("Test set", False, None)


def test_a_bad_new_game_form_says_what_is_wrong(staff_client: Client, game: Game) -> None:
    response = staff_client.post("/quiz/host/games", {"question_set": "999", "auto_next": "-3"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Select a valid choice." in html
    assert "Ensure this value is greater than or equal to 0.0." in html
    assert Game.objects.count() == 1


def test_a_question_set_is_imported_from_pasted_json_or_a_file(staff_client: Client, host) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from quiz.models import QuestionSet

    data = {"title": "Pasted", "questions": [{"text": "Yes?", "choices": ["Yes", "No"], "correct": 0}]}
    response = staff_client.post("/quiz/host/question-sets", {"text": json.dumps(data)})
    pasted = QuestionSet.objects.get(title="Pasted")
    assert response.status_code == 302 and response["Location"] == f"/quiz/host/?imported={pasted.pk}"
    assert f'<option value="{pasted.pk}" selected>' in staff_client.get(response["Location"]).content.decode()
    upload = SimpleUploadedFile("set.json", json.dumps({**data, "title": "Uploaded"}).encode())
    assert staff_client.post("/quiz/host/question-sets", {"file": upload}).status_code == 302
    assert QuestionSet.objects.get(title="Uploaded").questions.count() == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Choose a JSON file or paste the JSON."),
        ("{nope", "This is not JSON: Expecting property name enclosed in double quotes"),
        (
            '{"title": "Bad", "questions": [{"text": "?", "choices": ["only one"], "correct": 0}]}',
            "Question 1: A question has 2 to 6 choices.",
        ),
    ],
    ids=["nothing", "not json", "a bad question"],
)
def test_a_bad_import_says_what_is_wrong_and_stores_nothing(
    staff_client: Client, text: str, message: str
) -> None:
    from quiz.models import QuestionSet

    response = staff_client.post("/quiz/host/question-sets", {"text": text})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert QuestionSet.objects.count() == 0
