"""Hot-path lookups: a crowd that misses the cache at once shares one query."""

from __future__ import annotations

import asyncio

import pytest

from realtime.models import Namespace
from realtime.store import selectors

pytestmark = pytest.mark.django_db(transaction=True)


async def test_concurrent_misses_share_one_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    await Namespace.objects.acreate(name="crowd")
    loads: list[str] = []
    load = selectors._namespace_load

    def counting(name: str) -> selectors.NamespaceConfig | None:
        loads.append(name)
        return load(name)

    monkeypatch.setattr(selectors, "_namespace_load", counting)

    found = await asyncio.gather(*(selectors.namespace_get(name="crowd") for _ in range(50)))
    missing = await asyncio.gather(*(selectors.namespace_get(name="nobody") for _ in range(5)))

    assert {config.name for config in found if config is not None} == {"crowd"}
    assert len(found) == 50 and all(config is not None for config in found)
    assert missing == [None] * 5
    assert loads == ["crowd", "nobody"]
    # Cached now: no more queries.
    await selectors.namespace_get(name="crowd")
    assert loads == ["crowd", "nobody"]
