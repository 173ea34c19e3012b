"""Where Redis is: one URL names a single server or a master behind Redis Sentinel. Pure.

Every Redis the site uses (the channel layer, the cache, the shared rate limits,
the history streams, the occupancy hashes) is named by one URL, so one setting
(``REDIS_URL``) moves all of them:

- ``redis://[[user]:password@]host[:port][/db]``, ``rediss://…``, ``unix:///path``:
  one server, as redis-py reads it;
- ``redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/<master name>[/db]``:
  the master that the listed Sentinels name (port 26379 by default). Clients ask
  a Sentinel for the master's address on every new connection, so after a
  failover they reconnect to the new master without a restart. The credentials
  are the master's (and its replicas'); ``?sentinel_password=…`` authenticates
  to the Sentinels when they require it.

:func:`parse_redis_url` validates and reads one; :func:`channel_layer_host` is
the ``CHANNEL_LAYERS`` hosts entry channels_redis needs for it. The clients are
made in :mod:`realtime.store.redis`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SENTINEL_SCHEME = "redis+sentinel"
PLAIN_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_SENTINEL_PORT = 26379
# A Sentinel answers "where is the master" from memory: a second is plenty, and a
# Sentinel that does not answer within it must not hold every new connection
# (the next one in the list is asked instead).
SENTINEL_TIMEOUT = 1.0
# A master that cannot be reached (its host gone, not just its process) must
# fail the operation in bounded time, so a publish is refused, not left hanging
# until the kernel gives up on the connect (minutes).
CONNECT_TIMEOUT = 2.0
_SENTINEL_OPTIONS = {"sentinel_password"}


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """The master named ``master_name`` by any of ``sentinels``, database ``db``."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    def connection_kwargs(self) -> dict[str, Any]:
        """What every connection to the master gets (redis-py's connection keywords)."""
        kwargs: dict[str, Any] = {"db": self.db, "socket_connect_timeout": CONNECT_TIMEOUT}
        if self.username is not None:
            kwargs["username"] = self.username
        if self.password is not None:
            kwargs["password"] = self.password
        return kwargs

    def sentinel_kwargs(self) -> dict[str, Any]:
        """What every connection to a Sentinel gets."""
        kwargs: dict[str, Any] = {
            "socket_timeout": SENTINEL_TIMEOUT,
            "socket_connect_timeout": SENTINEL_TIMEOUT,
        }
        if self.sentinel_password is not None:
            kwargs["password"] = self.sentinel_password
        return kwargs


def parse_redis_url(url: str) -> str | SentinelTarget:
    """``url`` itself for one server, a :class:`SentinelTarget` for a ``redis+sentinel://`` URL.

    Raises:
        ValueError: the URL is neither; the message says what is wrong with it.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise ValueError(f"{url!r} is not a URL")
    scheme = scheme.lower()
    if scheme in PLAIN_SCHEMES:
        return url
    if scheme != SENTINEL_SCHEME:
        known = ", ".join(f"{name}://" for name in (*PLAIN_SCHEMES, SENTINEL_SCHEME))
        raise ValueError(f"{url!r} has the scheme {scheme}://; expected one of {known}")
    return _parse_sentinel(url, rest)


def _parse_sentinel(url: str, rest: str) -> SentinelTarget:
    # urlsplit reads one host:port only; the list of Sentinels is split here.
    authority, _, path_and_query = rest.partition("/")
    path, _, query = path_and_query.partition("?")
    if "@" in authority:
        userinfo, _, hosts_text = authority.rpartition("@")
        raw_user, has_password, raw_password = userinfo.partition(":")
        username = unquote(raw_user) or None
        password = unquote(raw_password) if has_password else None
        if not has_password:
            # "secret@host" is a password, as redis-py reads redis://secret@host.
            username, password = None, unquote(raw_user)
    else:
        hosts_text, username, password = authority, None, None
    sentinels = tuple(_host_port(url, item) for item in hosts_text.split(","))
    parts = [unquote(part) for part in path.split("/")] if path else []
    if not parts or not parts[0]:
        raise ValueError(f"{url!r} names no master: add /<master name> after the Sentinels")
    if len(parts) > 2:
        raise ValueError(f"{url!r}: expected /<master name>[/<db>] after the Sentinels")
    db = 0
    if len(parts) == 2 and parts[1]:
        if not parts[1].isdigit():
            raise ValueError(f"{url!r}: the database {parts[1]!r} is not a number")
        db = int(parts[1])
    options = parse_qs(query, keep_blank_values=True, strict_parsing=False) if query else {}
    unknown = set(options) - _SENTINEL_OPTIONS
    if unknown:
        known = ", ".join(sorted(_SENTINEL_OPTIONS))
        raise ValueError(f"{url!r}: unknown option(s) {', '.join(sorted(unknown))}; known: {known}")
    sentinel_password = options["sentinel_password"][-1] if "sentinel_password" in options else None
    return SentinelTarget(sentinels, parts[0], db, username, password, sentinel_password or None)


def _host_port(url: str, item: str) -> tuple[str, int]:
    item = item.strip()
    if not item:
        raise ValueError(f"{url!r} lists an empty Sentinel address")
    try:
        # urlsplit knows [IPv6]:port; the scheme is only there to make it parse.
        parsed = urlsplit(f"//{item}")
        host, port = parsed.hostname, parsed.port
    except ValueError as error:
        raise ValueError(f"{url!r}: the Sentinel address {item!r} is not host:port ({error})") from None
    if not host:
        raise ValueError(f"{url!r}: the Sentinel address {item!r} has no host")
    return host, port if port is not None else DEFAULT_SENTINEL_PORT


def channel_layer_host(url: str) -> str | dict[str, Any]:
    """The ``CHANNEL_LAYERS[...]["CONFIG"]["hosts"]`` entry channels_redis reads for ``url``.

    One server: the URL. A Sentinel URL: the ``sentinels`` / ``master_name`` form
    (channels_redis makes a ``SentinelConnectionPool`` of it). A URL that does not
    parse is returned as it is: settings must not raise, and ``realtime.E025``
    reports it.
    """
    try:
        target = parse_redis_url(url)
    except ValueError:
        return url
    if isinstance(target, str):
        return target
    return {
        "sentinels": list(target.sentinels),
        "master_name": target.master_name,
        "sentinel_kwargs": target.sentinel_kwargs(),
        **target.connection_kwargs(),
    }
