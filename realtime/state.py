"""What a server process keeps in memory, who owns it, and the one way to reset it.

A process keeps lookups and limiters in memory so the hot path need not ask the
database, or parse settings, every time. Each such object is made once, at
module level, by the module that uses it, and handed to :func:`register`.
:func:`reset_all` clears every registered object: the ``setting_changed``
receiver calls it when ``REALTIME`` changes (so ``override_settings`` works),
and tests call it between cases. A module that was never imported registered
nothing, so resetting imports nothing (PyJWT stays optional).

Registered, and so reset:

- ``realtime.store.selectors``: ``namespace_cache``, ``api_key_cache``,
  ``iam_credential_cache`` (their rows' post_save/post_delete clear them too,
  :mod:`realtime.receivers`);
- ``realtime.auth.authorizer_cache``: the authorizer instances, with the
  caches they own (the OIDC JWKS, the CUSTOM answers);
- ``realtime.auth.limits``: ``rate_limiter`` (GCRA counts kept in this process, its leased allowances,
  and its Redis client), ``auth_failure_limiter``;
- ``realtime.transport.overload.overload``: the measured loop lag and queue
  delay (not the count of requests in flight, which each request leaves);
- ``realtime.delivery.history.stores``: the in-process history and resume
  positions, and the Redis clients of ``HISTORY_REDIS_URL`` (which may change);
- ``quiz.auth``: players' tokens already looked up.

Kept for the life of the process on purpose, never reset here:

- ``realtime.lifecycle.lifecycle``: the background services and the loop they
  run on; ``realtime.delivery.hub.hub`` (live subscriptions) and
  ``realtime.delivery.bridge.bridge`` (layer groups joined for them) belong to that loop
  and are reset by ``lifecycle`` when the services move to a new one, never on
  a settings change, which would drop live subscribers;
- ``realtime.ops.metrics.metrics``, ``quiz.metrics.metrics``: Prometheus counters
  only ever grow;
- ``realtime.handlers`` registrations: made once at import (autodiscovery);
- ``realtime.operations.publishing._background``, ``realtime.transport.connection._answering``:
  strong references to running tasks, which would otherwise be collected
  mid-flight;
- ``quiz.admission.joins_in_flight``: joins under way; each one leaves the
  count as it ends, so a reset would let the count go wrong;
- ``quiz.services`` group commits and ``quiz.worker``'s worker: they hold
  requests being written and answers being scored; the worker is a
  ``lifecycle`` service;
- the idle threads of ``realtime.transport.request_threads.RequestThreads``
  (the site's HTTP application holds them): a thread may be running a
  request's sync work; ``IDLE_REQUEST_THREADS`` bounds them as each request
  gives its thread back;
- ``realtime.core.rates.parse_rate``'s memo: a pure function's answers, never stale;
- ``realtime_settings`` and ``quiz_settings``: views of settings, holding nothing.
"""

from __future__ import annotations

from typing import Protocol, TypeVar


class Resettable(Protocol):
    """Anything that can forget what it holds: a cache, a limiter, a dict."""

    def clear(self) -> None: ...


R = TypeVar("R", bound=Resettable)

# The registry itself lives as long as the process: it only lists objects that do.
_registered: list[Resettable] = []


def register(state: R) -> R:
    """Have :func:`reset_all` clear ``state``; returns it, for ``cache = register(TTLCache())``.

    Registering the same object twice registers it once.
    """
    if not any(item is state for item in _registered):
        _registered.append(state)
    return state


def registered() -> tuple[Resettable, ...]:
    """Everything :func:`reset_all` clears, in the order it was registered."""
    return tuple(_registered)


def reset_all() -> None:
    """Clear every registered cache and limiter of this process."""
    for state in _registered:
        state.clear()
