"""A small keep-alive HTTP/1.1 client on asyncio streams, and retry with backoff.

The load test must not need packages the project does not install, and the
load generator's per-request cost must stay far below the server's, so this
speaks only what the quiz API needs: one request at a time per connection,
``Content-Length`` or chunked bodies, cookies kept by the caller.

Each connection binds to its own loopback source address (``127.0.x.y``): the
server's per-client join rate is keyed on the client address, and a crowd of
players comes from many addresses, not one. Loopback only (127.0.0.0/8).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

DEFAULT_TIMEOUT = 30.0


def source_addresses(count: int) -> list[str]:
    """``count`` distinct loopback addresses: 127.0.1.1, 127.0.1.2, ... (never 127.0.0.1's block)."""
    return [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(max(1, count))]


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]
    set_cookies: list[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


class ConnectionFailed(Exception):
    """The connection broke or timed out before a whole response arrived."""


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closed it."""

    def __init__(self, host: str, port: int, *, local_ip: str | None = None, authority: str = "") -> None:
        self.host = host
        self.port = port
        self.local_ip = local_ip
        self.authority = authority or f"{host}:{port}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        local = (self.local_ip, 0) if self.local_ip else None
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port, local_addr=local)

    async def open(self) -> None:
        """Connect now, if not connected (a request otherwise connects on its own)."""
        if self._writer is None:
            await self._open()

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ConnectionError):
                pass

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        on_sent: Callable[[], None] | None = None,
    ) -> Response:
        """Send one request and read its response; a reused connection that the
        server had closed is reopened once (nothing was processed on it)."""
        reused = self._writer is not None
        try:
            return await self._exchange(method, path, headers or {}, body, on_sent)
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as error:
            await self.close()
            if not reused or isinstance(error, _ResponseStarted):
                raise ConnectionFailed(str(error) or type(error).__name__) from error
        try:
            return await self._exchange(method, path, headers or {}, body, on_sent)
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as error:
            await self.close()
            raise ConnectionFailed(str(error) or type(error).__name__) from error

    async def _exchange(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        on_sent: Callable[[], None] | None,
    ) -> Response:
        if self._writer is None:
            await self._open()
        assert self._reader is not None and self._writer is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.authority}"]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if on_sent is not None:
            on_sent()
        await self._writer.drain()
        reader = self._reader
        head = await reader.readuntil(b"\r\n\r\n")
        try:
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split(" ", 2)[1])
        except (IndexError, ValueError) as error:
            raise _ResponseStarted(f"bad status line {head[:80]!r}") from error
        response_headers: dict[str, str] = {}
        cookies: list[str] = []
        for line in header_lines:
            if not line:
                continue
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            if name == "set-cookie":
                cookies.append(value)
            response_headers[name] = value
        try:
            if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                data = b""
            elif "content-length" in response_headers:
                data = await reader.readexactly(int(response_headers["content-length"]))
            elif response_headers.get("transfer-encoding", "").lower() == "chunked":
                data = await _read_chunked(reader)
            else:
                data = await reader.read()
                await self.close()
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as error:
            raise _ResponseStarted(str(error)) from error
        if response_headers.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, response_headers, cookies, data)


class _ResponseStarted(ConnectionError):
    """A failure after the response began: the request was processed; never resend it."""


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


@dataclass
class HttpStats:
    """Status counts per request kind; failures (no response) separately."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)

    def count(self, kind: str, status: int) -> None:
        self.statuses[(kind, status)] += 1

    def total(self, *, kind: str | None = None, status_class: int | None = None) -> int:
        return sum(
            n
            for (k, status), n in self.statuses.items()
            if (kind is None or k == kind) and (status_class is None or status // 100 == status_class)
        )

    def of(self, kind: str, status: int) -> int:
        return self.statuses[(kind, status)]


class Pool:
    """A fixed set of keep-alive connections, each from its own loopback address."""

    def __init__(
        self, base_url: str, size: int, *, stats: HttpStats, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http":
            raise ValueError("only http:// URLs are supported")
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 80
        if not host.startswith("127.") and host not in ("localhost", "::1"):
            # The workplace allows load only against this machine (loopback).
            raise ValueError(f"refusing to load a non-loopback host {host!r}")
        self.authority = parts.netloc
        self.stats = stats
        self.timeout = timeout
        self._all = [
            Connection(host, port, local_ip=ip if host.startswith("127.") else None, authority=parts.netloc)
            for ip in source_addresses(size)
        ]
        self._free: asyncio.Queue[Connection] = asyncio.Queue()
        for connection in self._all:
            self._free.put_nowait(connection)

    async def request(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> Response:
        """One request on a free connection; counted in :attr:`stats` under ``kind``.

        Raises:
            ConnectionFailed: no response (refused, reset, or timed out).
        """
        connection = await self._free.get()
        try:
            all_headers = dict(headers or {})
            body = b""
            if json_body is not None:
                body = json.dumps(json_body).encode()
                all_headers.setdefault("Content-Type", "application/json")
            try:
                async with asyncio.timeout(self.timeout):
                    response = await connection.request(
                        method, path, headers=all_headers, body=body, on_sent=on_sent
                    )
            except TimeoutError:
                await connection.close()
                self.stats.failures[f"{kind}: timeout"] += 1
                raise ConnectionFailed("timed out") from None
            except ConnectionFailed as error:
                self.stats.failures[f"{kind}: {error}"] += 1
                raise
            self.stats.count(kind, response.status)
            return response
        finally:
            self._free.put_nowait(connection)

    async def close(self) -> None:
        await asyncio.gather(*(connection.close() for connection in self._all))


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, never sooner than ``Retry-After``.

    Attempt ``n`` (from 0) waits ``Retry-After + uniform(0, min(cap, base·2ⁿ))``:
    the server's hint is honoured and the jitter spreads the crowd over the
    window after it instead of stampeding at its first instant.
    """

    base: float = 0.1
    cap: float = 5.0
    max_attempts: int = 30
    retry_statuses: Sequence[int] = (429, 503)

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        return (retry_after or 0.0) + rng.uniform(0.0, min(self.cap, self.base * 2**attempt))


@dataclass
class Attempted:
    response: Response | None
    attempts: int
    waited: float
    error: str | None = None


async def with_backoff(
    send: Callable[[], Awaitable[Response]],
    *,
    policy: Backoff,
    rng: random.Random,
    deadline: float,
    idempotent: bool = False,
) -> Attempted:
    """Call ``send`` until its status is not retryable, attempts run out or ``deadline``
    (``time.monotonic()``) passes. A connection failure (a timeout among them) is
    retried only when ``idempotent`` (the request carries an ``Idempotency-Key``):
    a request that may have been processed is otherwise never sent twice."""
    waited = 0.0
    response: Response | None = None
    for attempt in range(policy.max_attempts):
        error: str | None = None
        try:
            response = await send()
        except ConnectionFailed as failure:
            if not idempotent:
                return Attempted(None, attempt + 1, waited, str(failure))
            response, error = None, str(failure)
        if response is not None and response.status not in policy.retry_statuses:
            return Attempted(response, attempt + 1, waited)
        delay = policy.delay(attempt, response.retry_after() if response else None, rng)
        if time.monotonic() + delay > deadline:
            return Attempted(response, attempt + 1, waited, error or "gave up retrying: deadline")
        waited += delay
        await asyncio.sleep(delay)
    return Attempted(response, policy.max_attempts, waited, "gave up retrying: attempts")
