"""Table tests for the pure scoring and ranking cores."""

from __future__ import annotations

import random

import pytest

from quiz.ranking import RankBook, ScoreIndex
from quiz.scoring import Scored, points_for


@pytest.mark.parametrize(
    ("correct", "points", "time_limit", "elapsed", "expected"),
    [
        (True, 1000, 20, 0, Scored(True, 1000)),
        (True, 1000, 20, 10, Scored(True, 750)),
        (True, 1000, 20, 20, Scored(True, 500)),
        (True, 1000, 20, 20.5, Scored(False, 0)),
        (False, 1000, 20, 1, Scored(False, 0)),
        (True, 0, 20, 1, Scored(True, 0)),
        (True, 1000, 20, -1, Scored(True, 1000)),
        (True, 999, 30, 7.5, Scored(True, 874)),
    ],
)
def test_points_for_rewards_correct_fast_answers(correct, points, time_limit, elapsed, expected) -> None:
    assert points_for(correct=correct, points=points, time_limit=time_limit, elapsed=elapsed) == expected


def test_a_score_index_ranks_like_counting_higher_scores() -> None:
    rng = random.Random(7)
    index = ScoreIndex(4)
    scores: dict[int, int] = {}
    for step in range(3000):
        player = rng.randrange(300)
        new = scores.get(player, 0) + rng.choice([0, 10, 500, 1000, 5000])
        old = scores.get(player)
        if old is None:
            index.add(new)
        else:
            index.move(old, new)
        scores[player] = new
        if step % 97 == 0:
            for probe in (0, 1, 500, 1000, 4999, 5000, 10**6, *rng.choices(sorted(scores.values()), k=3)):
                expected = sum(1 for s in scores.values() if s > probe) + 1
                assert index.rank(probe) == expected
    assert len(index) == len(scores)


def test_removing_a_score_takes_it_out_of_the_ranking() -> None:
    index = ScoreIndex()
    for score in (5, 7, 7, 9):
        index.add(score)
    index.remove(7)
    assert [index.rank(s) for s in (9, 7, 5, 0)] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("loaded", "moves", "expected"),
    [
        # A player's first points enter the ranking; zeros never outrank anyone.
        ([], [(0, 500)], {500: 1, 0: 2}),
        ([300, 300], [(300, 800)], {800: 1, 300: 2, 0: 3}),
        ([100, 200, 300], [(100, 400), (0, 250)], {400: 1, 300: 2, 250: 3, 200: 4, 0: 5}),
        # The index grows past the highest score it was loaded with.
        ([10], [(10, 5000)], {5000: 1, 10: 2}),
    ],
)
def test_a_rank_book_ranks_each_game_after_its_moves(
    loaded: list[int], moves: list[tuple[int, int]], expected: dict[int, int]
) -> None:
    book = RankBook()
    book.load(7, [0, *loaded])
    for old, new in moves:
        book.move(7, old, new)
    assert {score: book.rank(7, score) for score in expected} == expected
    assert 7 in book and 8 not in book
    book.clear()
    assert 7 not in book
