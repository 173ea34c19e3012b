"""The quiz's signals (STYLE habit 12): past tense, each documented like an API.

``answer_received``
    sender: ``Answer``. kwargs: ``answer`` (Answer, unscored). Sent once per
    stored answer, after its transaction committed, by
    :func:`quiz.services.answers_submit` (HTTP and WebSocket answers alike).
    Receivers: :func:`quiz.receivers.wake_worker` (the in-process scoring
    worker starts at once) and ``quiz.metrics`` (``quiz_answer_received_total``).

``feeds_changed``
    sender: ``Feed``. kwargs: ``game_ids`` (list of int). Sent after a
    transaction that marked games' leaderboard or progress feeds stale
    committed, by :func:`quiz.services.feeds_mark_stale`. Receiver:
    :func:`quiz.receivers.wake_coalescer` (this process broadcasts them, at most
    once per ``LEADERBOARD_INTERVAL``).

``game_changed``
    sender: ``Game``. kwargs: ``game_ids`` (list of int). Sent after a
    transition of the games committed (open, start, reveal, next, finish), by
    :mod:`quiz.services.games`. Receiver: :func:`quiz.receivers.wake_autopilot`
    (this process's autopilot looks at their next automatic step at once).

Nothing else the game does is a signal: scores, announcements, leaderboards
and host progress are written in the transaction that causes them
(quiz.broadcasts, quiz.services.feeds) and published by ``realtime``'s relay.
"""

from django.dispatch import Signal

answer_received = Signal()
feeds_changed = Signal()
game_changed = Signal()
