"""Group commit: concurrent joins and answers share one transaction, each submitter gets its own outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError, transaction
from django.utils import timezone

from quiz import services
from quiz.batching import GroupCommit
from quiz.exceptions import AlreadyAnswered, InvalidChoice, InvalidPlayerToken, NicknameTaken, NotAnswerable
from quiz.models import Answer, Game, Player

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder:
    """``process`` for a GroupCommit: records each batch and whether it ran in one transaction."""

    def __init__(self, process: Any, fail_after_writing: bool = False) -> None:
        self.process = process
        self.fail_after_writing = fail_after_writing
        self.batches: list[int] = []

    def __call__(self, items: list[Any]) -> list[Any]:
        with transaction.atomic():
            results = self.process(items)
            self.batches.append(len(items))
            if self.fail_after_writing:
                raise OperationalError("disk I/O error")
        return results


def answer_request(game: Game, player: Player, choice: Any, question_id: int | None = None) -> Any:
    return services.AnswerRequest(
        code=game.code,
        question_id=game.current_question_id if question_id is None else question_id,
        choice=choice,
        received_at=timezone.now(),
        player_id=player.pk,
    )


async def started_with_players(game: Game, count: int) -> tuple[Game, list[Player]]:
    def setup() -> tuple[Game, list[Player]]:
        players = [services.player_join(code=game.code, nickname=f"p{i}")[0] for i in range(count)]
        return services.game_start(game=game), players

    return await sync_to_async(setup)()


async def test_concurrent_answers_are_stored_in_one_transaction_each_with_its_own_result(game: Game) -> None:
    game, players = await started_with_players(game, 5)
    recorder = Recorder(lambda items: services.answers_submit(requests=items))
    collector = GroupCommit(recorder)

    answers = await asyncio.gather(
        *(collector.submit(answer_request(game, player, index % 3)) for index, player in enumerate(players))
    )

    assert recorder.batches == [5]
    stored = await sync_to_async(
        lambda: list(Answer.objects.order_by("pk").values_list("pk", "player_id", "question_id", "choice"))
    )()
    assert stored == [
        (answer.pk, player.pk, game.current_question_id, index % 3)
        for index, (answer, player) in enumerate(zip(answers, players, strict=True))
    ]


async def test_each_submitter_gets_its_own_error_and_the_others_are_stored(game: Game) -> None:
    game, (ada, bob, cy, dee) = await started_with_players(game, 4)
    await sync_to_async(services.answer_submit)(player=dee, question_id=game.current_question_id, choice=2)
    collector = GroupCommit(lambda items: services.answers_submit(requests=items))
    stranger = services.AnswerRequest(
        code=game.code,
        question_id=game.current_question_id,
        choice=0,
        received_at=timezone.now(),
        token="nope",
    )

    outcomes = await asyncio.gather(
        collector.submit(answer_request(game, ada, 1)),
        collector.submit(answer_request(game, bob, 7)),
        collector.submit(answer_request(game, cy, 0, question_id=game.current_question_id + 1)),
        collector.submit(answer_request(game, dee, 2)),
        collector.submit(answer_request(game, ada, 0)),
        collector.submit(stranger),
        return_exceptions=True,
    )

    kinds = [(type(outcome), getattr(outcome, "stored_choice", None)) for outcome in outcomes]
    assert kinds == [
        (Answer, None),
        (InvalidChoice, None),
        (NotAnswerable, None),
        (AlreadyAnswered, 2),  # stored before: a retry of choice 2 would be no conflict
        (AlreadyAnswered, 1),  # the same player's first answer in this very batch
        (InvalidPlayerToken, None),
    ]
    stored = await sync_to_async(lambda: sorted(Answer.objects.values_list("player_id", "choice")))()
    assert stored == sorted([(ada.pk, 1), (dee.pk, 2)])


async def test_a_failing_batch_reports_its_error_to_every_submitter_and_stores_none(game: Game) -> None:
    game, players = await started_with_players(game, 3)
    recorder = Recorder(lambda items: services.answers_submit(requests=items), fail_after_writing=True)
    collector = GroupCommit(recorder)
    requests = [answer_request(game, player, 1) for player in players]

    outcomes = await asyncio.gather(*(collector.submit(r) for r in requests), return_exceptions=True)

    assert [(type(o), str(o)) for o in outcomes] == [(OperationalError, "disk I/O error")] * 3
    assert await Answer.objects.acount() == 0
    # Nothing was half stored: the same answers, sent again, all go in.
    recorder.fail_after_writing = False
    again = await asyncio.gather(*(collector.submit(r) for r in requests))
    assert recorder.batches == [3, 3]
    assert sorted(a.player_id for a in again) == sorted(p.pk for p in players)
    assert await Answer.objects.acount() == 3


async def test_what_arrives_while_a_batch_is_written_goes_into_the_next_one(game: Game) -> None:
    game, players = await started_with_players(game, 4)
    first_batch_started = asyncio.Event()
    release = asyncio.Event()
    loop = asyncio.get_running_loop()
    recorder = Recorder(lambda items: services.answers_submit(requests=items))

    def slow_first(items: list[Any]) -> list[Any]:
        if not recorder.batches:
            loop.call_soon_threadsafe(first_batch_started.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
        return recorder(items)

    collector = GroupCommit(slow_first)
    first = asyncio.ensure_future(collector.submit(answer_request(game, players[0], 0)))
    await first_batch_started.wait()
    rest = [asyncio.ensure_future(collector.submit(answer_request(game, p, 1))) for p in players[1:]]
    await asyncio.sleep(0)
    release.set()

    await asyncio.gather(first, *rest)
    assert recorder.batches == [1, 3]


async def test_concurrent_joins_share_one_transaction_and_a_taken_nickname_fails_alone(game: Game) -> None:
    recorder = Recorder(lambda items: services.players_join(requests=items))
    collector = GroupCommit(recorder)
    names = ["ada", "bob", "ada", " cy "]

    outcomes = await asyncio.gather(
        *(collector.submit(services.JoinRequest(code=game.code, nickname=name)) for name in names),
        return_exceptions=True,
    )

    assert recorder.batches == [4]
    assert isinstance(outcomes[2], NicknameTaken)
    joined = [outcome for outcome in outcomes if not isinstance(outcome, Exception)]
    assert [player.nickname for player, _ in joined] == ["ada", "bob", "cy"]
    stored = await sync_to_async(lambda: dict(Player.objects.values_list("nickname", "token_hash")))()
    assert stored == {player.nickname: services.token_hash(token) for player, token in joined}
