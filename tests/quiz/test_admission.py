"""Join admission in the view (a site without the front door): GCRA rates of the shared grammar."""

from __future__ import annotations

import pytest
from django.test import RequestFactory, override_settings

from quiz.admission import admit_join
from quiz.exceptions import Throttled
from realtime.transport.frontdoor import ADMITTED


async def test_a_decimal_rate_admits_its_burst_then_throttles_with_the_wait() -> None:
    request = RequestFactory().post("/join", REMOTE_ADDR="10.9.8.7")
    # 1.5 joins a minute, 3 at once: the fourth waits 40 s for the next.
    quiz = {"JOIN_RATE": "1.5/m burst 3", "JOIN_RATE_PER_CLIENT": "100/m"}
    with override_settings(QUIZ=quiz):
        for _ in range(3):
            await admit_join(request)
        with pytest.raises(Throttled) as refused:
            await admit_join(request)
    assert 39 <= refused.value.retry_after <= 40


async def test_a_join_the_front_door_admitted_is_not_counted_again() -> None:
    request = RequestFactory().post("/join", REMOTE_ADDR="10.9.8.7")
    request.scope = {"client": ("10.9.8.7", 1), ADMITTED: "quiz.join"}  # type: ignore[attr-defined]
    with override_settings(QUIZ={"JOIN_RATE": "1/m", "JOIN_RATE_PER_CLIENT": "1/m"}):
        for _ in range(5):
            await admit_join(request)
