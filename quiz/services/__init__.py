"""Writes of the game show (STYLE habit 11): keyword-only, typed, ``<entity>_<action>``.

One module per entity (question sets, games, players, answers, scores); this
package re-exports their public names, so callers write ``services.game_start``.
Reads live in :mod:`quiz.selectors`, which imports no service.
"""

from __future__ import annotations

from ..models import token_hash
from ..selectors import answer_counts, player_for_token
from .answers import AnswerRequest, aanswer_submit, answer_submit, answers_submit
from .games import (
    CODE_ALPHABET,
    CODE_LENGTH,
    GAME_TRANSITIONS,
    game_create,
    game_finish,
    game_next,
    game_open,
    game_play_again,
    game_reveal,
    game_start,
    game_step,
    games_step_due,
)
from .players import JOINABLE, JoinRequest, aplayer_join, player_join, player_rejoin, players_join
from .question_sets import question_set_import
from .scores import answers_score_pending

__all__ = [
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "GAME_TRANSITIONS",
    "JOINABLE",
    "AnswerRequest",
    "JoinRequest",
    "aanswer_submit",
    "answer_counts",
    "answer_submit",
    "answers_score_pending",
    "answers_submit",
    "aplayer_join",
    "game_create",
    "game_finish",
    "game_next",
    "game_open",
    "game_play_again",
    "game_reveal",
    "game_start",
    "game_step",
    "games_step_due",
    "player_for_token",
    "player_join",
    "player_rejoin",
    "players_join",
    "question_set_import",
    "token_hash",
]
