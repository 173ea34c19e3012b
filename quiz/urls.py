from django.urls import path

from . import views
from .api import views as api

app_name = "quiz"

urlpatterns = [
    path("api/quiz/question-sets", api.question_set_import, name="question-set-import"),
    path("api/quiz/games", api.game_create, name="game-create"),
    path("api/quiz/games/<str:code>", api.game_state, name="game-state"),
    path("api/quiz/games/<str:code>/join", api.join, name="join"),
    path("api/quiz/games/<str:code>/rejoin", api.rejoin, name="rejoin"),
    path("api/quiz/games/<str:code>/answers", api.answers, name="answers"),
    path("api/quiz/games/<str:code>/leaderboard", api.leaderboard, name="leaderboard"),
    path("api/quiz/games/<str:code>/me", api.me, name="me"),
    path("api/quiz/games/<str:code>/play-again", api.play_again, name="play-again"),
    path("api/quiz/games/<str:code>/<str:action>", api.game_control, name="control"),
    # Pages (quiz/views.py).
    path("quiz/", views.landing, name="landing"),
    path("quiz/host/", views.host_home, name="host-home"),
    path("quiz/host/games", views.host_game_create, name="host-game-create"),
    path("quiz/host/question-sets", views.host_question_set_import, name="host-question-set-import"),
    path("quiz/<str:code>/", views.play, name="play"),
    path("quiz/<str:code>/host/", views.host, name="host"),
    path("quiz/<str:code>/host/game.json", views.host_game, name="host-game"),
    path("quiz/<str:code>/screen/", views.screen, name="screen"),
]
