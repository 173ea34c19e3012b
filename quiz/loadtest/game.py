"""The whole-game simulation: N players join, connect, answer K questions; the host drives.

:func:`run_game` talks only HTTP and WebSocket to the server and returns a
:class:`GameRun` of everything it saw, timestamped on this process's
``perf_counter`` clock. :mod:`.verify` then compares it with the database.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from . import cpu
from .host import HostClient
from .http import Backoff, ConnectionFailed, HttpStats, Pool, source_addresses, with_backoff
from .players import AnswerRecord, SimPlayer
from .reconnect import RetryPolicy


@dataclass
class GameConfig:
    url: str
    players: int
    questions: int
    answer_window: float = 5.0  # each player answers after uniform(0, window) seconds
    ws_share: float = 0.5  # share of answers sent over WebSocket; the rest over HTTP
    http_connections: int = 128
    connect_concurrency: int = 200
    join_deadline: float = 120.0
    # Players keep retrying a refused connect this long from the connect phase's start, and a
    # refused reconnect this long after their socket went away (the shipped clients never stop).
    connect_deadline: float = 120.0
    reconnect_within: float = 60.0
    question_slack: float = 20.0  # beyond time limit + window, the host stops waiting
    final_timeout: float = 15.0
    quiet: float = 1.0  # listened after the end, for duplicates
    cache_ttl: float = 1.0
    reveal_pause: float = 1.0  # the host shows each reveal this long before the next question
    server_pid: int | None = None
    seed: int | None = None
    backoff: Backoff = field(default_factory=Backoff)
    reconnect: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http").rstrip("/") + "/event/realtime"


@dataclass
class QuestionRun:
    question_id: int
    index: int
    host_sent_at: float
    expected: int
    attempts_done: int = 0
    accepted: int = 0
    scored: int = 0
    reveal: dict[str, Any] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    closed_at: float | None = None

    def update(self) -> None:
        if self.attempts_done >= self.expected and self.scored >= self.accepted:
            self.done.set()


@dataclass
class BoardSeen:
    """One distinct leaderboard event, and when players received it."""

    order: int
    event: dict[str, Any]
    first_at: float
    last_at: float
    receivers: int = 1


@dataclass
class GameRun:
    code: str
    config: GameConfig
    players: list[SimPlayer]
    stats: HttpStats
    questions: list[QuestionRun] = field(default_factory=list)
    boards: dict[str, BoardSeen] = field(default_factory=dict)
    join_started: float = 0.0
    join_ended: float = 0.0
    connect_started: float = 0.0
    connect_ended: float = 0.0
    finished_at: float = 0.0
    finals_received: int = 0
    api_leaderboard: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    cpu: dict[str, str] = field(default_factory=dict)  # phase → who used the CPU

    @property
    def admitted(self) -> list[SimPlayer]:
        return [p for p in self.players if p.join_status == 201]

    @property
    def connected(self) -> list[SimPlayer]:
        return [p for p in self.players if p.connected]


class Simulation:
    """Drives one game and listens to every player's frames (a ``players.Listener``)."""

    def __init__(self, config: GameConfig, code: str, host: HostClient, run_id: str) -> None:
        self.config = config
        self.code = code
        self.host = host
        self.rng = random.Random(config.seed)
        self.stats = HttpStats()
        self.pool = Pool(config.url, config.http_connections, stats=self.stats)
        ips = source_addresses(config.http_connections)
        self.players = [
            SimPlayer(index=i, nickname=f"lt{run_id}-{i}", source_ip=ips[i % len(ips)])
            for i in range(config.players)
        ]
        self.run = GameRun(code=code, config=config, players=self.players, stats=self.stats)
        self._current: dict[int, QuestionRun] = {}
        self._answer_tasks: set[asyncio.Task[None]] = set()
        self._finals = asyncio.Event()
        self._finals_expected = 0

    # -- phases --------------------------------------------------------------

    async def join_all(self) -> None:
        deadline = time.monotonic() + self.config.join_deadline
        self.run.join_started = perf_counter()

        async def join(player: SimPlayer) -> None:
            # One key for every attempt: a retry of a join whose answer was lost
            # (a timeout) gets the stored player back, not a 409.
            rng = random.Random(self.rng.random())
            key = f'"{uuid.UUID(int=rng.getrandbits(128), version=4)}"'

            async def send() -> Any:
                return await self.pool.request(
                    "join",
                    "POST",
                    f"/api/quiz/games/{self.code}/join",
                    json_body={"nickname": player.nickname},
                    headers={"Idempotency-Key": key},
                )

            outcome = await with_backoff(
                send, policy=self.config.backoff, rng=rng, deadline=deadline, idempotent=True
            )
            player.join_attempts = outcome.attempts
            player.join_error = outcome.error
            if outcome.response is None:
                return
            player.join_status = outcome.response.status
            if outcome.response.status == 201:
                body = outcome.response.json()
                player.joined_at = perf_counter()
                player.player_id = int(body["player_id"])
                player.token = body["token"]
                player.channels = body["channels"]
            elif player.join_error is None:
                player.join_error = f"HTTP {outcome.response.status}: {outcome.response.body[:200]!r}"

        await asyncio.gather(*(join(player) for player in self.players))
        self.run.join_ended = max((p.joined_at or 0.0 for p in self.players), default=0.0)

    async def connect_all(self) -> None:
        self.run.connect_started = perf_counter()
        gate = asyncio.Semaphore(self.config.connect_concurrency)
        deadline = time.monotonic() + self.config.connect_deadline

        async def open_(player: SimPlayer) -> None:
            await player.connect(
                self.config.ws_url,
                self.pool.authority,
                self,
                limit=60.0,
                deadline=deadline,
                rng=random.Random(self.rng.random()),
                policy=self.config.reconnect,
                reconnect_within=self.config.reconnect_within,
                gate=gate,
            )

        await asyncio.gather(*(open_(p) for p in self.players if p.join_status == 201))
        self.run.connect_ended = perf_counter()

    async def play(self, questions: int, time_limit: float) -> None:
        for index in range(questions):
            action = "start" if index == 0 else "next"
            sent_at = perf_counter()
            state = await self.host.action(self.code, action)
            if state.get("state") != "question":
                raise RuntimeError(f"{action} left the game in {state}")
            question = await self._wait_question(index)
            question.host_sent_at = sent_at
            try:
                await asyncio.wait_for(
                    question.done.wait(), time_limit + self.config.answer_window + self.config.question_slack
                )
            except TimeoutError:
                self.run.errors.append(
                    f"question {index + 1}: gave up waiting ({question.attempts_done}/{question.expected} "
                    f"answered, {question.scored}/{question.accepted} scored)"
                )
            await asyncio.gather(*list(self._answer_tasks))
            question.closed_at = perf_counter()
            await self.host.action(self.code, "reveal")
            await asyncio.sleep(self.config.reveal_pause)
        self._finals_expected = sum(1 for p in self.players if p.connected and p.closed_early is None)
        await self.host.action(self.code, "finish")
        self.run.finished_at = perf_counter()
        try:
            await asyncio.wait_for(self._finals.wait(), self.config.final_timeout)
        except TimeoutError:
            self.run.errors.append(
                f"only {self.run.finals_received}/{self._finals_expected} players heard the final leaderboard"
            )
        await asyncio.sleep(self.config.quiet)
        # The leaderboard endpoint is cached for CACHE_TTL: wait it out, then read it.
        await asyncio.sleep(self.config.cache_ttl + 0.2)
        try:
            response = await self.pool.request(
                "leaderboard", "GET", f"/api/quiz/games/{self.code}/leaderboard"
            )
            self.run.api_leaderboard = response.json() if response.status == 200 else None
        except ConnectionFailed as error:
            self.run.errors.append(f"GET leaderboard: {error}")

    async def _wait_question(self, index: int) -> QuestionRun:
        """The question the host just opened, as the first player heard it."""
        for _ in range(600):
            for question in self._current.values():
                if question.index == index:
                    return question
            await asyncio.sleep(0.05)
        raise RuntimeError(f"no player heard question {index + 1} within 30 s")

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.players if p.ws is not None))
        await self.pool.close()

    # -- the Listener --------------------------------------------------------

    def on_question(self, player: SimPlayer, event: dict[str, Any], at: float) -> None:
        payload = event["question"]
        question_id = int(payload["id"])
        question = self._current.get(question_id)
        if question is None:
            expected = sum(1 for p in self.players if p.connected and p.closed_early is None)
            question = QuestionRun(question_id, int(payload["index"]), at, expected)
            self._current[question_id] = question
            self.run.questions.append(question)
        if question_id in player.answers:
            return
        choice = self.rng.randrange(len(payload["choices"]))
        via = "ws" if self.rng.random() < self.config.ws_share else "http"
        record = AnswerRecord(question_id, choice, via)
        player.answers[question_id] = record
        task = asyncio.create_task(
            self._answer(player, record, question, self.rng.uniform(0, self.config.answer_window))
        )
        self._answer_tasks.add(task)
        task.add_done_callback(self._answer_tasks.discard)

    async def _answer(
        self, player: SimPlayer, record: AnswerRecord, question: QuestionRun, delay: float
    ) -> None:
        await asyncio.sleep(delay)
        try:
            if record.via == "ws":
                await player.answer_ws(record, limit=30.0)
            else:
                await self._answer_http(player, record)
        finally:
            question.attempts_done += 1
            if record.accepted:
                question.accepted += 1
            question.update()

    async def _answer_http(self, player: SimPlayer, record: AnswerRecord) -> None:
        def sent() -> None:
            record.sent_at = perf_counter()

        try:
            response = await self.pool.request(
                "answer",
                "POST",
                f"/api/quiz/games/{self.code}/answers",
                json_body={"question_id": record.question_id, "choice": record.choice},
                headers={"Authorization": f"Bearer {player.token}"},
                on_sent=sent,
            )
        except ConnectionFailed as error:
            record.error = f"http: {error}"
            return
        record.acked_at = perf_counter()
        if response.status == 202:
            record.accepted = True
        else:
            record.error = f"http {response.status}: {response.body[:200]!r}"

    def on_score(self, player: SimPlayer, event: dict[str, Any], at: float) -> None:
        question = self._current.get(event.get("question_id"))  # type: ignore[arg-type]
        if question is not None and len(player.scores.get(question.question_id, ())) == 1:
            question.scored += 1
            question.update()

    def on_reveal(self, player: SimPlayer, event: dict[str, Any], at: float) -> None:
        question = self._current.get(event.get("question_id"))  # type: ignore[arg-type]
        if question is not None and question.reveal is None:
            question.reveal = event

    def on_board(self, player: SimPlayer, raw_event: str, at: float) -> None:
        seen = self.run.boards.get(raw_event)
        if seen is None:
            seen = BoardSeen(len(self.run.boards), json.loads(raw_event), at, at, 0)
            self.run.boards[raw_event] = seen
        seen.receivers += 1
        seen.last_at = max(seen.last_at, at)
        if seen.event.get("final") and player.final_board is None:
            player.final_board = raw_event
            self.run.finals_received += 1
            if self._finals_expected and self.run.finals_received >= self._finals_expected:
                self._finals.set()

    def on_state(self, player: SimPlayer, event: dict[str, Any], at: float) -> None:
        pass


def question_set(count: int, *, time_limit: float, rng: random.Random) -> dict[str, Any]:
    """A generated question set: four choices, one right at random."""
    return {
        "title": "Load test",
        "questions": [
            {
                "text": f"Load test question {n + 1}?",
                "choices": ["A", "B", "C", "D"],
                "correct": rng.randrange(4),
                "time_limit": time_limit,
                "points": 1000,
            }
            for n in range(count)
        ],
    }


async def run_game(
    config: GameConfig,
    *,
    host: HostClient,
    code: str,
    time_limit: float,
    run_id: str,
) -> GameRun:
    """Join, connect, play ``config.questions`` questions and finish; return what was seen."""
    simulation = Simulation(config, code, host, run_id)
    run = simulation.run
    marks = [cpu.snapshot(config.server_pid)]
    try:
        await simulation.join_all()
        marks.append(cpu.snapshot(config.server_pid))
        run.cpu["join phase"] = cpu.describe(marks[-2], marks[-1])
        await simulation.connect_all()
        marks.append(cpu.snapshot(config.server_pid))
        run.cpu["connect phase"] = cpu.describe(marks[-2], marks[-1])
        if run.connected:
            await simulation.play(config.questions, time_limit)
            marks.append(cpu.snapshot(config.server_pid))
            run.cpu["questions phase"] = cpu.describe(marks[-2], marks[-1])
        else:
            run.errors.append("no player connected; the game was not played")
    finally:
        await simulation.close()
    return run
