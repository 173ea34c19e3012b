"""The site's OpenAPI document, and a check that a real response is one it describes.

The document is generated from the operations written beside the views
(``realtime.transport.schema``); these checks keep the two from drifting apart.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from openapi_schema_validator import OAS31Validator, oas31_format_checker

from realtime.transport.schema import SchemaGenerator


@functools.cache
def document() -> dict[str, Any]:
    """The document as ``/api/schema/`` serves it, as plain JSON values."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(json.dumps(schema))


def assert_documented(response: Any, method: str, path: str) -> None:
    """``response`` is one the document describes for ``method`` on ``path`` (a template).

    Its status is listed, every header the document gives that status is sent,
    and its JSON body is valid against the status's schema.
    """
    doc = document()
    operation = doc["paths"][path][method.lower()]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method} {path}: {status} is not documented"
    described = operation["responses"][status]
    missing = [name for name in described.get("headers", {}) if not response.has_header(name)]
    assert not missing, f"{method} {path} {status}: documented headers not sent: {missing}"
    schema = described["content"]["application/json"]["schema"]
    # The components sit beside the schema, so its "#/components/..." references resolve.
    OAS31Validator({**schema, "components": doc["components"]}, format_checker=oas31_format_checker).validate(
        response.json()
    )
