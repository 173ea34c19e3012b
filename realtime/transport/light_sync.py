"""Light stand-ins for the asyncio primitives a server keeps per WebSocket connection.

An ``asyncio.Queue`` holds four deques and an event (about 3 KB) and an
``asyncio.Event`` a deque of waiters (about 760 bytes) from the moment they are
made, whether or not anything ever waits; a server that makes them for every
connection keeps them for every idle one. These keep a list or a future only
while something is queued or waiting.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Inbox:
    """The application's ``receive`` for one connection: what ``asyncio.Queue`` gives the servers
    (messages in order; ``get`` returns at once, without yielding, while messages wait), in one list.
    """

    __slots__ = ("_messages", "_next", "_waiter")

    def __init__(self) -> None:
        self._messages: list[dict[str, Any]] = []
        self._next = 0
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, message: dict[str, Any]) -> None:
        self._messages.append(message)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> dict[str, Any]:
        while self._next == len(self._messages):
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        message = self._messages[self._next]
        self._next += 1
        if self._next == len(self._messages):
            # Read to the end: start over, keeping the list's storage.
            self._messages.clear()
            self._next = 0
        return message

    def qsize(self) -> int:
        return len(self._messages) - self._next

    def empty(self) -> bool:
        return self._next == len(self._messages)


class Flag:
    """``asyncio.Event``'s ``set``/``clear``/``is_set``/``wait``, with no waiter list until one waits."""

    __slots__ = ("_set", "_waiters")

    def __init__(self, *, is_set: bool = False) -> None:
        self._set = is_set
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
