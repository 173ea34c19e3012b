"""Signals for server code, sent by ``realtime`` (documented like an API).

Receivers may be sync or async; they run after the fact and cannot change
what happened. Keep them fast: they run on the server's event loop path
(async receivers) or in a thread (sync receivers, via ``Signal.asend``).

``event_published``
    sender: ``"realtime"``. After fan-out of a publish.
    kwargs: ``channel`` (str, canonical path ``/ns/a``), ``namespace`` (str),
    ``events`` (list of parsed payloads as broadcast), ``identity``
    (:class:`realtime.auth.Identity`), ``transport`` ("http", "websocket", "server").

``subscription_started`` / ``subscription_ended``
    sender: ``"realtime"``. kwargs: ``connection_id`` (str), ``subscription_id``
    (str), ``channel`` (str, canonical, ``/*`` kept), ``namespace`` (str), and for
    ``subscription_started`` also ``identity``. A subscription ends on
    unsubscribe or when its connection closes.

``client_connected`` / ``client_disconnected``
    sender: ``"realtime"``. kwargs: ``connection_id`` (str), ``identity``
    (the connect identity, ``None`` for a refused connection that never got
    one), and for ``client_disconnected`` also ``code`` (the close code, int or
    ``None``). Refused connections send neither.

``access_revoked``
    sender: ``"realtime"``. In every process, when server-side control
    (``realtime.disconnect`` / ``unsubscribe``, a revoked key, a deactivated or
    signed-out user) reaches it, before its connections close. kwargs: ``action``
    (``"disconnect"``, ``"unsubscribe"`` or ``"verify_sessions"``, sent only when
    some session no longer signs its user in) and ``criteria`` (the control message:
    ``connection``, ``user``, ``api_key``, ``identity``, ``session`` (a digest),
    ``mode``, ``channel``, ``reason``, as given). Apps clear what they cached about
    credentials here.
"""

from django.dispatch import Signal

event_published = Signal()
subscription_started = Signal()
subscription_ended = Signal()
client_connected = Signal()
client_disconnected = Signal()
access_revoked = Signal()

SENDER = "realtime"
