"""Join admission counts rates of the shared grammar the same way in memory and through django-ratelimit."""

from __future__ import annotations

import pytest
from django.test import RequestFactory, override_settings

from quiz.admission import admit_join
from quiz.exceptions import Throttled


# RATELIMIT_IP_META_KEY sends admission through django-ratelimit even on the
# local-memory cache: the path a Redis cache takes.
@pytest.mark.parametrize("ip_meta_key", [None, "REMOTE_ADDR"], ids=["in-memory", "django-ratelimit"])
def test_a_decimal_rate_admits_its_whole_equivalent_then_throttles(ip_meta_key: str | None) -> None:
    request = RequestFactory().post("/join", REMOTE_ADDR="10.9.8.7")
    # 1.5 joins a minute: 3 in each two-minute window.
    quiz = {"JOIN_RATE": "1.5/m", "JOIN_RATE_PER_CLIENT": "100/m"}
    with override_settings(QUIZ=quiz, RATELIMIT_IP_META_KEY=ip_meta_key):
        for _ in range(3):
            admit_join(request)
        with pytest.raises(Throttled) as refused:
            admit_join(request)
    assert 1 <= refused.value.retry_after <= 120
