"""System checks for ``REALTIME`` settings (``realtime.E0xx`` / ``W0xx``)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import registry
from django.test import override_settings

from realtime.checks import check_channel_layer, check_settings


def ids(messages: list[Any]) -> list[str]:
    return [message.id for message in messages]


def settings_errors(**realtime: Any) -> list[str]:
    with override_settings(REALTIME=realtime):
        return ids(check_settings())


def test_the_checks_are_registered():
    checks = registry.registry.get_checks()

    assert check_settings in checks
    assert check_channel_layer in checks


def test_the_default_settings_raise_none_of_the_value_errors():
    assert {"realtime.E001", "realtime.E002", "realtime.E003", "realtime.E005", "realtime.E006"}.isdisjoint(
        settings_errors()
    )


def test_an_unknown_realtime_key_is_e001():
    with override_settings(REALTIME={"KEEPALIVE_INTERVALL": 30}):
        messages = check_settings()

    [error] = [message for message in messages if message.id == "realtime.E001"]
    assert "KEEPALIVE_INTERVALL" in error.msg
    assert "KEEPALIVE_INTERVAL" in error.hint


def test_known_keys_are_not_e001():
    assert "realtime.E001" not in settings_errors(KEEPALIVE_INTERVAL=30, MAX_EVENT_SIZE=1024)


@pytest.mark.parametrize(
    "setting", ["CONNECTION_AUTH_MODES", "DEFAULT_PUBLISH_AUTH_MODES", "DEFAULT_SUBSCRIBE_AUTH_MODES"]
)
def test_a_mode_without_an_authorizer_is_e003(setting):
    with override_settings(REALTIME={setting: ["API_KEY", "LAMBDA"]}):
        messages = check_settings()

    [error] = [message for message in messages if message.id == "realtime.E003"]
    assert setting in error.msg and "'LAMBDA'" in error.msg


def test_a_mode_given_its_own_authorizer_is_not_e003():
    errors = settings_errors(
        CONNECTION_AUTH_MODES=["LAMBDA"],
        AUTHORIZERS={"LAMBDA": "realtime.auth.api_key.ApiKeyAuthorizer"},
    )

    assert "realtime.E003" not in errors


def test_an_empty_mode_list_is_e002():
    assert "realtime.E002" in settings_errors(DEFAULT_PUBLISH_AUTH_MODES=[])


def test_an_authorizer_that_cannot_be_imported_is_e004():
    assert "realtime.E004" in settings_errors(AUTHORIZERS={"API_KEY": "realtime.nowhere.Authorizer"})


@pytest.mark.parametrize("interval", [0, -1, 60.5, 61])
def test_a_keepalive_interval_outside_0_to_60_seconds_is_e005(interval):
    assert "realtime.E005" in settings_errors(KEEPALIVE_INTERVAL=interval)


@pytest.mark.parametrize("interval", [0.05, 1, 60])
def test_a_keepalive_interval_within_0_to_60_seconds_is_fine(interval):
    assert "realtime.E005" not in settings_errors(KEEPALIVE_INTERVAL=interval)


@pytest.mark.parametrize(
    "setting",
    ["MAX_SUBSCRIPTIONS_PER_CONNECTION", "MAX_EVENTS_PER_PUBLISH", "MAX_EVENT_SIZE", "OUTBOUND_BUFFER_SIZE"],
)
def test_a_limit_below_one_is_e006(setting):
    assert "realtime.E006" in settings_errors(**{setting: 0})


@pytest.mark.parametrize(
    ("lease", "expected"), [(0, []), (0.05, []), (1, []), (-0.1, ["realtime.E027"]), (2, ["realtime.E027"])]
)
def test_an_inbound_event_lease_outside_0_to_1_second_is_e027(lease, expected):
    assert [id_ for id_ in settings_errors(INBOUND_EVENT_LEASE=lease) if id_ == "realtime.E027"] == expected


@pytest.mark.parametrize(
    ("threads", "expected"),
    [(0, []), (64, []), *((wrong, ["realtime.E028"]) for wrong in (-1, 2.5, "8", True, None))],
)
def test_idle_request_threads_other_than_a_whole_number_from_0_is_e028(threads, expected):
    errors = settings_errors(IDLE_REQUEST_THREADS=threads)
    assert [id_ for id_ in errors if id_ == "realtime.E028"] == expected


def test_no_channel_layer_is_w001():
    with override_settings(CHANNEL_LAYERS={}):
        assert ids(check_channel_layer()) == ["realtime.W001"]


def test_a_configured_channel_layer_is_fine():
    assert check_channel_layer() == []


# -- the relay (realtime.operations.relay) ------------------------------------------------------------

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
SHARED = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}


def relay_messages(channel_layers: dict[str, Any] | None = None, **realtime: Any) -> list[str]:
    from realtime.checks import check_relay

    with override_settings(REALTIME=realtime, CHANNEL_LAYERS=channel_layers or IN_MEMORY):
        return ids(check_relay())


def test_the_relay_check_is_registered():
    from realtime.checks import check_relay

    assert check_relay in registry.registry.get_checks()


@pytest.mark.parametrize(
    ("realtime", "layers"),
    [({}, IN_MEMORY), ({"RELAY": "inprocess"}, SHARED), ({"RELAY": "external", "RELAY_POLL": 0.05}, SHARED)],
)
def test_a_relay_in_the_server_or_beside_it_on_a_shared_layer_is_fine(realtime, layers):
    assert relay_messages(layers, **realtime) == []


def test_an_unknown_relay_mode_is_e008():
    assert relay_messages(RELAY="sidecar") == ["realtime.E008"]


@pytest.mark.parametrize(
    "setting", [{"RELAY_POLL": 0}, {"RELAY_POLL": -1}, {"RELAY_POLL": "soon"}, {"RELAY_BATCH": 0}]
)
def test_a_relay_poll_or_batch_that_is_not_positive_is_e009(setting):
    assert relay_messages(**setting) == ["realtime.E009"]


def test_an_external_relay_on_a_layer_that_stays_in_its_process_is_w003():
    assert relay_messages(IN_MEMORY, RELAY="external") == ["realtime.W003"]


@pytest.mark.parametrize(
    ("realtime", "expected"),
    [
        ({}, []),
        ({"FRONT_DOOR": {"MAX_IN_FLIGHT": 0}}, ["realtime.E010"]),
        ({"FRONT_DOOR": {"MAX_LOOP_LAG": "fast"}}, ["realtime.E010"]),
        ({"FRONT_DOOR": {"MAX_QUEUE": 1}}, ["realtime.E010"]),
        ({"FRONT_DOOR": {"MAX_DESCRIPTOR_SHARE": 1.5}}, ["realtime.E010"]),
        ({"FRONT_DOOR": {"MAX_DESCRIPTOR_SHARE": True}}, ["realtime.E010"]),
        ({"LIMITS_REDIS_TIMEOUT": -1}, ["realtime.E010"]),
        ({"FRONT_DOOR": {"TRUSTED_PROXIES": ["10.0.0.0/8", "proxy.local"]}}, ["realtime.E010"]),
        ({"FRONT_DOOR": {"TRUSTED_PROXY_HEADER": "X-Forwarded-For"}}, ["realtime.W004"]),
        (
            {"FRONT_DOOR": {"TRUSTED_PROXY_HEADER": "X-Forwarded-For", "TRUSTED_PROXIES": ["10.0.0.0/8"]}},
            [],
        ),
    ],
)
def test_the_front_door_settings_are_checked(realtime, expected):
    from realtime.checks import check_front_door

    with override_settings(REALTIME=realtime):
        assert ids(check_front_door()) == expected


@pytest.mark.parametrize("rate", ["2000/s burst 0", "fast", "20/s burst"])
def test_a_connect_rate_per_client_that_is_no_limit_is_e007(rate):
    assert "realtime.E007" in settings_errors(CONNECT_RATE_PER_CLIENT=rate)


def test_a_rate_with_a_burst_is_no_error():
    assert "realtime.E007" not in settings_errors(CONNECT_RATE="2000/s burst 400")


def history_messages(**realtime: Any) -> list[str]:
    from realtime.checks import check_history

    with override_settings(REALTIME=realtime):
        return ids(check_history())


def test_the_history_check_is_registered():
    from realtime.checks import check_history

    assert check_history in registry.registry.get_checks()


@pytest.mark.parametrize(
    "realtime",
    [
        {},
        {"HISTORY_REDIS_URL": "redis://127.0.0.1:6379/0", "HISTORY_RECOVER_LIMIT": 5},
        {"HISTORY_RESUME_WINDOW": 0.5},
    ],
)
def test_history_in_the_process_or_in_redis_is_fine(realtime):
    assert history_messages(**realtime) == []


@pytest.mark.parametrize(
    "setting",
    [{"HISTORY_RECOVER_LIMIT": 0}, {"HISTORY_RECOVER_LIMIT": "many"}, {"HISTORY_RESUME_WINDOW": -1}],
)
def test_a_recover_limit_or_resume_window_that_is_not_positive_is_e022(setting):
    assert history_messages(**setting) == ["realtime.E022"]


def test_a_history_url_that_is_not_redis_is_e023():
    assert history_messages(HISTORY_REDIS_URL="postgres://db/x") == ["realtime.E023"]
