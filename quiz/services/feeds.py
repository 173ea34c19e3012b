"""Writes of feeds: a game's leaderboard and host progress, broadcast when they change (quiz.coalescer).

A change marks the feeds it affects stale in its own transaction
(:func:`feeds_mark_stale`); after the commit the process's coalescer calls
:func:`feed_broadcast`, which publishes each stale feed at most once per
``LEADERBOARD_INTERVAL`` and clears it. Any process may broadcast any game: the
feed rows are locked while a broadcast is written, so two processes never send
the same change twice, and a change committed meanwhile leaves its feed stale
for the next broadcast.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import partial

from django.db import transaction
from django.utils import timezone

from .. import broadcasts, payloads, selectors, signals
from ..conf import quiz_settings
from ..metrics import metrics
from ..models import Feed, Game, GameState

# Every feed of a game.
ALL = (Feed.Kind.LEADERBOARD, Feed.Kind.PROGRESS)


def feeds_create(*, game: Game) -> None:
    """The feeds of a new game; they are stale until its first broadcast."""
    Feed.objects.bulk_create([Feed(game=game, kind=kind) for kind in ALL])


def feeds_mark_stale(*, game_ids: Collection[int], kinds: Collection[str] = ALL) -> None:
    """In the caller's transaction: these games' ``kinds`` of feeds show something that changed.

    Only feeds not stale yet are written, so a crowd's joins and answers cost one
    row update per feed and broadcast, not one per change. After the commit this
    process's coalescer broadcasts them.
    """
    if not game_ids:
        return
    Feed.objects.filter(game_id__in=game_ids, kind__in=kinds, stale=False).update(stale=True)
    changed = list(game_ids)
    transaction.on_commit(lambda: signals.feeds_changed.send(Feed, game_ids=changed))


def feed_broadcast(*, game_id: int) -> float | None:
    """Publish the game's stale feeds whose last broadcast is ``LEADERBOARD_INTERVAL`` old.

    Returns ``None`` once no feed of the game is stale, else the seconds until the
    next one may go out.
    """
    interval = quiz_settings.leaderboard_interval
    with transaction.atomic():
        feeds = list(Feed.objects.select_for_update().filter(game_id=game_id, stale=True).order_by("kind"))
        now = timezone.now()
        due: list[Feed] = []
        wait: float | None = None
        for feed in feeds:
            left = interval - (now - feed.sent_at).total_seconds() if feed.sent_at is not None else 0.0
            if left > 0:
                wait = left if wait is None else min(wait, left)
            else:
                due.append(feed)
        if not due:
            return wait
        game = Game.objects.get(pk=game_id)
        players = selectors.player_count(game_id=game.pk)
        answered = selectors.answered_count(question_id=game.current_question_id)
        for feed in due:
            feed.stale, feed.sent, feed.sent_at = False, feed.sent + 1, now
            if feed.kind == Feed.Kind.LEADERBOARD:
                top = selectors.leaderboard_top(game_id=game.pk, limit=quiz_settings.leaderboard_size)
                final = game.state == GameState.FINISHED
                payload = payloads.leaderboard(game, top, players, answered, final=final)
                transaction.on_commit(
                    partial(selectors.leaderboard_cache_put, code=game.code, leaderboard=payload)
                )
            else:
                payload = payloads.progress(game, players, answered)
            broadcasts.feed(game, feed.kind, feed.sent, payload)
        Feed.objects.bulk_update(due, ["stale", "sent", "sent_at"])
        boards = sum(1 for feed in due if feed.kind == Feed.Kind.LEADERBOARD)
        transaction.on_commit(lambda: metrics.leaderboards(boards))
    return wait
