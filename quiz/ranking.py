"""Ranks among many players, cheaply. Pure: no Django, no I/O.

:class:`ScoreIndex` is a Fenwick (binary indexed) tree over score values, so
"how many players score more than X" is O(log max_score) however many players
there are: a million players cost the same few microseconds as ten. Scores are
non-negative integers bounded by the game's total points; the tree grows when
a higher score appears.
"""

from __future__ import annotations


class ScoreIndex:
    """Counts of players per score, answering rank queries in O(log n)."""

    __slots__ = ("_tree", "_size", "_players")

    def __init__(self, size: int = 1024) -> None:
        self._size = max(1, size)
        self._tree = [0] * (self._size + 1)
        self._players = 0

    def __len__(self) -> int:
        return self._players

    def _grow(self, score: int) -> None:
        if score < self._size:
            return
        counts = [self._count_exact(s) for s in range(self._size)]
        size = self._size
        while size <= score:
            size *= 2
        self._size = size
        self._tree = [0] * (size + 1)
        for s, count in enumerate(counts):
            if count:
                self._add(s, count)

    def _add(self, score: int, delta: int) -> None:
        i = score + 1
        tree = self._tree
        while i <= self._size:
            tree[i] += delta
            i += i & -i

    def _prefix(self, score: int) -> int:
        """Players with a score of at most ``score``."""
        i = min(score, self._size - 1) + 1
        total = 0
        tree = self._tree
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    def _count_exact(self, score: int) -> int:
        return self._prefix(score) - (self._prefix(score - 1) if score > 0 else 0)

    def add(self, score: int) -> None:
        """A player with ``score`` joins the index."""
        score = max(score, 0)
        self._grow(score)
        self._add(score, 1)
        self._players += 1

    def remove(self, score: int) -> None:
        """A player with ``score`` leaves the index."""
        self._add(max(score, 0), -1)
        self._players -= 1

    def move(self, old: int, new: int) -> None:
        """A player's score changed from ``old`` to ``new``."""
        old, new = max(old, 0), max(new, 0)
        if old == new:
            return
        self._grow(new)
        self._add(old, -1)
        self._add(new, 1)

    def higher_than(self, score: int) -> int:
        """How many players have a strictly higher score."""
        if score < 0:
            return self._players
        return self._players - self._prefix(score)

    def rank(self, score: int) -> int:
        """Competition rank ("1224") of a player with ``score``."""
        return self.higher_than(score) + 1


class RankBook:
    """A :class:`ScoreIndex` per game, over the players with a score above 0 (the worker's ranks).

    A zero score never outranks anyone, so those players need no entry: a game's
    index is loaded once with the positive scores and then moved as totals change.
    """

    __slots__ = ("_games",)

    def __init__(self) -> None:
        self._games: dict[int, ScoreIndex] = {}

    def __contains__(self, game_id: object) -> bool:
        return game_id in self._games

    def load(self, game_id: int, scores: list[int]) -> None:
        """Index ``game_id`` with its players' positive ``scores``, replacing what was known."""
        index = ScoreIndex(max(scores, default=0) + 1)
        for score in scores:
            if score > 0:
                index.add(score)
        self._games[game_id] = index

    def move(self, game_id: int, old: int, new: int) -> None:
        """A player of a loaded game went from ``old`` to ``new`` points."""
        index = self._games[game_id]
        if old > 0:
            index.remove(old)
        if new > 0:
            index.add(new)

    def rank(self, game_id: int, score: int) -> int:
        """Competition rank of ``score`` in a loaded game."""
        return self._games[game_id].rank(score)

    def clear(self) -> None:
        """Forget every game (after a failed batch: the next one loads them again)."""
        self._games.clear()
