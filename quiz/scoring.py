"""Points for an answer. Pure: no Django, no I/O (DESIGN §8, STYLE habit 1).

A correct answer earns between half and all of the question's points: the
faster, the more. A wrong or late answer earns nothing. Times are the server's
own receive times, never the client's.
"""

from __future__ import annotations

from dataclasses import dataclass

# Share of the points a correct answer keeps however slow it was.
BASE_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Scored:
    correct: bool
    points: int


def points_for(*, correct: bool, points: int, time_limit: float, elapsed: float) -> Scored:
    """Score one answer.

    Args:
        correct: whether the chosen answer is the right one.
        points: the question's full value.
        time_limit: seconds the question was open.
        elapsed: seconds from the question opening to the answer's arrival.

    Returns:
        ``Scored(correct, points)``; points are 0 for a wrong answer or one that
        arrived after the time limit, otherwise ``points`` scaled from 100 %
        (instant) down to ``BASE_SHARE`` (at the limit), rounded.
    """
    if not correct or elapsed > time_limit or points <= 0:
        return Scored(correct=correct and elapsed <= time_limit, points=0)
    if time_limit <= 0:
        return Scored(correct=True, points=points)
    speed = 1.0 - max(elapsed, 0.0) / time_limit
    return Scored(correct=True, points=round(points * (BASE_SHARE + (1 - BASE_SHARE) * speed)))


def rank_of(score: int, higher_scores: int) -> int:
    """Competition ranking ("1224"): one more than the number of strictly higher scores."""
    return higher_scores + 1
