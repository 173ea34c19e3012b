"""The process's share of its file descriptors (``Overload.descriptors_full``)."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from unittest import mock

import pytest
from django.test import override_settings

from realtime.transport.overload import Overload


@contextmanager
def held(count: int, soft: int = 1000) -> Iterator[None]:
    """``/proc/self/fd`` reports ``count`` descriptors under a soft limit of ``soft``."""
    with mock.patch.object(os, "stat", return_value=SimpleNamespace(st_size=count)):
        with mock.patch.object(resource, "getrlimit", return_value=(soft, 4 * soft)):
            yield


@pytest.mark.parametrize(("count", "full"), [(0, False), (10, False), (799, False), (800, True), (950, True)])
def test_full_from_the_configured_share_of_the_soft_limit(count: int, full: bool) -> None:
    with held(count):
        assert Overload().descriptors_full() is full


@override_settings(REALTIME={"FRONT_DOOR": {"MAX_DESCRIPTOR_SHARE": 0}})
def test_a_share_of_zero_refuses_nothing() -> None:
    with held(1000):
        assert Overload().descriptors_full() is False


def test_where_the_count_is_unknown_nothing_is_refused() -> None:
    with mock.patch.object(os, "stat", side_effect=OSError("no /proc")):
        assert Overload().descriptors_full() is False


def test_the_count_is_this_processs_own() -> None:
    # Linux ≥ 6.2 reports the descriptors held as the size of /proc/self/fd.
    before = os.stat("/proc/self/fd").st_size
    with open(os.devnull) as extra:
        assert extra.fileno() >= 0
        assert os.stat("/proc/self/fd").st_size == before + 1
