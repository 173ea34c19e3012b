"""``realtime_apikey`` and ``realtime_namespace`` management commands."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from realtime.models import ApiKey, Namespace
from realtime.store.services import hash_api_key

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> tuple[str, str]:
    """Run a management command; returns (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def create_key(*args: str) -> str:
    stdout, _ = run("realtime_apikey", "create", *args)
    return stdout.splitlines()[-1]


def publish_status(key: str) -> int:
    response = Client().post(
        "/event",
        data=json.dumps({"channel": "/default/room", "events": ["1"]}),
        content_type="application/json",
        headers={"x-api-key": key},
    )
    return response.status_code


# -- realtime_apikey -----------------------------------------------------------------------


def test_apikey_create_prints_the_key_alone_on_the_last_line(default_namespace):
    stdout, stderr = run("realtime_apikey", "create", "--description", "ci")

    key = stdout.splitlines()[-1]
    assert key.startswith("rt-") and key == key.strip() and " " not in key
    api_key = ApiKey.objects.get()
    assert api_key.key_hash == hash_api_key(key)
    assert (api_key.prefix, api_key.description, api_key.expires_at) == (key[:11], "ci", None)
    assert key not in stderr
    assert api_key.prefix in stderr


def test_a_created_key_authenticates(default_namespace):
    key = create_key()

    assert publish_status(key) == 200


def test_apikey_create_expires_in_sets_the_expiry(default_namespace):
    before = timezone.now()

    create_key("--expires-in", "7")

    expires_at = ApiKey.objects.get().expires_at
    assert before + timedelta(days=7) <= expires_at <= timezone.now() + timedelta(days=7)


def test_apikey_create_accepts_fractions_of_a_day(default_namespace):
    key = create_key("--expires-in", "0.5")

    expires_at = ApiKey.objects.get().expires_at
    assert timedelta(hours=11) < expires_at - timezone.now() <= timedelta(hours=12)
    assert publish_status(key) == 200


@pytest.mark.parametrize("days", ["0", "-1"])
def test_apikey_create_refuses_an_expiry_that_is_not_positive(days):
    with pytest.raises(CommandError, match="--expires-in must be a positive number of days"):
        run("realtime_apikey", "create", "--expires-in", days)
    assert not ApiKey.objects.exists()


def test_apikey_list_shows_each_prefix_and_state(default_namespace):
    active = create_key("--description", "live one")
    revoked = create_key()
    expired = create_key("--expires-in", "1")
    run("realtime_apikey", "revoke", revoked[:11])
    ApiKey.objects.filter(prefix=expired[:11]).update(expires_at=timezone.now() - timedelta(minutes=1))

    stdout, _ = run("realtime_apikey", "list")

    rows = {line.split("\t")[0]: line.split("\t") for line in stdout.splitlines()}
    assert set(rows) == {active[:11], revoked[:11], expired[:11]}
    assert rows[active[:11]][1:] == ["active", "expires never", "live one"]
    assert rows[revoked[:11]][1].startswith("revoked ")
    assert rows[expired[:11]][1] == "expired"
    for key in (active, revoked, expired):
        assert key not in stdout


def test_a_revoked_key_is_refused(default_namespace):
    key = create_key()
    assert publish_status(key) == 200

    stdout, _ = run("realtime_apikey", "revoke", key[:11])

    assert stdout.strip() == "Revoked 1 API key(s)."
    assert publish_status(key) == 401


def test_revoking_an_unknown_prefix_is_a_command_error():
    with pytest.raises(CommandError, match="No active API key has the prefix 'rt-nothing'"):
        run("realtime_apikey", "revoke", "rt-nothing")


def test_revoking_twice_is_a_command_error_the_second_time(default_namespace):
    key = create_key()
    run("realtime_apikey", "revoke", key[:11])

    with pytest.raises(CommandError):
        run("realtime_apikey", "revoke", key[:11])


# -- realtime_namespace --------------------------------------------------------------------------


def test_namespace_create_stores_name_description_and_auth_modes():
    stdout, _ = run(
        "realtime_namespace",
        "create",
        "chat-2",
        "--description",
        "Chat rooms",
        "--publish-auth",
        "api_key, user",
        "--subscribe-auth",
        "OIDC",
    )

    assert stdout.strip() == "Created namespace chat-2"
    namespace = Namespace.objects.get(name="chat-2")
    assert (namespace.description, namespace.publish_auth_modes, namespace.subscribe_auth_modes) == (
        "Chat rooms",
        ["API_KEY", "USER"],
        ["OIDC"],
    )


def test_a_namespace_created_from_the_shell_takes_publishes(default_namespace):
    key = create_key()
    run("realtime_namespace", "create", "fresh")

    response = Client().post(
        "/event",
        data=json.dumps({"channel": "/fresh/room", "events": ["1"]}),
        content_type="application/json",
        headers={"x-api-key": key},
    )

    assert response.status_code == 200


def test_namespace_list_shows_modes_or_defaults(default_namespace):
    run("realtime_namespace", "create", "locked", "--publish-auth", "IAM", "--description", "d")

    stdout, _ = run("realtime_namespace", "list")

    lines = stdout.splitlines()
    assert "default\tpublish=(defaults)\tsubscribe=(defaults)\t" + default_namespace.description in lines
    assert "locked\tpublish=IAM\tsubscribe=(defaults)\td" in lines
    assert lines == sorted(lines, key=lambda line: line.split("\t")[0])


def test_namespace_create_with_history_keeps_and_lists_it(default_namespace):
    run("realtime_namespace", "create", "chat", "--history-size", "300", "--history-ttl", "60")

    stdout, _ = run("realtime_namespace", "list")

    namespace = Namespace.objects.get(name="chat")
    assert (namespace.history_size, namespace.history_ttl) == (300, 60)
    assert "chat\tpublish=(defaults)\tsubscribe=(defaults)\thistory=300/60s\t" in stdout.splitlines()


def test_namespace_delete_removes_it(default_namespace):
    stdout, _ = run("realtime_namespace", "delete", "default")

    assert stdout.strip() == "Deleted namespace default"
    assert not Namespace.objects.filter(name="default").exists()


def test_deleting_an_unknown_namespace_is_a_command_error():
    with pytest.raises(CommandError, match="No namespace is called 'nowhere'"):
        run("realtime_namespace", "delete", "nowhere")


@pytest.mark.parametrize("name", ["-bad", "bad-", "has space", "under_score", "a/b", "*", "é"])
def test_namespace_create_refuses_an_invalid_name(name):
    with pytest.raises(CommandError, match="letters, digits and hyphens"):
        run("realtime_namespace", "create", "--", name)
    assert not Namespace.objects.filter(name=name).exists()


def test_namespace_create_refuses_a_name_over_50_characters():
    with pytest.raises(CommandError, match="at most 50 characters"):
        run("realtime_namespace", "create", "x" * 51)
    assert not Namespace.objects.filter(name="x" * 51).exists()


def test_namespace_create_accepts_a_name_of_50_characters():
    run("realtime_namespace", "create", "a" + "-" * 48 + "z")

    assert Namespace.objects.filter(name="a" + "-" * 48 + "z").exists()


def test_namespace_create_refuses_a_taken_name(default_namespace):
    with pytest.raises(CommandError, match="already exists"):
        run("realtime_namespace", "create", "default")


def test_namespace_create_refuses_an_unknown_auth_mode():
    with pytest.raises(CommandError, match="unknown auth mode\\(s\\): LAMBDA"):
        run("realtime_namespace", "create", "chat", "--publish-auth", "API_KEY,LAMBDA")
    assert not Namespace.objects.filter(name="chat").exists()
