"""Simulated players on the realtime WebSocket protocol (PROTOCOL §3).

A player joins over HTTP, connects to ``/event/realtime`` with its token in the
``header-`` subprotocol, subscribes to its game (``g``), the leaderboard (``l``)
and its own channel (``me``), retrying a refused connect as the quiz pages do
(:mod:`.reconnect`), answers each question after a random delay (over
WebSocket ``publish`` or ``POST .../answers``) and records when each frame
arrives. It never decides anything about the game: the :class:`Listener`
(the simulation) is told of every event.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from .reconnect import Attempt, Failure, RetryPolicy, classify_error, classify_frame

SUBPROTOCOL = "aws-appsync-event-ws"
ACK_TIMEOUT = 30.0
# RFC 6455 "going away": the server process drains (a restart); the player reconnects.
GOING_AWAY = 1001
# After a going-away close, how long an answer waits before looking again whether the reader saw it.
RECONNECT_PAUSE = 0.5
# How long a player keeps trying to reconnect after a going-away close (its retries back off).
RECONNECT_WITHIN = 60.0
SUBSCRIPTIONS = (("g", "game"), ("l", "leaderboard"), ("me", "player"))


def header_subprotocol(authorization: dict[str, str]) -> str:
    """``header-<base64url JSON>`` without padding (PROTOCOL §3.1)."""
    raw = json.dumps(authorization, separators=(",", ":")).encode()
    return "header-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(slots=True)
class AnswerRecord:
    question_id: int
    choice: int
    via: str  # "ws" or "http"
    sent_at: float = 0.0
    acked_at: float | None = None
    accepted: bool = False
    error: str | None = None


@dataclass(slots=True)
class ScoreRecord:
    received_at: float
    event: dict[str, Any]


class Listener(Protocol):
    def on_question(self, player: SimPlayer, event: dict[str, Any], at: float) -> None: ...
    def on_reveal(self, player: SimPlayer, event: dict[str, Any], at: float) -> None: ...
    def on_score(self, player: SimPlayer, event: dict[str, Any], at: float) -> None: ...
    def on_board(self, player: SimPlayer, raw_event: str, at: float) -> None: ...
    def on_state(self, player: SimPlayer, event: dict[str, Any], at: float) -> None: ...


@dataclass(eq=False)
class SimPlayer:
    index: int
    nickname: str
    source_ip: str
    # The join's outcome.
    join_status: int | None = None
    join_attempts: int = 0
    join_error: str | None = None
    joined_at: float | None = None
    player_id: int | None = None
    token: str = ""
    channels: dict[str, str] = field(default_factory=dict)
    # The socket.
    ws: ClientConnection | None = None
    connected: bool = False
    connect_error: str | None = None
    # Connect attempts (first connect and reconnects), and the failed ones retried, by kind:
    # at the first connect, and at reconnects after a going-away close.
    connect_attempts: int = 0
    connect_retries: Counter[Failure] = field(default_factory=Counter)
    reconnect_retries: Counter[Failure] = field(default_factory=Counter)
    closed_early: str | None = None
    # Going-away closes the player reconnected after, and answers it sent again meanwhile.
    reconnects: int = 0
    answers_resent: int = 0
    # Each subscription's position in its history stream (offset, epoch): a reconnect
    # subscribes from there, so it misses nothing and hears nothing twice.
    positions: dict[str, tuple[int, str]] = field(default_factory=dict)
    # What happened in the game.
    answers: dict[int, AnswerRecord] = field(default_factory=dict)
    scores: dict[int, list[ScoreRecord]] = field(default_factory=dict)
    questions_seen: dict[int, float] = field(default_factory=dict)
    final_board: str | None = None
    unexpected: list[str] = field(default_factory=list)
    _pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict, repr=False)
    _reader: asyncio.Task[None] | None = field(default=None, repr=False)
    _closing: bool = False
    _endpoint: tuple[str, str, float] = ("", "", 0.0)
    _listener: Listener | None = field(default=None, repr=False)
    _policy: RetryPolicy = field(default_factory=RetryPolicy, repr=False)
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _reconnect_within: float = RECONNECT_WITHIN
    # Set while the socket is open; cleared from a going-away close until the reconnect.
    _open: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    # The socket whose connect attempt succeeded: only its close is the player's to report.
    _live: ClientConnection | None = field(default=None, repr=False)

    # -- connection ----------------------------------------------------------

    async def connect(
        self,
        ws_url: str,
        authority: str,
        listener: Listener,
        *,
        limit: float,
        deadline: float,
        rng: random.Random,
        policy: RetryPolicy | None = None,
        reconnect_within: float = RECONNECT_WITHIN,
        gate: asyncio.Semaphore | None = None,
    ) -> None:
        """Open the socket, ``connection_init``, and subscribe to g, l and me.

        A refused or broken attempt is retried as the shipped clients retry it
        (:mod:`.reconnect`) until ``deadline`` (``time.monotonic()``); ``limit``
        bounds each attempt; ``gate`` is held during each attempt, not between.
        Sets :attr:`connected`, or :attr:`connect_error` with the reason.
        """
        self._endpoint, self._listener = (ws_url, authority, limit), listener
        self._rng, self._reconnect_within = rng, reconnect_within
        if policy is not None:
            self._policy = policy
        error = await self._open_with_retries(deadline, self.connect_retries, retries=0, gate=gate)
        if error is not None:
            self.connect_error = error
            await self.close()
            return
        self.connected = True
        self._open.set()

    async def _open_with_retries(
        self,
        deadline: float,
        retried: Counter[Failure],
        *,
        retries: int,
        gate: asyncio.Semaphore | None = None,
    ) -> str | None:
        """Attempts until one gets in, one fails for good, or the next would start past ``deadline``.

        ``retried`` counts the failed attempts retried, by kind; ``retries``: how many retries
        came before (a reconnect after a drop is the first, sent at once, as in ``realtime.js``).
        Returns why it gave up, or None.
        """
        limit = self._endpoint[2]
        while True:
            if self._closing:
                return "closed by the load test while connecting"
            async with gate if gate is not None else contextlib.nullcontext():
                attempt = await self._open_socket(max(0.1, min(limit, deadline - time.monotonic())))
            self.connect_attempts += 1
            if attempt is None:
                return None
            await self._discard_socket()
            if not attempt.failure.retryable:
                return attempt.detail
            retries += 1
            delay = self._policy.delay(retries, attempt.retry_after, self._rng)
            if time.monotonic() + delay >= deadline:
                return f"gave up at the deadline after {self.connect_attempts} attempts: {attempt.detail}"
            retried[attempt.failure] += 1
            await asyncio.sleep(delay)

    async def _discard_socket(self) -> None:
        """Drop a socket whose attempt failed; its reader, if any, reports nothing (it is not live)."""
        ws, self.ws = self.ws, None
        if ws is not None:
            with contextlib.suppress(OSError, WebSocketException):
                await ws.close()

    async def _open_socket(self, limit: float) -> Attempt | None:
        """Connect and subscribe (from the positions held, if any); why it failed, or None."""
        ws_url, authority, _ = self._endpoint
        assert self._listener is not None
        subprotocol = header_subprotocol({"authorization": self.token, "host": authority})
        local = (self.source_ip, 0) if self.source_ip else None
        try:
            async with asyncio.timeout(limit):
                self.ws = await connect(
                    ws_url,
                    subprotocols=[SUBPROTOCOL, subprotocol],  # type: ignore[list-item]
                    compression=None,
                    proxy=None,
                    ping_interval=None,
                    open_timeout=limit,
                    user_agent_header=None,
                    local_addr=local,
                )
                await self.ws.send('{"type":"connection_init"}')
                while True:
                    frame = json.loads(await self.ws.recv())
                    if frame.get("type") == "connection_ack":
                        break
                    if frame.get("type") != "ka":
                        return classify_frame(frame)
                self._reader = asyncio.create_task(self._read(self.ws, self._listener))
                waits = []
                for sub_id, name in SUBSCRIPTIONS:
                    waits.append(self._expect(sub_id))
                    subscribe: dict[str, Any] = {
                        "type": "subscribe",
                        "id": sub_id,
                        "channel": self.channels[name],
                    }
                    if sub_id in self.positions:
                        offset, epoch = self.positions[sub_id]
                        subscribe["since"] = {"offset": offset, "epoch": epoch}
                    await self.ws.send(json.dumps(subscribe))
                replies = await asyncio.gather(*waits)
        except (OSError, TimeoutError, WebSocketException, EOFError) as error:
            return classify_error(error)
        except (ValueError, KeyError) as error:
            return Attempt(Failure.FATAL, f"{type(error).__name__}: {error}")
        if any(reply.get("type") == "closed" for reply in replies):
            return Attempt(Failure.DROPPED, "the socket closed before subscribe_success")
        bad = [reply for reply in replies if reply.get("type") != "subscribe_success"]
        if bad:
            return Attempt(Failure.FATAL, f"subscribe refused: {bad[0]}")
        for sub_id, reply in zip((sub_id for sub_id, _ in SUBSCRIPTIONS), replies, strict=True):
            if reply.get("recovered") is False and sub_id in self.positions:
                return Attempt(Failure.FATAL, f"{sub_id}: history not recovered after a reconnect")
            if isinstance(reply.get("offset"), int) and isinstance(reply.get("epoch"), str):
                self._moved(sub_id, reply["offset"], reply["epoch"])
        self._live = self.ws
        return None

    async def _reconnect(self) -> None:
        """After a going-away close: connect again (to whichever process accepts) and resume."""
        deadline = time.monotonic() + self._reconnect_within
        error = await self._open_with_retries(deadline, self.reconnect_retries, retries=1)
        if error is None:
            self.reconnects += 1
        elif not self._closing:
            self.closed_early = f"could not reconnect after a going-away close: {error}"
        self._open.set()  # connected again, or nothing more will come: answers waiting stop waiting

    def _moved(self, sub_id: str, offset: int, epoch: str | None = None) -> None:
        held = self.positions.get(sub_id)
        if epoch is None:
            if held is None:
                return
            epoch = held[1]
        if held is None or held[1] != epoch or offset > held[0]:
            self.positions[sub_id] = (offset, epoch)

    def _expect(self, op_id: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[op_id] = future
        return future

    async def close(self) -> None:
        self._closing = True
        self._open.set()
        if self.ws is not None:
            try:
                await self.ws.close()
            except (OSError, WebSocketException):
                pass
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 5.0)
            except (TimeoutError, asyncio.CancelledError):
                self._reader.cancel()

    async def _read(self, ws: ClientConnection, listener: Listener) -> None:
        going_away = False
        try:
            async for message in ws:
                at = perf_counter()
                frame = json.loads(message)
                kind = frame.get("type")
                if kind == "data":
                    if isinstance(frame.get("offset"), int):
                        self._moved(frame.get("id"), frame["offset"])
                    self._data(listener, frame.get("id"), frame.get("event"), at)
                elif kind == "ka":
                    continue
                else:
                    future = self._pending.pop(frame.get("id"), None)
                    if future is not None and not future.done():
                        future.set_result(frame)
                    else:
                        self.unexpected.append(str(message)[:300])
        except ConnectionClosed as closed:
            going_away = closed.rcvd is not None and closed.rcvd.code == GOING_AWAY
            if not self._closing and not going_away and ws is self._live:
                self.closed_early = f"{closed.rcvd.code if closed.rcvd else 'no close frame'}: {closed}"
        finally:
            # A socket closed while its attempt subscribed is not the player's to report: the
            # attempt sees its subscribes fail and retries.
            live = ws is self._live
            # A clean close ends the iteration without an exception: its code tells.
            going_away = live and (going_away or ws.close_code == GOING_AWAY)
            if live and not self._closing and not going_away and self.closed_early is None:
                self.closed_early = "the server closed the socket"
            if going_away and not self._closing:
                # Operations without an answer never ran (the server answers what it
                # started before it goes away): they are sent again once reconnected.
                self._open.clear()
            for future in self._pending.values():
                if not future.done():
                    future.set_result({"type": "closed", "going_away": going_away})
            self._pending.clear()
        if going_away and not self._closing:
            self._reader = asyncio.create_task(self._reconnect())

    def _data(self, listener: Listener, sub_id: Any, raw: Any, at: float) -> None:
        if not isinstance(raw, str):
            self.unexpected.append(f"data without an event on {sub_id}")
            return
        if sub_id == "l":
            listener.on_board(self, raw, at)
            return
        event = json.loads(raw)
        kind = event.get("type") if isinstance(event, dict) else None
        if sub_id == "me" and kind == "score":
            self.scores.setdefault(event.get("question_id"), []).append(ScoreRecord(at, event))
            listener.on_score(self, event, at)
        elif sub_id == "g" and kind == "question":
            question_id = event["question"]["id"]
            self.questions_seen.setdefault(question_id, at)
            listener.on_question(self, event, at)
        elif sub_id == "g" and kind == "reveal":
            listener.on_reveal(self, event, at)
        elif sub_id == "g" and kind == "state":
            listener.on_state(self, event, at)
        else:
            self.unexpected.append(f"{sub_id}: {raw[:200]}")

    # -- answers -------------------------------------------------------------

    async def answer_ws(self, record: AnswerRecord, *, limit: float) -> None:
        """Publish the answer on the answers channel; accepted on a clean ``publish_success``.

        A publish the server left unanswered when it went away never ran: it is
        sent again once the player has reconnected.
        """
        op_id = f"a{record.question_id}"
        frame = {
            "type": "publish",
            "id": op_id,
            "channel": self.channels["answers"],
            "events": [json.dumps({"question_id": record.question_id, "choice": record.choice})],
        }
        record.sent_at = perf_counter()
        try:
            async with asyncio.timeout(limit):
                while True:
                    await self._open.wait()
                    if self.ws is None or self.closed_early is not None:
                        record.error = f"ws: the socket closed ({self.closed_early})"
                        return
                    reply = self._expect(op_id)
                    try:
                        await self.ws.send(json.dumps(frame))
                        result = await reply
                    except ConnectionClosed as closed:
                        self._pending.pop(op_id, None)
                        going_away = closed.rcvd is not None and closed.rcvd.code == GOING_AWAY
                        result = {"type": "closed", "going_away": going_away}
                    if result.get("type") == "closed" and result.get("going_away"):
                        self.answers_resent += 1
                        # The reader may not have seen the close yet: let it mark the socket gone.
                        await asyncio.sleep(RECONNECT_PAUSE)
                        continue
                    break
        except TimeoutError as error:
            self._pending.pop(op_id, None)
            record.error = f"ws: {type(error).__name__}"
            return
        record.acked_at = perf_counter()
        if result.get("type") == "publish_success" and not result.get("failed") and result.get("successful"):
            record.accepted = True
        else:
            record.error = f"ws: {json.dumps(result)[:200]}"
