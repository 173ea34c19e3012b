"""``/api/schema/``: the OpenAPI 3.1 document of ``POST /event`` and the quiz API.

Whether real responses match it is checked beside each API's tests
(``tests/realtime/test_openapi.py``, ``tests/quiz/test_openapi.py``).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from realtime.transport.schema import SchemaGenerator
from tests.openapi import document

pytestmark = pytest.mark.django_db

OPERATIONS = {
    "/event": ["post"],
    "/event/presence": ["get"],
    "/event/history": ["get"],
    "/api/quiz/question-sets": ["post"],
    "/api/quiz/games": ["post"],
    "/api/quiz/games/{code}": ["get"],
    "/api/quiz/games/{code}/join": ["post"],
    "/api/quiz/games/{code}/rejoin": ["post"],
    "/api/quiz/games/{code}/answers": ["post"],
    "/api/quiz/games/{code}/leaderboard": ["get"],
    "/api/quiz/games/{code}/me": ["get"],
    "/api/quiz/games/{code}/players/{player_id}/remove": ["post"],
    "/api/quiz/games/{code}/play-again": ["post"],
    "/api/quiz/games/{code}/{action}": ["post"],
    "/quiz/{code}/host/game.json": ["get"],
}


def ref(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def header(kind: str, description: str) -> dict[str, Any]:
    return {"schema": {"type": kind}, "description": description}


RETRY_AFTER = header("integer", "Seconds to wait before retrying.")
ERROR_TYPE = header("string", "The error's `errorType` again (Amplify reads it here).")


def without_description(response: dict[str, Any]) -> dict[str, Any]:
    assert response["description"], "every response is described"
    return {key: value for key, value in response.items() if key != "description"}


def test_the_document_is_served_as_json_and_is_valid_openapi_3_1() -> None:
    response = Client().get("/api/schema/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.oai.openapi+json"
    served = response.json()
    assert served == document()
    assert served["openapi"] == "3.1.0"
    validate(served, cls=OpenAPIV31SpecValidator)


def test_generating_it_warns_about_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    SchemaGenerator().get_schema(request=None, public=True)

    assert capsys.readouterr() == ("", "")


def test_it_lists_post_event_and_every_quiz_api_route() -> None:
    assert {path: sorted(item) for path, item in document()["paths"].items()} == OPERATIONS


def test_post_event_documents_its_bodies_and_every_error_with_its_headers() -> None:
    operation = document()["paths"]["/event"]["post"]

    assert operation["requestBody"] == {"content": ref("PublishRequest"), "required": True}
    assert operation["security"] == [{"apiKey": []}, {"authorization": []}, {"session": []}]
    responses = {status: without_description(response) for status, response in operation["responses"].items()}
    assert responses.pop("200") == {"content": ref("PublishResponse")}
    for status in ("429", "503"):
        assert responses.pop(status) == {
            "content": ref("AppSyncErrors"),
            "headers": {"x-amzn-ErrorType": ERROR_TYPE, "Retry-After": RETRY_AFTER},
        }
    assert responses == {
        status: {"content": ref("AppSyncErrors"), "headers": {"x-amzn-ErrorType": ERROR_TYPE}}
        for status in ("400", "401", "403", "405", "413", "415", "500", "504")
    }


def test_get_event_history_documents_its_page_and_parameters() -> None:
    operation = document()["paths"]["/event/history"]["get"]

    assert operation["security"] == [{"apiKey": []}, {"authorization": []}, {"session": []}]
    assert without_description(operation["responses"]["200"]) == {"content": ref("HistoryPage")}
    errors = [r for status, r in operation["responses"].items() if int(status) >= 400]
    assert errors and all(response["content"] == ref("AppSyncErrors") for response in errors)
    assert [(p["name"], p.get("required", False)) for p in operation["parameters"] if p["in"] == "query"] == [
        ("channel", True),
        ("epoch", False),
        ("limit", False),
        ("since", False),
    ]


def test_the_join_documents_201_and_its_errors_with_retry_after_on_429_and_503() -> None:
    operation = document()["paths"]["/api/quiz/games/{code}/join"]["post"]

    assert operation["requestBody"] == {"content": ref("JoinRequest"), "required": True}
    assert "security" not in operation
    responses = {status: without_description(response) for status, response in operation["responses"].items()}
    assert responses == {
        "201": {"content": ref("Joined")},
        **{
            status: {"content": ref("QuizError")}
            for status in ("400", "404", "405", "409", "413", "415", "422")
        },
        "429": {"content": ref("QuizError"), "headers": {"Retry-After": RETRY_AFTER}},
        "503": {"content": ref("QuizError"), "headers": {"Retry-After": RETRY_AFTER}},
    }
    (key,) = [parameter for parameter in operation["parameters"] if parameter["name"] == "Idempotency-Key"]
    assert (key["in"], key.get("required", False), key["schema"]) == ("header", False, {"type": "string"})


def test_an_answer_documents_202_and_401_with_the_player_token() -> None:
    operation = document()["paths"]["/api/quiz/games/{code}/answers"]["post"]

    assert operation["security"] == [{"playerToken": []}]
    responses = {status: without_description(response) for status, response in operation["responses"].items()}
    assert responses == {
        "202": {"content": ref("AnswerAccepted")},
        **{status: {"content": ref("QuizError")} for status in ("400", "401", "405", "409", "413", "415")},
        "503": {"content": ref("QuizError"), "headers": {"Retry-After": RETRY_AFTER}},
    }


def test_every_error_of_the_quiz_api_has_the_apis_error_shape() -> None:
    for path, item in document()["paths"].items():
        if path.startswith("/event"):  # realtime's endpoints answer in AppSync's shape
            continue
        for operation in item.values():
            errors = {status: r for status, r in operation["responses"].items() if int(status) >= 400}
            assert errors, path
            assert all(response["content"] == ref("QuizError") for response in errors.values()), path


def test_the_host_actions_are_an_enum_of_the_transitions() -> None:
    parameters = document()["paths"]["/api/quiz/games/{code}/{action}"]["post"]["parameters"]

    assert parameters == [
        {
            "in": "path",
            "name": "action",
            "schema": {"type": "string", "enum": ["finish", "next", "open", "reveal", "start"]},
            "required": True,
        },
        {
            "in": "path",
            "name": "code",
            "schema": {"type": "string"},
            "description": "The game's join code.",
            "required": True,
        },
    ]


def test_the_security_schemes_are_those_the_views_accept() -> None:
    assert document()["components"]["securitySchemes"] == {
        "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "API_KEY mode."},
        "authorization": {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "OIDC (a JWT), CUSTOM (the authorizer's token) or IAM (SigV4, with `x-amz-date`).",
        },
        "playerToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "The token the player's join returned (or send it in `X-Player-Token`).",
        },
        "session": {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": "A Django session; unsafe methods also need the CSRF token in `X-CSRFToken`.",
        },
    }
