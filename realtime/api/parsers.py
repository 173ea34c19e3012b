"""A JSON parser whose every failure is a 400, including nesting deep enough to exhaust recursion."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class SafeJSONParser(JSONParser):
    """DRF's JSONParser turns ``ValueError`` into a 400 but lets ``RecursionError``
    (``[[[[...]]]]`` a hundred thousand deep) escape as a 500."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
