"""The pages in a real browser: headless Chromium driven by Playwright against a real daphne.

- The game show: a host logs in through the admin and drives the game from the host console
  (start, reveal, next, finish); two players join from the player page and answer; the big
  screen shows them in the lobby, the question, the reveal and the podium; each player sees
  the verdict, their score and rank after the reveal, and their place at the end.
- The realtime console: enter the API key, subscribe to ``/default/*``, publish over WebSocket
  and HTTP, and see the events (and one from another client) in the log.

The server runs with production settings (``DEBUG=0``, so WhiteNoise serves only ``STATIC_ROOT``)
and the static files collected into a temporary ``STATIC_ROOT``. Each step leaves a PNG in
``artifacts/browser/<test>/`` at the repository root (printed; run with ``-s`` to see it).

Needs the ``playwright`` package and Debian's ``chromium`` (``/usr/bin/chromium``, or the
``CHROMIUM`` environment variable); skips without them. Playwright never downloads a browser.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, DaphneFactory, DaphneServer, _python

pytestmark = pytest.mark.e2e

async_api = pytest.importorskip(
    "playwright.async_api", reason="the playwright package is not installed (see requirements.txt)"
)
Browser = async_api.Browser
BrowserContext = async_api.BrowserContext
Page = async_api.Page
expect = async_api.expect

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO_ROOT / "artifacts" / "browser"
# Every wait is bounded: a live update that takes longer than this is a failure.
WAIT_MS = 10_000
MANAGE_TIMEOUT = 60

expect.set_options(timeout=WAIT_MS)


# -- the server ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def static_root(e2e_workdir: Path, e2e_env: dict[str, str]) -> Path:
    """The static files, collected once, as a production deployment would."""
    root = e2e_workdir / "browser-static"
    _run_manage({**e2e_env, "STATIC_ROOT": str(root)}, "collectstatic", "--noinput", "-v", "0")
    return root


@pytest.fixture
def server(daphne_factory: DaphneFactory, static_root: Path) -> DaphneServer:
    (started,) = daphne_factory("browser", STATIC_ROOT=str(static_root))
    return started


@dataclass
class Demo:
    code: str
    username: str
    password: str
    api_key: str


@pytest.fixture
def demo(server: DaphneServer, e2e_env: dict[str, str]) -> Demo:
    """``manage.py quiz_demo``: a game open for joining, the host's login and an API key."""
    result = _run_manage(e2e_env, "quiz_demo", "--base-url", server.http_url)
    login = re.search(r"Host login:\s+(\S+) / (\S+)", result.stderr)
    key = re.search(r"API key:\s+(\S+)", result.stderr)
    assert login and key, f"quiz_demo printed no login or key:\n{result.stderr}"
    return Demo(
        code=result.stdout.strip().splitlines()[-1],
        username=login[1],
        password=login[2],
        api_key=key[1],
    )


def _run_manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [_python(), "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=MANAGE_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"manage.py {' '.join(args)} exited with {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}",
            pytrace=False,
        )
    return result


# -- the browser -----------------------------------------------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).is_file() and shutil.which(CHROMIUM) is None:
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    async with async_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


class Screenshots:
    """Numbered PNGs of each step, in ``artifacts/browser/<test>/``."""

    def __init__(self, directory: Path) -> None:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        self.directory = directory
        self.count = 0

    async def __call__(self, page: Page, name: str) -> None:
        self.count += 1
        # Transitions and animations jump to their end: the picture shows the settled page.
        path = self.directory / f"{self.count:02d}-{name}.png"
        await page.screenshot(path=path, full_page=True, animations="disabled")


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Screenshots:
    shots = Screenshots(ARTIFACTS / request.node.name)
    print(f"\nscreenshots: {shots.directory}")
    return shots


class Pages:
    """Opens pages in fresh browser contexts; collects uncaught JavaScript errors and failed requests."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self.browser = browser
        self.base_url = base_url
        self.contexts: list[BrowserContext] = []
        self.errors: list[str] = []

    async def context(self, width: int, height: int) -> BrowserContext:
        context = await self.browser.new_context(
            base_url=self.base_url, viewport={"width": width, "height": height}, locale="en-US"
        )
        context.set_default_timeout(WAIT_MS)
        self.contexts.append(context)
        return context

    async def open(self, context: BrowserContext, path: str) -> Page:
        page = await context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        page.on("response", self._check_response)
        await page.goto(path)
        return page

    def _check_response(self, response: async_api.Response) -> None:
        # A missing static file (collectstatic, WhiteNoise) or a refused API call.
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            self.errors.append(f"HTTP {response.status} for {response.request.method} {response.url}")

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


@pytest.fixture
async def pages(browser: Browser, server: DaphneServer) -> AsyncIterator[Pages]:
    pages = Pages(browser, server.http_url)
    try:
        yield pages
    finally:
        await pages.close()
    assert not pages.errors, "errors in the pages:\n" + "\n".join(pages.errors)


async def log_in(pages: Pages, demo: Demo, next_path: str) -> Page:
    """A staff context: sign in through the admin's login form, land on ``next_path``."""
    page = await pages.open(await pages.context(1280, 900), f"/admin/login/?next={next_path}")
    await page.fill("#id_username", demo.username)
    await page.fill("#id_password", demo.password)
    await page.click("input[type=submit]")
    await page.wait_for_url(f"**{next_path}")
    return page


# -- the game show ---------------------------------------------------------------------------

SCORE = re.compile(r"^(1,000|[5-9]\d\d)$")  # a right answer earns 500 to 1,000 points


async def join(pages: Pages, demo: Demo, nickname: str) -> Page:
    page = await pages.open(await pages.context(390, 844), f"/quiz/{demo.code}/")
    await page.fill("#nickname", nickname)
    await page.click("#join-button")
    await expect(page.locator("#view-game")).to_be_visible()
    await expect(page.locator("#me-name")).to_have_text(nickname)
    await expect(page.locator("#conn")).to_have_text("live")
    await expect(page.locator("#stage")).to_have_attribute("data-phase", "lobby")
    return page


async def test_game_show(pages: Pages, demo: Demo, shots: Screenshots) -> None:
    code = demo.code
    host = await log_in(pages, demo, f"/quiz/{code}/host/")
    await expect(host.locator("#conn")).to_have_text("live")
    await expect(host.locator("#state")).to_have_text("Lobby")
    await expect(host.locator("#q-number")).to_have_text("5 questions ready")
    await shots(host, "host-lobby")

    screen = await pages.open(host.context, f"/quiz/{code}/screen/")
    await screen.set_viewport_size({"width": 1600, "height": 900})
    await expect(screen.locator("#conn")).to_have_text("live")
    await expect(screen.locator("#view-lobby")).to_be_visible()
    await expect(screen.locator("#lobby-players")).to_have_text("0")
    await shots(screen, "screen-empty-lobby")

    # Two players join; the host and the big screen see them arrive.
    ada = await join(pages, demo, "Ada")
    grace = await join(pages, demo, "Grace")
    await shots(ada, "player-ada-lobby")
    await expect(screen.locator("#lobby-players")).to_have_text("2")
    await expect(screen.locator("#lobby-names span")).to_have_text(["Ada", "Grace"], use_inner_text=True)
    await expect(host.locator("#players")).to_have_text("2")
    await shots(screen, "screen-lobby-with-players")

    # Start: the first question reaches every page.
    question = "Which protocol keeps one connection open for messages both ways?"
    await host.click("[data-action=start]")
    await expect(host.locator("#state")).to_have_text("Question open")
    for player in (ada, grace):
        await expect(player.locator("#stage")).to_have_attribute("data-phase", "question")
        await expect(player.locator("#q-text")).to_have_text(question)
        await expect(player.locator("#q-number")).to_have_text("Question 1 of 5")
        await expect(player.locator("#choices button")).to_have_count(4)
    await expect(screen.locator("#view-question")).to_be_visible()
    await expect(screen.locator("#q-text")).to_have_text(question)
    await shots(ada, "player-ada-question-1")
    await shots(screen, "screen-question-1")

    # Ada answers right, Grace wrong. The host's live count follows the leaderboard broadcasts,
    # which go out when the standings change (Ada's points), not for every answer (Grace's zero):
    # the full count is checked at the reveal.
    await ada.get_by_role("button", name="WebSocket").click()
    await expect(ada.locator("#answer-status")).to_have_text("Answer locked in")
    await expect(ada.locator("#choices button.chosen")).to_contain_text("WebSocket")
    await expect(host.locator("#answered")).to_have_text(re.compile(r"^[12]$"))
    await grace.get_by_role("button", name="FTP").click()
    await expect(grace.locator("#answer-status")).to_have_text("Answer locked in")
    await shots(ada, "player-ada-answered")
    await shots(host, "host-question-1-answered")

    # Reveal: verdicts, scores and ranks; the screen shows the counts and the leaderboard.
    await host.click("[data-action=reveal]")
    await expect(host.locator("#state")).to_have_text("Answer revealed")
    await expect(ada.locator("#stage")).to_have_attribute("data-phase", "reveal")
    await expect(ada.locator("#result")).to_contain_text("Right!")
    await expect(ada.locator("#me-score")).to_have_text(SCORE)
    await expect(ada.locator("#me-rank")).to_have_text("1st")
    await expect(ada.locator("#me-of")).to_have_text("of 2")
    await expect(ada.locator("#choices button.correct")).to_contain_text("WebSocket")
    await expect(grace.locator("#result")).to_contain_text("Wrong")
    await expect(grace.locator("#result")).to_contain_text("The answer was WebSocket.")
    await expect(grace.locator("#me-score")).to_have_text("0")
    await expect(grace.locator("#me-rank")).to_have_text("2nd")
    ada_score = await ada.locator("#me-score").inner_text()
    # The verdict's points come with Ada's own score event (the leaderboard may be first).
    await expect(ada.locator("#result-points")).to_have_text(f"+{ada_score} points")
    await expect(screen.locator("#tiles .tile.correct")).to_contain_text("WebSocket")
    await expect(screen.locator("#tiles .tile .count")).to_have_text(["0", "1", "1", "0"])
    board = screen.locator("#board-top li")
    await expect(board.locator(".name")).to_have_text(["Ada", "Grace"])
    await expect(board.locator(".score")).to_have_text([ada_score, "0"])
    await expect(host.locator("#board-top li .name")).to_have_text(["Ada", "Grace"])
    await expect(host.locator("#q-choices li .count")).to_have_text(["0", "1", "1", "0"])
    await expect(host.locator("#answered")).to_have_text("2")
    await shots(ada, "player-ada-reveal")
    await shots(grace, "player-grace-reveal")
    await shots(screen, "screen-reveal-1")
    await shots(host, "host-reveal-1")

    # Next: the second question; nobody answers, the host reveals it.
    await host.click("[data-action=next]")
    for player in (ada, grace):
        await expect(player.locator("#q-number")).to_have_text("Question 2 of 5")
        await expect(player.locator("#stage")).to_have_attribute("data-phase", "question")
    await expect(screen.locator("#q-number")).to_have_text("Question 2 of 5")
    await expect(host.locator("[data-action=reveal]")).to_be_enabled()
    await shots(grace, "player-grace-question-2")
    await host.click("[data-action=reveal]")
    await expect(grace.locator("#result")).to_contain_text("No answer")
    await expect(grace.locator("#result")).to_contain_text("The answer was Too Many Requests.")

    # Finish (the host confirms): final places on the players' pages, the podium on the screen.
    host.once("dialog", lambda dialog: dialog.accept())
    await host.click("[data-action=finish]")
    await expect(host.locator("#state")).to_have_text("Finished")
    await expect(ada.locator("#stage")).to_have_attribute("data-phase", "finished")
    await expect(ada.locator("#final-text")).to_have_text(f"You finished 1st of 2 with {ada_score} points.")
    await expect(grace.locator("#final-text")).to_have_text("You finished 2nd of 2 with 0 points.")
    await expect(screen.locator("#view-finished")).to_be_visible()
    await expect(screen.locator("#podium .p1 .who")).to_have_text("Ada")
    await expect(screen.locator("#podium .p2 .who")).to_have_text("Grace")
    await shots(ada, "player-ada-finished")
    await shots(screen, "screen-podium")
    await shots(host, "host-finished")


# -- the realtime console --------------------------------------------------------------------


async def test_realtime_console(pages: Pages, demo: Demo, server: DaphneServer, shots: Screenshots) -> None:
    page = await log_in(pages, demo, "/realtime/console/")
    await expect(page.locator("#endpoint")).to_have_value(f"{server.http_url}/event")
    await page.fill("#api-key", demo.api_key)
    await page.click("#connect")
    await expect(page.locator("#state")).to_have_text("connected")
    await shots(page, "connected")

    await expect(page.locator("#subscribe-channel")).to_have_value("/default/*")
    await page.click("#subscribe-form button[type=submit]")
    await expect(page.locator("#subscriptions li code")).to_have_text("/default/*")
    log = page.locator("#log")
    await expect(log.locator("li.state").first).to_have_text(re.compile(r"subscribed to /default/\*$"))
    await shots(page, "subscribed")

    # Over the WebSocket: the publish result, then the event itself.
    await page.fill("#publish-channel", "/default/browser")
    await page.fill("#publish-events", '[{"message": "hello from Chromium"}]')
    await page.click("#publish-form button[type=submit]")
    await expect(log.locator("li.publish")).to_contain_text('"successful"')
    event = log.locator("li.event").filter(has_text="hello from Chromium")
    await expect(event).to_contain_text("/default/*")
    await expect(event).to_have_count(1)
    await shots(page, "published-over-websocket")

    # Over HTTP (POST /event), from the same form.
    await page.select_option("#publish-transport", "http")
    await page.fill("#publish-events", '[{"message": "over HTTP"}, 2]')
    await page.click("#publish-form button[type=submit]")
    await expect(log.locator("li.publish").filter(has_text="over HTTP")).to_have_count(1)
    await expect(log.locator("li.event").filter(has_text='"over HTTP"')).to_have_count(1)
    await expect(log.locator("li.event")).to_have_count(3)

    # And from another client: a script publishing with the key.
    request = urllib.request.Request(
        f"{server.event_url}",
        data=json.dumps({"channel": "/default/other", "events": [json.dumps({"from": "a script"})]}).encode(),
        headers={"x-api-key": demo.api_key, "content-type": "application/json"},
    )
    reply = await asyncio.to_thread(_post_json, request)
    assert reply["failed"] == [], reply
    await expect(log.locator("li.event").first).to_contain_text('"from": "a script"')
    await expect(log.locator("li.error")).to_have_count(0)
    await shots(page, "received")


def _post_json(request: urllib.request.Request) -> dict:
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)
