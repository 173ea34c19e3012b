"""Models and their admin: API keys shown once and stored hashed, namespaces with auth modes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from realtime.models import ApiKey, Namespace
from realtime.store.services import apikey_create, hash_api_key

pytestmark = pytest.mark.django_db(transaction=True)

KEY_PATTERN = re.compile(r"rt-[A-Za-z0-9_-]{32}")
APIKEY_ADD = "/admin/realtime/apikey/add/"
NAMESPACE_ADD = "/admin/realtime/namespace/add/"


def namespace_form(**overrides: object) -> dict[str, object]:
    form: dict[str, object] = {
        "name": "chat",
        "description": "",
        "publish_auth_modes": [],
        "subscribe_auth_modes": [],
        "publish_handler": "",
        "subscribe_handler": "",
        "presence_max_members": 100,
        "history_size": 0,
        "history_ttl": 300,
    }
    form.update(overrides)
    return form


def publish_status(key: str) -> int:
    response = Client().post(
        "/event",
        data=json.dumps({"channel": "/default/room", "events": ["1"]}),
        content_type="application/json",
        headers={"x-api-key": key},
    )
    return response.status_code


# -- ApiKey ---------------------------------------------------------------------------------


def test_the_apikey_add_view_shows_the_key_once_and_stores_only_its_hash(admin_client, default_namespace):
    response = admin_client.post(
        APIKEY_ADD, {"description": "from admin", "expires_at_0": "", "expires_at_1": ""}, follow=True
    )

    assert response.status_code == 200
    texts = [str(message) for message in response.context["messages"]]
    shown = [key for text in texts for key in KEY_PATTERN.findall(text)]
    assert len(shown) == 1
    [key] = shown
    api_key = ApiKey.objects.get()
    assert (api_key.key_hash, api_key.prefix, api_key.description) == (
        hash_api_key(key),
        key[:11],
        "from admin",
    )
    stored = [str(value) for value in ApiKey.objects.values().get().values()]
    assert not any(key in value for value in stored)
    assert publish_status(key) == 200


def test_the_key_is_not_shown_again_on_later_pages(admin_client):
    response = admin_client.post(
        APIKEY_ADD, {"description": "", "expires_at_0": "", "expires_at_1": ""}, follow=True
    )
    [key] = KEY_PATTERN.findall(" ".join(str(message) for message in response.context["messages"]))
    api_key = ApiKey.objects.get()

    for url in ("/admin/realtime/apikey/", f"/admin/realtime/apikey/{api_key.pk}/change/"):
        page = admin_client.get(url)
        assert page.status_code == 200
        assert key not in page.content.decode()
        assert not list(get_messages(page.wsgi_request))


def test_the_apikey_add_view_keeps_an_expiry(admin_client):
    admin_client.post(
        APIKEY_ADD, {"description": "", "expires_at_0": "2099-01-02", "expires_at_1": "03:04:05"}
    )

    assert ApiKey.objects.get().expires_at == datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_the_apikey_change_view_edits_the_description_and_keeps_the_hash(admin_client):
    api_key, _ = apikey_create(description="old")

    response = admin_client.post(
        f"/admin/realtime/apikey/{api_key.pk}/change/",
        {"description": "new", "expires_at_0": "", "expires_at_1": ""},
    )

    assert response.status_code == 302
    changed = ApiKey.objects.get()
    assert (changed.description, changed.key_hash, changed.prefix) == (
        "new",
        api_key.key_hash,
        api_key.prefix,
    )


def test_the_revoke_action_revokes_live_keys(admin_client, default_namespace):
    api_key, key = apikey_create()

    admin_client.post(
        "/admin/realtime/apikey/", {"action": "revoke", "_selected_action": [api_key.pk]}, follow=True
    )

    assert ApiKey.objects.get().revoked_at is not None
    assert publish_status(key) == 401


def test_an_apikey_is_usable_until_it_expires_or_is_revoked():
    now = timezone.now()
    api_key = ApiKey(expires_at=now + timedelta(seconds=1))

    assert api_key.is_usable(now)
    assert not api_key.is_usable(now + timedelta(seconds=1))
    assert ApiKey().is_usable(now)
    assert not ApiKey(revoked_at=now).is_usable(now)


# -- Namespace ------------------------------------------------------------------------------


def test_the_namespace_admin_form_saves_auth_modes(admin_client):
    response = admin_client.post(
        NAMESPACE_ADD,
        namespace_form(name="chat", publish_auth_modes=["API_KEY", "USER"], subscribe_auth_modes=["OIDC"]),
    )

    assert response.status_code == 302
    namespace = Namespace.objects.get(name="chat")
    assert (namespace.publish_auth_modes, namespace.subscribe_auth_modes) == (["API_KEY", "USER"], ["OIDC"])


def test_the_namespace_admin_form_saves_history_settings(admin_client):
    response = admin_client.post(NAMESPACE_ADD, namespace_form(name="chat", history_size=300, history_ttl=60))

    assert response.status_code == 302
    namespace = Namespace.objects.get(name="chat")
    assert (namespace.history_size, namespace.history_ttl) == (300, 60)


def test_no_checked_modes_are_saved_as_empty_lists_meaning_the_defaults(admin_client):
    admin_client.post(NAMESPACE_ADD, namespace_form(name="plain"))

    namespace = Namespace.objects.get(name="plain")
    assert (namespace.publish_auth_modes, namespace.subscribe_auth_modes) == ([], [])
    changelist = admin_client.get("/admin/realtime/namespace/").content.decode()
    assert "(defaults)" in changelist


def test_the_namespace_change_form_shows_and_changes_saved_modes(admin_client):
    namespace = Namespace.objects.create(name="chat", publish_auth_modes=["IAM"])
    url = f"/admin/realtime/namespace/{namespace.pk}/change/"

    page = admin_client.get(url)
    assert page.context["adminform"].form["publish_auth_modes"].value() == ["IAM"]
    admin_client.post(
        url, namespace_form(name="chat", publish_auth_modes=["API_KEY"], subscribe_auth_modes=["IAM"])
    )

    namespace.refresh_from_db()
    assert (namespace.publish_auth_modes, namespace.subscribe_auth_modes) == (["API_KEY"], ["IAM"])


def test_the_namespace_admin_refuses_an_unknown_mode(admin_client):
    response = admin_client.post(NAMESPACE_ADD, namespace_form(publish_auth_modes=["LAMBDA"]))

    assert response.status_code == 200
    assert "publish_auth_modes" in response.context["adminform"].form.errors
    assert not Namespace.objects.filter(name="chat").exists()


@pytest.mark.parametrize("name", ["has space", "a/b", "-chat", "chat-", "under_score", "x" * 51])
def test_the_namespace_admin_refuses_an_invalid_name(admin_client, name):
    response = admin_client.post(NAMESPACE_ADD, namespace_form(name=name))

    assert response.status_code == 200
    assert "name" in response.context["adminform"].form.errors
    assert not Namespace.objects.filter(name=name).exists()


@pytest.mark.parametrize("name", ["a", "Chat-2", "a" * 50])
def test_valid_namespace_names_pass_model_validation(name):
    Namespace(name=name).full_clean()


@pytest.mark.parametrize("modes", [["LAMBDA"], "API_KEY", [1]])
def test_model_validation_refuses_bad_auth_mode_lists(modes):
    with pytest.raises(ValidationError) as caught:
        Namespace(name="chat", publish_auth_modes=modes).full_clean()

    assert "publish_auth_modes" in caught.value.message_dict
