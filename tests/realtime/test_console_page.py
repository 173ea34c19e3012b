"""The staff console page: ``/realtime/console/`` (``realtime.transport.console.console``)."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

from realtime.models import Namespace

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT_TAG = '<script src="/static/realtime/realtime.js"></script>'


@pytest.fixture
def console_url() -> str:
    return reverse("realtime:console")


def _login(client: Client, *, is_staff: bool) -> None:
    user = get_user_model().objects.create_user(username="someone", password="pw", is_staff=is_staff)
    client.force_login(user)


def test_the_console_is_served_at_realtime_console(console_url):
    assert console_url == "/realtime/console/"


def test_an_anonymous_visitor_is_sent_to_the_admin_login(client, console_url):
    response = client.get(console_url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={console_url}"


def test_a_user_who_is_not_staff_is_sent_to_the_admin_login(client, console_url):
    _login(client, is_staff=False)

    response = client.get(console_url)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_staff_get_the_page_with_the_shipped_client(client, console_url):
    _login(client, is_staff=True)

    response = client.get(console_url)

    assert response.status_code == 200
    html = response.content.decode()
    assert SCRIPT_TAG in html
    assert finders.find("realtime/realtime.js") is not None
    assert finders.find("realtime/realtime.mjs") is not None


def test_the_page_gets_the_http_endpoint_as_json_data(client, console_url):
    _login(client, is_staff=True)

    html = client.get(console_url).content.decode()

    match = re.search(r'<script id="realtime-endpoint" type="application/json">(.*?)</script>', html)
    assert match is not None
    assert json.loads(match.group(1)) == "http://testserver/event"


def test_the_inline_script_reaches_the_browser_untouched_by_the_template_engine(client, console_url):
    _login(client, is_staff=True)

    html = client.get(console_url).content.decode()

    # {% verbatim %} keeps the script's ${...} and braces; no template tag is left behind.
    assert "new RealtimeClient({" in html
    assert "${channel}: ${describe(error)}" in html
    assert "{%" not in html
    assert "{{" not in html


def test_the_page_gets_the_namespace_names_for_its_unknown_namespace_hint(client, console_url):
    Namespace.objects.all().delete()
    for name in ("chat", "alerts"):
        Namespace.objects.create(name=name)
    _login(client, is_staff=True)

    html = client.get(console_url).content.decode()

    match = re.search(r'<script id="realtime-namespaces" type="application/json">(.*?)</script>', html)
    assert match is not None
    assert json.loads(match.group(1)) == {
        "names": ["alerts", "chat"],
        "admin_url": reverse("admin:realtime_namespace_changelist"),
    }
