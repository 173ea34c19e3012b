"""``realtime.publish_on_commit`` and the relay (realtime/operations/relay.py).

Events are rows of the writer's transaction; the relay publishes them after the
commit, in order per channel, at least once, each with its identifier, and
deletes them. tests/e2e/test_relay.py kills a real server between the commit
and the publish.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

import realtime
from realtime.exceptions import InvalidChannel, NoEvents, TooManyEvents
from realtime.lifecycle import lifecycle
from realtime.models import PendingPublication
from realtime.operations import relay as relay_module
from realtime.operations.publishing import publish_from_server
from realtime.operations.relay import Relay, relay

from .conftest import RecordingLayer, assert_silent, receive_frames, subscribed

pytestmark = pytest.mark.django_db(transaction=True)

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="LISTEN/NOTIFY and SKIP LOCKED need PostgreSQL"
)


class Rollback(Exception):
    pass


def write(*publications: tuple[str, list[dict[str, Any]], str], rollback: bool = False) -> None:
    """``publish_on_commit`` each ``(channel, events, key)`` in one transaction."""
    try:
        with transaction.atomic():
            for channel, events, key in publications:
                realtime.publish_on_commit(channel, events, key=key)
            if rollback:
                raise Rollback()
    except Rollback:
        pass


awrite = sync_to_async(write)


def pending() -> list[tuple[str, str]]:
    return list(PendingPublication.objects.order_by("id").values_list("key", "channel"))


apending = sync_to_async(pending)


async def received(comm: WebsocketCommunicator, count: int, timeout: float = 2) -> list[dict[str, Any]]:
    """The next ``count`` frames, each ``data`` frame's event parsed (key order is the database's)."""
    frames = await receive_frames(comm, count, timeout)
    return [{**frame, "event": json.loads(frame["event"])} if "event" in frame else frame for frame in frames]


def event(sub_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": "data", "id": sub_id, "event": payload}


@pytest.fixture
def external() -> Iterator[None]:
    """No relay in this process: rows wait until the test relays them."""
    with override_settings(REALTIME={**settings.REALTIME, "RELAY": "external"}):
        yield


@pytest.fixture
async def in_process() -> AsyncIterator[None]:
    """The process's relay runs (from the first connection on); its poll is too slow to matter."""
    with override_settings(REALTIME={**settings.REALTIME, "RELAY": "inprocess", "RELAY_POLL": 60}):
        yield
        await lifecycle.stop(relay_module.SERVICE)


# -- writing and relaying ----------------------------------------------------------------


async def test_rows_are_published_after_the_commit_in_order_per_channel_then_deleted(external, connect):
    comm = await connect()
    await subscribed(comm, "a", "/default/a")
    await subscribed(comm, "b", "/default/b")

    await awrite(
        ("/default/a", [{"n": 1}], "a1"),
        ("/default/b", [{"n": 1}], "b1"),
        ("/default/a", [{"n": 2}], "a2"),
        ("/default/a", [{"n": 3}], "a3"),
    )
    assert await apending() == [
        ("a1", "/default/a"),
        ("b1", "/default/b"),
        ("a2", "/default/a"),
        ("a3", "/default/a"),
    ]
    await assert_silent(comm)

    outcome = await relay.drain()

    assert (outcome.published, outcome.dropped, outcome.failed) == (4, 0, False)
    frames = await received(comm, 4)
    assert [frame for frame in frames if frame["id"] == "a"] == [
        event("a", {"n": 1, "identifier": "a1"}),
        event("a", {"n": 2, "identifier": "a2"}),
        event("a", {"n": 3, "identifier": "a3"}),
    ]
    assert [frame for frame in frames if frame["id"] == "b"] == [event("b", {"n": 1, "identifier": "b1"})]
    await assert_silent(comm)
    assert await apending() == []
    assert (await relay.drain()).published == 0


async def test_a_key_still_pending_is_written_once(external, connect):
    comm = await connect()
    await subscribed(comm, "s", "/default/room")

    await awrite(("/default/room", [{"try": 1}], "once"))
    await awrite(("/default/room", [{"try": 2}], "once"), ("/default/room", [{"try": 3}], "once"))

    assert await apending() == [("once", "/default/room")]
    assert (await relay.drain()).published == 1
    assert await received(comm, 1) == [event("s", {"try": 1, "identifier": "once"})]
    await assert_silent(comm)


async def test_a_rolled_back_transaction_publishes_nothing(external, connect):
    comm = await connect()
    await subscribed(comm, "s", "/default/room")

    await awrite(("/default/room", [{"n": 1}], "lost"), rollback=True)

    assert await apending() == []
    assert (await relay.drain()).published == 0
    await assert_silent(comm)


async def test_events_of_one_row_carry_their_own_identifiers(external, connect):
    comm = await connect()
    await subscribed(comm, "s", "/default/room")

    await awrite(("/default/room", [{"n": 1}, {"n": 2}], "pair"))
    await relay.drain()

    assert await received(comm, 2) == [
        event("s", {"n": 1, "identifier": "pair#0"}),
        event("s", {"n": 2, "identifier": "pair#1"}),
    ]


async def test_a_publish_refused_for_good_is_dropped_and_other_channels_go_on(external, connect, caplog):
    comm = await connect()
    await subscribed(comm, "s", "/default/room")

    await awrite(("/nowhere/room", [{"n": 1}], "orphan"), ("/default/room", [{"n": 2}], "kept"))
    outcome = await relay.drain()

    assert (outcome.published, outcome.dropped, outcome.failed) == (1, 1, False)
    assert await received(comm, 1) == [event("s", {"n": 2, "identifier": "kept"})]
    assert await apending() == []
    assert "relay: orphan to /nowhere/room refused for good, dropped" in caplog.text


async def test_a_backlog_larger_than_a_batch_goes_out_in_several_rounds_in_order(external, connect):
    comm = await connect()
    await subscribed(comm, "s", "/default/room")
    await awrite(*(("/default/room", [{"n": n}], f"k{n}") for n in range(7)))

    with override_settings(REALTIME={**settings.REALTIME, "RELAY": "external", "RELAY_BATCH": 3}):
        outcome = await relay.drain()

    assert outcome.published == 7
    assert await received(comm, 7) == [event("s", {"n": n, "identifier": f"k{n}"}) for n in range(7)]
    await assert_silent(comm)


@pytest.mark.parametrize(
    ("channel", "events", "key", "error"),
    [
        ("/default/*", [{"n": 1}], "k", InvalidChannel),
        ("/default/room", [], "k", NoEvents),
        ("/default/room", [{"n": n} for n in range(6)], "k", TooManyEvents),
        ("/default/room", ["text"], "k", TypeError),
        ("/default/room", [{"when": object()}], "k", TypeError),
        ("/default/room", [{"identifier": "mine"}], "k", ValueError),
        ("/default/room", [{"n": 1}], "", ValueError),
        ("/default/room", [{"n": 1}], "a#b", ValueError),
        ("/default/room", [{"n": 1}], "k" * 201, ValueError),
    ],
    ids=[
        "wildcard",
        "no-events",
        "six-events",
        "not-an-object",
        "not-json",
        "identifier",
        "empty-key",
        "hash",
        "long",
    ],
)
def test_what_could_not_be_published_is_refused_when_written(channel, events, key, error):
    with pytest.raises(error):
        realtime.publish_on_commit(channel, events, key=key)
    assert pending() == []


# -- the relay of a server process ---------------------------------------------------------


async def test_outside_a_transaction_the_events_are_published_at_once(in_process, connect):
    comm = await connect()
    await subscribed(comm, "s", "/default/room")

    await sync_to_async(realtime.publish_on_commit)("/default/room", [{"n": 1}], key="now")

    # The relay polls once a minute here: the commit itself woke it.
    assert await received(comm, 1) == [event("s", {"n": 1, "identifier": "now"})]
    await assert_silent(comm)
    assert await apending() == []


async def test_a_commit_wakes_the_relay_of_its_process(in_process, connect):
    comm = await connect()
    await subscribed(comm, "s", "/default/room")

    await awrite(("/default/room", [{"n": 1}], "first"), ("/default/room", [{"n": 2}], "second"))

    assert await received(comm, 2) == [
        event("s", {"n": 1, "identifier": "first"}),
        event("s", {"n": 2, "identifier": "second"}),
    ]
    await assert_silent(comm)


async def test_the_relay_survives_a_channel_layer_outage_and_delivers_each_row_once(
    in_process, layer: RecordingLayer, connect, monkeypatch
):
    monkeypatch.setattr(relay_module, "RETRY_DELAY", 0.02)
    attempts: list[str] = []
    retried = asyncio.Event()

    async def counted(channel: str, events: list[Any], *, identifiers: list[str]) -> Any:
        attempts.append(identifiers[0])
        if len(attempts) >= 3:
            retried.set()
        return await publish_from_server(channel, events, identifiers=identifiers)

    monkeypatch.setattr(relay_module, "publish_from_server", counted)
    comm = await connect()
    await subscribed(comm, "s", "/default/room")
    layer.down = True

    await awrite(("/default/room", [{"n": 1}], "survivor"))
    await asyncio.wait_for(retried.wait(), 5)

    # Refused by the layer three times: nobody got it, and the row is still there.
    await assert_silent(comm)
    assert await apending() == [("survivor", "/default/room")]
    layer.down = False
    assert await received(comm, 1, timeout=5) == [event("s", {"n": 1, "identifier": "survivor"})]
    await assert_silent(comm, 0.3)
    assert await apending() == []
    assert set(attempts) == {"survivor"}


# -- PostgreSQL: NOTIFY wakes relays of any process; relays share rows ----------------------


def _psycopg_connect() -> Any:
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    return psycopg.connect(**params, autocommit=True)


@postgresql_only
def test_the_writer_notifies_listeners_when_and_only_when_it_commits():
    with _psycopg_connect() as listener:
        listener.execute(f"LISTEN {relay_module.NOTIFY_CHANNEL}")
        with transaction.atomic():
            realtime.publish_on_commit("/default/room", [{"n": 1}], key="told")
            assert list(listener.notifies(timeout=0.3, stop_after=1)) == []
        assert [n.channel for n in listener.notifies(timeout=5, stop_after=1)] == ["realtime_relay"]

        write(("/default/room", [{"n": 2}], "untold"), rollback=True)
        assert list(listener.notifies(timeout=0.3, stop_after=1)) == []


@postgresql_only
async def test_a_notify_from_another_connection_wakes_the_relay(in_process, connect):
    comm = await connect()
    await subscribed(comm, "s", "/default/room")

    def listening() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query = %s",
                [f"LISTEN {relay_module.NOTIFY_CHANNEL}"],
            )
            return cursor.fetchone()[0] > 0

    async with asyncio.timeout(5):
        while not await sync_to_async(listening)():  # noqa: ASYNC110 - another connection's state
            await asyncio.sleep(0.02)

    def insert_elsewhere() -> None:
        # Another process's transaction: no commit hook of this process runs.
        with _psycopg_connect() as other, other.transaction():
            other.execute(
                f"INSERT INTO {PendingPublication._meta.db_table} (key, channel, events, created_at) "
                "VALUES (%s, %s, %s::jsonb, now())",
                ["elsewhere", "/default/room", json.dumps([{"n": 1, "identifier": "elsewhere"}])],
            )
            other.execute(f"NOTIFY {relay_module.NOTIFY_CHANNEL}")

    await sync_to_async(insert_elsewhere)()

    assert await received(comm, 1) == [event("s", {"n": 1, "identifier": "elsewhere"})]
    await assert_silent(comm)


@postgresql_only
async def test_two_relays_at_once_publish_each_row_once_and_keep_each_channels_order(external, connect):
    comm = await connect()
    await subscribed(comm, "s", "/default/*")
    rooms = ("a", "b", "c")
    await awrite(
        *((f"/default/{room}", [{"room": room, "n": n}], f"{room}{n}") for n in range(20) for room in rooms)
    )

    with override_settings(REALTIME={**settings.REALTIME, "RELAY": "external", "RELAY_BATCH": 4}):
        first, second = Relay(), Relay()
        rounds = 0
        while await apending():
            rounds += 1
            assert rounds < 100
            await asyncio.gather(first.drain(), second.drain())

    frames = await received(comm, 60)
    await assert_silent(comm)
    for room in rooms:
        assert [frame["event"] for frame in frames if frame["event"]["room"] == room] == [
            {"room": room, "n": n, "identifier": f"{room}{n}"} for n in range(20)
        ]


# -- whose rows: the writing process's, where the layer stays in it ----------------------


def written_by(key: str, origin: str, age: float = 0.0) -> None:
    """A row that ``origin`` wrote ``age`` seconds ago."""
    write(("/default/room", [{"n": 1}], key))
    PendingPublication.objects.filter(key=key).update(
        origin=origin, created_at=timezone.now() - timedelta(seconds=age)
    )


ELSEWHERE = "elsewhere:1:0"


@pytest.fixture
def process_local_layer() -> Iterator[None]:
    layers = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    adopt = {**settings.REALTIME, "RELAY": "external", "RELAY_ADOPT_AFTER": 10}
    with override_settings(CHANNEL_LAYERS=layers, REALTIME=adopt):
        yield


async def test_a_relay_takes_its_own_and_unnamed_rows_and_another_relays_once_they_waited(
    default_namespace, process_local_layer
):
    await sync_to_async(written_by)("fresh", ELSEWHERE, age=1)
    await sync_to_async(written_by)("stale", ELSEWHERE, age=11)
    await sync_to_async(written_by)("mine", relay_module.process_origin())
    await sync_to_async(written_by)("unnamed", "")

    outcome = await Relay().drain()

    # Only its writer's subscribers could receive "fresh": its writer's relay publishes it.
    assert (outcome.published, outcome.dropped, outcome.failed) == (3, 0, False)
    assert await apending() == [("fresh", "/default/room")]


async def test_rows_name_their_writer_while_its_relay_runs(in_process, connect):
    assert relay.origin == ""
    await connect()  # the first connection starts the process's services, the relay among them
    async with asyncio.timeout(2):
        while relay.origin == "":  # noqa: ASYNC110 - the relay task sets it as it starts
            await asyncio.sleep(0.01)
    assert relay.origin == relay_module.process_origin()


@pytest.mark.skipif(
    settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer",
    reason="a channel layer every process shares (the suite's Redis pass)",
)
async def test_with_a_shared_layer_any_relay_takes_any_row(default_namespace, external):
    await sync_to_async(written_by)("fresh", ELSEWHERE)

    outcome = await Relay().drain()

    assert (outcome.published, outcome.failed) == (1, False)
    assert await apending() == []


# -- the command ---------------------------------------------------------------------------


def test_the_command_refuses_to_run_beside_relaying_servers():
    with override_settings(REALTIME={**settings.REALTIME, "RELAY": "inprocess"}):
        with pytest.raises(CommandError, match="the server processes relay themselves"):
            call_command("realtime_relay", "--once")


def test_the_command_refuses_a_channel_layer_that_does_not_leave_the_process():
    layers = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(REALTIME={**settings.REALTIME, "RELAY": "external"}, CHANNEL_LAYERS=layers):
        with pytest.raises(CommandError, match="does not leave this process"):
            call_command("realtime_relay", "--once")
    assert pending() == []


@pytest.mark.skipif(
    settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer",
    reason="the command needs a channel layer every process shares (the suite's Redis pass)",
)
def test_the_command_once_publishes_what_is_pending_and_exits(default_namespace, capsys):
    write(("/default/room", [{"n": 1}], "one"), ("/default/room", [{"n": 2}], "two"))
    with override_settings(REALTIME={**settings.REALTIME, "RELAY": "external"}):
        call_command("realtime_relay", "--once")
    assert capsys.readouterr().out == "Published 2 publication(s), dropped 0.\n"
    assert pending() == []


def test_publish_on_commit_is_exported_beside_publish():
    assert {"publish", "apublish", "publish_on_commit", "publish_many_on_commit"} <= set(realtime.__all__)
