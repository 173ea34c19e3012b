"""System checks for ``QUIZ`` settings (``quiz.E0xx``)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import registry
from django.test import override_settings

from quiz.checks import check_settings


def messages(**quiz: Any) -> list[tuple[str, str]]:
    with override_settings(QUIZ=quiz):
        return [(message.id, message.msg) for message in check_settings()]


def test_the_check_is_registered() -> None:
    assert check_settings in registry.registry.get_checks()


@pytest.mark.parametrize("rate", [None, "2000/s", "3/m", "5/10s", "0.5/s", "1/h"])
def test_join_rates_in_the_shared_grammar_pass(rate: str | None) -> None:
    quiz = {} if rate is None else {"JOIN_RATE": rate, "JOIN_RATE_PER_CLIENT": rate}
    assert messages(**quiz) == []


def test_join_rates_outside_the_grammar_are_e001_each() -> None:
    assert messages(JOIN_RATE="fast", JOIN_RATE_PER_CLIENT="5/d") == [
        ("quiz.E001", "QUIZ['JOIN_RATE']: a rate is N/s, N/m or N/h (N/10s: per 10 seconds), not 'fast'."),
        (
            "quiz.E001",
            "QUIZ['JOIN_RATE_PER_CLIENT']: a rate is N/s, N/m or N/h (N/10s: per 10 seconds), not '5/d'.",
        ),
    ]


@pytest.mark.parametrize("poll", [0, -1, "soon"])
def test_an_autopilot_poll_that_is_not_a_positive_number_is_e002(poll: Any) -> None:
    from quiz.checks import check_autopilot

    assert check_autopilot in registry.registry.get_checks()
    with override_settings(QUIZ={"AUTOPILOT_POLL": poll}):
        assert [(m.id, m.msg) for m in check_autopilot()] == [
            ("quiz.E002", "QUIZ['AUTOPILOT_POLL'] must be a positive number of seconds.")
        ]
    with override_settings(QUIZ={"AUTOPILOT_POLL": 0.5}):
        assert check_autopilot() == []
