"""Signals at the seam between ``quiz`` and ``realtime`` (STYLE habit 12).

``quiz/receivers.py`` is the only module that listens to them and publishes.

``player_joined``
    sender: ``Player``. kwargs: ``player`` (Player), ``game`` (Game). After the
    player row is committed.

``answer_received``
    sender: ``Answer``. kwargs: ``answer`` (Answer, unscored). After commit.

``answer_scored``
    sender: ``Answer``. kwargs: ``result`` (:class:`quiz.worker.ScoredAnswer`:
    answer_id, player_id, game_code, question_id, correct, delta, score, rank,
    players). Sent by the scoring worker after the scoring transaction commits,
    once per answer, never twice.

``leaderboard_changed``
    sender: ``Game``. kwargs: ``game_id`` (int), ``final`` (bool). Asks for a
    leaderboard broadcast; broadcasts are coalesced per game.
"""

from django.dispatch import Signal

player_joined = Signal()
answer_received = Signal()
answer_scored = Signal()
leaderboard_changed = Signal()
