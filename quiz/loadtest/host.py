"""The host, over HTTP like the host console: admin login, then the staff API with CSRF."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from .http import Connection, Response


class HostError(Exception):
    pass


class HostClient:
    """A staff session: cookies kept, ``X-CSRFToken`` sent on every unsafe request."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.connection = Connection(parts.hostname or "127.0.0.1", parts.port or 80, authority=parts.netloc)
        self.cookies: dict[str, str] = {}

    def _keep(self, response: Response) -> None:
        for raw in response.set_cookies:
            name, _, rest = raw.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0].strip()

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if "csrftoken" in self.cookies:
            headers["X-CSRFToken"] = self.cookies["csrftoken"]
        return headers

    async def request(self, method: str, path: str, body: bytes = b"", content_type: str = "") -> Response:
        headers = self._headers({"Content-Type": content_type} if content_type else None)
        response = await self.connection.request(method, path, headers=headers, body=body)
        self._keep(response)
        return response

    async def login(self, username: str, password: str) -> None:
        """``/admin/login/``: fetch the CSRF cookie, post the credentials, keep the session."""
        await self.request("GET", "/admin/login/")
        if "csrftoken" not in self.cookies:
            raise HostError("GET /admin/login/ set no csrftoken cookie")
        form = urlencode(
            {
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": self.cookies["csrftoken"],
                "next": "/admin/",
            }
        ).encode()
        response = await self.request(
            "POST", "/admin/login/", form, content_type="application/x-www-form-urlencoded"
        )
        if response.status != 302 or "sessionid" not in self.cookies:
            raise HostError(f"admin login as {username!r} failed (HTTP {response.status})")

    async def post_json(self, path: str, data: Any = None, *, expect: int = 200) -> Any:
        import json

        body = json.dumps(data if data is not None else {}).encode()
        response = await self.request("POST", path, body, content_type="application/json")
        if response.status != expect:
            raise HostError(f"POST {path} → HTTP {response.status}: {response.body[:300]!r}")
        return response.json()

    async def action(self, code: str, action: str) -> dict[str, Any]:
        """``start``, ``next``, ``reveal``, ``finish`` or ``open``."""
        return await self.post_json(f"/api/quiz/games/{code}/{action}")

    async def create_game(self, question_set_id: int, title: str) -> str:
        created = await self.post_json(
            "/api/quiz/games", {"question_set": question_set_id, "title": title}, expect=201
        )
        await self.action(created["code"], "open")
        return str(created["code"])

    async def import_questions(self, data: dict[str, Any]) -> int:
        return int((await self.post_json("/api/quiz/question-sets", data, expect=201))["id"])

    async def close(self) -> None:
        await self.connection.close()
