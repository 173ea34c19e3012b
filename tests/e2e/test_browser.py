"""The pages in a real browser: headless Chromium driven by Playwright against a real daphne.

- The game show: a host logs in through the admin and drives the game from the host console
  (start, reveal, next, finish); two players join from the player page and answer; the big
  screen shows them in the lobby, the question, the reveal and the podium; each player sees
  the verdict, their score and rank after the reveal, and their place at the end.
- Staying in step: a phone offline (the browser's emulation) or cut off (a proxy) across a reveal
  shows the reveal, its verdict and the current leaderboard within 2 s of the network; a reload
  mid-question shows the whole leaderboard on the phone and the big screen.
- Running a show without the API: a question set imported and a game created from the host page,
  revealed and moved on by the server with no host page open, to the podium; play again.
- Rejoining on a second phone with the rejoin code, score kept; another phone cannot take the nickname.
- The small things: "1 player", no rank before a reveal, time-up buttons, a tie on the podium.
- Every page of the show at 390×844 and 1280×720 (``artifacts/browser/pages/``): no horizontal
  overflow, no console error.
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
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, DaphneFactory, DaphneServer, _python, database_of_its_own

# Each wait inside is bounded (WAIT_MS); the longest tests (thirty pages at two sizes, a whole
# show) take 20-40 s on a quiet machine, past the suite's 60 s per test on a busy one.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

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
def browser_env(e2e_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The session's environment on a database of the test's own: its server scores every answer."""
    return {**e2e_env, "DATABASE_URL": database_of_its_own(e2e_env, tmp_path / "browser.sqlite3")}


@pytest.fixture
def server(daphne_factory: DaphneFactory, static_root: Path, browser_env: dict[str, str]) -> DaphneServer:
    (started,) = daphne_factory(
        "browser", STATIC_ROOT=str(static_root), DATABASE_URL=browser_env["DATABASE_URL"]
    )
    return started


@dataclass
class Demo:
    code: str
    username: str
    password: str
    api_key: str


@pytest.fixture
def demo(server: DaphneServer, browser_env: dict[str, str]) -> Demo:
    """``manage.py quiz_demo``: a game open for joining, the host's login and an API key."""
    return make_demo(server, browser_env)


def make_demo(server: DaphneServer, env: dict[str, str], *args: str) -> Demo:
    """``manage.py quiz_demo`` with ``args`` (another question set, the game's automatic steps)."""
    result = _run_manage(env, "quiz_demo", "--base-url", server.http_url, *args)
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
        # Refusals a test provokes on purpose: (status, the end of the URL).
        self.expected: set[tuple[int, str]] = set()

    def expect_refusal(self, status: int, url_end: str) -> None:
        self.expected.add((status, url_end))

    async def context(self, width: int, height: int, base_url: str | None = None) -> BrowserContext:
        context = await self.browser.new_context(
            base_url=base_url or self.base_url, viewport={"width": width, "height": height}, locale="en-US"
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
        if (response.status, response.url.rsplit("/", 1)[-1]) in self.expected:
            return
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


async def log_in(pages: Pages, demo: Demo, next_path: str, size: tuple[int, int] = (1280, 900)) -> Page:
    """A staff context: sign in through the admin's login form, land on ``next_path``."""
    page = await pages.open(await pages.context(*size), f"/admin/login/?next={next_path}")
    await page.fill("#id_username", demo.username)
    await page.fill("#id_password", demo.password)
    await page.click("input[type=submit]")
    await page.wait_for_url(f"**{next_path}")
    return page


# -- the game show ---------------------------------------------------------------------------

SCORE = re.compile(r"^(1,000|[5-9]\d\d)$")  # a right answer earns 500 to 1,000 points


async def join(pages: Pages, demo: Demo, nickname: str, *, base_url: str | None = None) -> Page:
    """A phone joins the demo game, from ``base_url`` (the server's by default)."""
    page = await pages.open(await pages.context(390, 844, base_url), f"/quiz/{demo.code}/")
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


# -- helpers for the tests below -------------------------------------------------------------


# Records each value the stage's ``data-phase`` takes, in order, in ``window.recordedPhases``.
PHASE_RECORDER = """() => {
    const stage = document.querySelector("#stage");
    window.recordedPhases = [];
    new MutationObserver(() => window.recordedPhases.push(stage.dataset.phase)).observe(
        stage, {attributes: true, attributeFilter: ["data-phase"]}
    );
}"""


async def recorded_phases(page: Page) -> list[str]:
    """The phases :data:`PHASE_RECORDER` saw on ``page``, each repeat of the same one counted once."""
    phases: list[str] = await page.evaluate("() => window.recordedPhases")
    return [phase for n, phase in enumerate(phases) if n == 0 or phases[n - 1] != phase]


async def act(host: Page, action: str, state: str) -> None:
    """The host presses a control and waits for the console to show the new state."""
    if action == "finish":
        host.once("dialog", lambda dialog: dialog.accept())
    await expect(host.locator(f"[data-action={action}]")).to_be_enabled()
    await host.click(f"[data-action={action}]")
    await expect(host.locator("#state")).to_have_text(state)


async def assert_fits(page: Page) -> None:
    """No horizontal scrolling: nothing is wider than the viewport."""
    widths = await page.evaluate(
        "() => ({scroll: document.documentElement.scrollWidth, viewport: window.innerWidth})"
    )
    assert widths["scroll"] <= widths["viewport"], f"{page.url} overflows horizontally: {widths}"


def points(text: str) -> int:
    return int(text.replace(",", ""))


class Deadline:
    """A time budget shared by several waits: each gets what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.monotonic()

    def left_ms(self) -> float:
        return max(1.0, 1000 * (self.seconds - self.elapsed()))

    def elapsed(self) -> float:
        return time.monotonic() - self.start


async def expect_caught_up(ada: Page, q1_score: int, deadline: Deadline) -> None:
    """Ada's phone shows question 2's reveal, her verdict and points, and the current leaderboard."""
    await expect(ada.locator("#conn")).to_have_text("live", timeout=deadline.left_ms())
    await expect(ada.locator("#stage")).to_have_attribute("data-phase", "reveal", timeout=deadline.left_ms())
    await expect(ada.locator("#result")).to_contain_text("Right!", timeout=deadline.left_ms())
    await expect(ada.locator("#choices button.correct")).to_contain_text(
        "Too Many Requests", timeout=deadline.left_ms()
    )
    await expect(ada.locator("#me-score")).not_to_have_text(f"{q1_score:,}", timeout=deadline.left_ms())
    score = points(await ada.locator("#me-score").inner_text())
    assert score > q1_score
    await expect(ada.locator("#result-points")).to_have_text(
        f"+{score - q1_score:,} points", timeout=deadline.left_ms()
    )
    board = ada.locator("#board-top li")
    await expect(board.locator(".name")).to_have_text(["Ada", "Grace"], timeout=deadline.left_ms())
    await expect(board.locator(".score")).to_have_text([f"{score:,}", "0"], timeout=deadline.left_ms())
    await expect(ada.locator("#me-rank")).to_have_text("1st", timeout=deadline.left_ms())
    await expect(ada.locator("#board-empty")).to_be_hidden(timeout=deadline.left_ms())


async def play_until_question_2_answered(pages: Pages, demo: Demo, ada_base_url: str | None = None):
    """Host, Ada (from ``ada_base_url``) and Grace; question 1 revealed (Ada right), question 2 open
    and answered right by Ada. Returns the host, Ada, Grace and Ada's score after question 1."""
    host = await log_in(pages, demo, f"/quiz/{demo.code}/host/")
    await expect(host.locator("#conn")).to_have_text("live")
    ada = await join(pages, demo, "Ada", base_url=ada_base_url)
    grace = await join(pages, demo, "Grace")
    await act(host, "start", "Question open")
    await ada.get_by_role("button", name="WebSocket").click()
    await expect(ada.locator("#answer-status")).to_have_text("Answer locked in")
    await act(host, "reveal", "Answer revealed")
    await expect(ada.locator("#result")).to_contain_text("Right!")
    await expect(ada.locator("#me-score")).to_have_text(SCORE)  # her score event follows the reveal
    q1_score = points(await ada.locator("#me-score").inner_text())
    await expect(ada.locator("#result-points")).to_have_text(f"+{q1_score:,} points")
    await act(host, "next", "Question open")
    await expect(ada.locator("#q-number")).to_have_text("Question 2 of 5")
    await ada.get_by_role("button", name="Too Many Requests").click()
    await expect(ada.locator("#answer-status")).to_have_text("Answer locked in")
    return host, ada, grace, q1_score


# -- catching up: the pages render the game as it is, whatever they missed -------------------


async def test_a_phone_offline_across_a_reveal_catches_up_within_2s_of_the_network(
    pages: Pages, demo: Demo, shots: Screenshots
) -> None:
    host, ada, grace, q1_score = await play_until_question_2_answered(pages, demo)
    header = ada.locator("header.bar")
    live_box = await header.bounding_box()
    await shots(ada, "player-ada-answered-question-2")

    # The phone loses the network: the badge says so at once, on the header's one line.
    await ada.context.set_offline(True)
    await expect(ada.locator("#conn")).to_have_text("offline")
    assert await header.bounding_box() == live_box
    await assert_fits(ada)
    await shots(ada, "player-ada-offline")

    # The reveal goes out while she is away: it never reaches her page.
    await act(host, "reveal", "Answer revealed")
    await expect(grace.locator("#result")).to_contain_text("No answer")
    await expect(ada.locator("#stage")).to_have_attribute("data-phase", "question")

    # Back online: within 2 s the reveal, her verdict, her points and the current leaderboard.
    deadline = Deadline(2.0)
    await ada.context.set_offline(False)
    await expect_caught_up(ada, q1_score, deadline)
    assert deadline.elapsed() <= 2.0, f"caught up in {deadline.elapsed():.2f}s"
    await shots(ada, "player-ada-back-online")


class CuttableProxy:
    """A TCP proxy to the server that can cut the network: every connection through it is reset
    (both ends see it) and new ones are refused until :meth:`restore`. Events published meanwhile
    are lost for the clients behind it, as on a real phone whose connection dropped."""

    def __init__(self, port: int) -> None:
        self.target_port = port
        self.cut_off = False
        self.links: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.links.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(source, sink, (writer, up_writer)))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, pair: tuple[asyncio.StreamWriter, ...]
    ) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for end in pair:
                self.links.discard(end)
                end.transport.abort()

    def cut(self) -> None:
        self.cut_off = True
        for writer in list(self.links):
            writer.transport.abort()
        self.links.clear()

    def restore(self) -> None:
        self.cut_off = False

    async def close(self) -> None:
        self.cut()
        for task in list(self.tasks):
            task.cancel()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def proxy(server: DaphneServer) -> AsyncIterator[CuttableProxy]:
    cuttable = CuttableProxy(server.port)
    try:
        yield cuttable
    finally:
        await cuttable.close()


async def test_a_phone_whose_connection_drops_across_a_reveal_catches_up(
    pages: Pages, demo: Demo, proxy: CuttableProxy, shots: Screenshots
) -> None:
    # Ada's phone reaches the server through the proxy: page, API and WebSocket.
    host, ada, grace, q1_score = await play_until_question_2_answered(pages, demo, await proxy.start())

    # Her connection drops (no `offline` event: the browser does not know) and the reveal is sent.
    header = ada.locator("header.bar")
    live_box = await header.bounding_box()
    proxy.cut()
    await expect(ada.locator("#conn")).to_have_text("reconnecting…")
    assert await header.bounding_box() == live_box  # the longest badge still fits the header's line
    await act(host, "reveal", "Answer revealed")
    await expect(grace.locator("#result")).to_contain_text("No answer")
    await asyncio.sleep(4)  # retries fail meanwhile, the backoff grows (to its cap at most)
    await expect(ada.locator("#stage")).to_have_attribute("data-phase", "question")
    await assert_fits(ada)
    await shots(ada, "player-ada-connection-dropped")

    # The link comes back: the page's next retry is due within its cap (1 s), and within 2 s of the
    # network's return she has caught up.
    deadline = Deadline(2.0)
    proxy.restore()
    await expect_caught_up(ada, q1_score, deadline)
    assert deadline.elapsed() <= 2.0, f"caught up in {deadline.elapsed():.2f}s"
    await shots(ada, "player-ada-reconnected")

    # Dropped again; when the page is looked at again it retries at once, whatever the backoff.
    proxy.cut()
    await expect(ada.locator("#conn")).to_have_text(re.compile("reconnecting"))
    await asyncio.sleep(4)
    proxy.restore()
    deadline = Deadline(1.5)
    await ada.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
    await expect(ada.locator("#conn")).to_have_text("live", timeout=deadline.left_ms())


async def test_a_reload_mid_question_shows_the_whole_leaderboard(
    pages: Pages, demo: Demo, shots: Screenshots
) -> None:
    host, ada, grace, q1_score = await play_until_question_2_answered(pages, demo)
    screen = await pages.open(host.context, f"/quiz/{demo.code}/screen/")
    await screen.set_viewport_size({"width": 1280, "height": 720})
    # Grace answers question 2 right: the live standings move, which only the host sees until the reveal
    # (when the host asks: the console hides them while a question is open).
    await grace.get_by_role("button", name="Too Many Requests").click()
    await expect(grace.locator("#answer-status")).to_have_text("Answer locked in")
    await host.click("#board-toggle")
    grace_on_host = host.locator("#board-top li").filter(has_text="Grace").locator(".score")
    await expect(grace_on_host).not_to_have_text("0")

    # Reloaded mid-question, the phone and the big screen show the leaderboard as the question opened.
    for page in (ada, screen):
        await page.reload()
    await expect(ada.locator("#stage")).to_have_attribute("data-phase", "question")
    await expect(ada.locator("#q-number")).to_have_text("Question 2 of 5")
    await expect(ada.locator("#choices button.chosen")).to_contain_text("Too Many Requests")
    for page in (ada, screen):
        board = page.locator("#board-top li")
        await expect(board.locator(".name")).to_have_text(["Ada", "Grace"])
        await expect(board.locator(".score")).to_have_text([f"{q1_score:,}", "0"])
        await expect(board.locator(".rank")).to_have_text(["1", "2"])
    await expect(ada.locator("#board-empty")).to_be_hidden()
    await expect(ada.locator("#me-score")).to_have_text(f"{q1_score:,}")
    await expect(ada.locator("#me-rank")).to_have_text("1st")
    await expect(ada.locator("#me-of")).to_have_text("of 2")
    await expect(screen.locator("#view-question")).to_be_visible()
    await expect(screen.locator("#q-number")).to_have_text("Question 2 of 5")
    await shots(ada, "player-ada-reloaded-mid-question")
    await shots(screen, "screen-reloaded-mid-question")

    # The reveal brings the moves to everyone.
    await act(host, "reveal", "Answer revealed")
    for page in (ada, screen):
        grace_row = page.locator("#board-top li").filter(has_text="Grace").locator(".score")
        await expect(grace_row).not_to_have_text("0")
    await shots(screen, "screen-reveal-2")


# -- the small things: plurals, the lobby's rank, time-up buttons, podium ties ----------------

SHORT_QUESTIONS = {
    "title": "Quick",
    "questions": [
        {"text": "Quick one?", "choices": ["Yes", "No"], "correct": 0, "time_limit": 2, "points": 1000},
        {"text": "Another?", "choices": ["Yes", "No"], "correct": 1, "time_limit": 2, "points": 1000},
    ],
}


def questions_file(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "questions.json"
    path.write_text(json.dumps(data))
    return str(path)


async def test_counts_ranks_time_up_and_a_tied_podium(
    pages: Pages, server: DaphneServer, browser_env: dict[str, str], tmp_path: Path, shots: Screenshots
) -> None:
    demo = make_demo(server, browser_env, "--questions", questions_file(tmp_path, SHORT_QUESTIONS))
    host = await log_in(pages, demo, f"/quiz/{demo.code}/host/")
    await expect(host.locator("#q-number")).to_have_text("2 questions ready")
    screen = await pages.open(host.context, f"/quiz/{demo.code}/screen/")
    await expect(screen.locator("#view-lobby .count")).to_have_text("0 players in")

    # One player is "1 player", everywhere; nobody has a rank before a question is revealed.
    ada = await join(pages, demo, "Ada")
    await expect(ada.locator("#lobby-players")).to_have_text("1")
    await expect(ada.locator(".phase-lobby .big-number")).to_have_text("1 player")
    await expect(ada.locator(".board-head .small")).to_have_text("1 player")
    await expect(screen.locator("#view-lobby .count")).to_have_text("1 player in")
    await expect(host.locator(".kpi").first).to_have_text("1 player joined")
    await expect(ada.locator("#me-rank")).to_have_text("–")
    await expect(ada.locator("#me-of")).to_have_text("rank")
    grace = await join(pages, demo, "Grace")
    await expect(screen.locator("#view-lobby .count")).to_have_text("2 players in")
    await expect(ada.locator(".phase-lobby .big-number")).to_have_text("2 players")
    await expect(grace.locator("#me-rank")).to_have_text("–")
    await shots(grace, "player-lobby-no-rank")

    # Time runs out with no answer: the buttons look disabled, not just refuse taps.
    await act(host, "start", "Question open")
    await expect(ada.locator("#answer-status")).to_have_text("Time's up! Waiting for the answer…")
    first = ada.locator("#choices button").first
    await expect(first).to_be_disabled()
    await expect(first).to_have_css("opacity", "0.4")  # once its fade has run
    await expect(first).to_have_css("filter", "grayscale(0.7)")
    await expect(ada.locator("#me-rank")).to_have_text("–")
    await expect(host.locator("#auto")).to_have_text("Time is up: press Reveal to show the answer.")
    await shots(ada, "player-time-up")
    await shots(host, "host-time-up")

    # Nobody scored: a tie for 1st, and both stand on the podium.
    await act(host, "finish", "Finished")
    await expect(screen.locator("#podium .p1 .who")).to_have_text(["Ada", "Grace"])
    await expect(screen.locator("#podium .p1 .place")).to_have_text("1st")
    await expect(screen.locator("#podium .p1 .pts")).to_have_text(["0 points", "0 points"])
    await expect(screen.locator("#podium > div")).to_have_count(1)
    await expect(ada.locator("#final-text")).to_have_text("You finished 1st of 2 with 0 points.")
    await expect(grace.locator("#final-text")).to_have_text("You finished 1st of 2 with 0 points.")
    await shots(screen, "screen-tied-podium")


# -- a show without the API: import, create, automatic reveal and next, play again -----------


async def test_a_show_run_from_the_host_page_plays_itself_to_the_podium_and_again(
    pages: Pages, demo: Demo, shots: Screenshots
) -> None:
    # The host imports a question set by pasting its JSON, then creates a game that runs itself.
    home = await log_in(pages, demo, "/quiz/host/")
    await home.fill("#id_text", json.dumps({**SHORT_QUESTIONS, "title": "Self-running"}))
    await home.click("#import-form button[type=submit]")
    await expect(home.locator("#question-sets")).to_contain_text("Self-running 2 questions")
    await expect(home.locator("#id_question_set option:checked")).to_have_text("Self-running (2 questions)")
    await home.fill("#id_title", "Friday quiz")
    await home.check("#id_auto_reveal")
    await home.fill("#id_auto_next", "1")
    await shots(home, "host-home")
    await home.click("#create-form button[type=submit]")
    await home.wait_for_url(re.compile(r"/quiz/[A-Z0-9]{6}/host/$"))
    host = home
    code = host.url.rstrip("/").split("/")[-2]
    await expect(host.locator("#state")).to_have_text("Lobby")
    await expect(host.locator("#auto")).to_have_text(
        "Automatic: answers are revealed when time is up;"
        " the next question follows 1 second after each reveal."
    )
    screen = await pages.open(host.context, f"/quiz/{code}/screen/")
    game = Demo(code=code, username=demo.username, password=demo.password, api_key=demo.api_key)
    ada = await join(pages, game, "Ada")
    grace = await join(pages, game, "Grace")

    # The host starts; while the question is open the console hides the scores unless asked.
    await act(host, "start", "Question open")
    # Every phase Grace's page shows from now on (a reveal lasts about a second: polling may miss it).
    await grace.evaluate(PHASE_RECORDER)
    await ada.get_by_role("button", name="Yes").click()
    await expect(ada.locator("#answer-status")).to_have_text("Answer locked in")
    await expect(host.locator("#board-hidden")).to_be_visible()
    await expect(host.locator("#board-top")).to_be_hidden()
    await shots(host, "host-scores-hidden")
    await host.click("#board-toggle")
    await expect(host.locator("#board-top li .name")).to_have_text(["Ada", "Grace"])
    await expect(host.locator("#board-toggle")).to_have_text("Hide scores")

    # The host's page goes away: the reveals, the next question and the podium come by themselves.
    await host.close()
    await expect(ada.locator("#result")).to_contain_text("Right!")
    await expect(grace.locator("#result")).to_contain_text("No answer")
    await expect(ada.locator("#q-number")).to_have_text("Question 2 of 2")
    await expect(ada.locator("#stage")).to_have_attribute("data-phase", "question")
    await expect(ada.locator("#stage")).to_have_attribute("data-phase", "finished")
    await expect(grace.locator("#stage")).to_have_attribute("data-phase", "finished")
    # Grace saw each question's reveal before the next question and before the podium.
    assert await recorded_phases(grace) == ["reveal", "question", "reveal", "finished"]
    await expect(screen.locator("#podium .p1 .who")).to_have_text("Ada")
    await expect(screen.locator("#podium .p2 .who")).to_have_text("Grace")
    await expect(ada.locator("#final-text")).to_contain_text("You finished 1st of 2")
    await shots(screen, "screen-podium-by-itself")

    # Play again: the host starts a rematch; the big screen follows and the players are invited.
    host = await pages.open(screen.context, f"/quiz/{code}/host/")
    await expect(host.locator("#state")).to_have_text("Finished")
    await expect(host.locator("#play-again")).to_be_visible()
    await shots(host, "host-finished-play-again")
    await host.click("#play-again")
    await expect(host).not_to_have_url(re.compile(f"/quiz/{code}/host/$"))
    await host.wait_for_url(re.compile(r"/quiz/[A-Z0-9]{6}/host/$"))
    rematch = host.url.rstrip("/").split("/")[-2]
    assert rematch != code
    await expect(host.locator("#state")).to_have_text("Lobby")
    await expect(screen).to_have_url(re.compile(f"/quiz/{rematch}/screen/$"))
    await expect(ada.locator("#play-again")).to_have_text("Play again as Ada")
    await shots(ada, "player-invited")
    await ada.click("#play-again")
    await expect(ada).to_have_url(re.compile(f"/quiz/{rematch}/$"))
    await expect(ada.locator("#me-name")).to_have_text("Ada")
    await expect(ada.locator("#stage")).to_have_attribute("data-phase", "lobby")
    await expect(screen.locator("#lobby-names span")).to_have_text(["Ada"])
    await expect(host.locator("#players")).to_have_text("1")


# -- rejoining on another device ---------------------------------------------------------------


async def test_a_player_rejoins_on_another_device_with_the_code_and_nobody_else_can(
    pages: Pages, demo: Demo, shots: Screenshots
) -> None:
    host = await log_in(pages, demo, f"/quiz/{demo.code}/host/")
    ada = await join(pages, demo, "Ada")
    rejoin_code = await ada.locator(".phase-lobby .me-rejoin").inner_text()
    assert re.fullmatch(r"[A-HJ-NP-Z2-9]{6}", rejoin_code), rejoin_code
    await expect(ada.locator(".rejoin-note .me-rejoin")).to_have_text(rejoin_code)
    await shots(ada, "player-lobby-with-rejoin-code")
    await act(host, "start", "Question open")
    await ada.get_by_role("button", name="WebSocket").click()
    await expect(ada.locator("#answer-status")).to_have_text("Answer locked in")
    await act(host, "reveal", "Answer revealed")
    await expect(ada.locator("#me-score")).to_have_text(SCORE)
    score = await ada.locator("#me-score").inner_text()

    # Someone else asks for "Ada": the nickname is taken, and a guessed code is refused.
    pages.expect_refusal(409, "join")
    pages.expect_refusal(403, "rejoin")
    mallory = await pages.open(await pages.context(390, 844), f"/quiz/{demo.code}/")
    await mallory.fill("#nickname", "Ada")
    await mallory.click("#join-button")
    await expect(mallory.locator("#rejoin-form")).to_be_visible()
    await expect(mallory.locator("#join-error")).to_have_text("That nickname is taken in this game.")
    await mallory.fill("#rejoin-code", "ABCDEF" if rejoin_code != "ABCDEF" else "ABCDEG")
    await mallory.click("#rejoin-button")
    await expect(mallory.locator("#rejoin-error")).to_have_text(
        "This rejoin code does not match this nickname."
    )
    await expect(mallory.locator("#view-game")).to_be_hidden()
    await shots(mallory, "another-phone-refused")

    # Ada, on a new phone, types her code (in lower case): she is back with her score and verdict.
    phone = await pages.open(await pages.context(390, 844), f"/quiz/{demo.code}/")
    await phone.fill("#nickname", "Ada")
    await phone.click("#join-button")
    await phone.fill("#rejoin-code", rejoin_code.lower())
    await phone.click("#rejoin-button")
    await expect(phone.locator("#view-game")).to_be_visible()
    await expect(phone.locator("#me-name")).to_have_text("Ada")
    await expect(phone.locator("#conn")).to_have_text("live")
    await expect(phone.locator("#stage")).to_have_attribute("data-phase", "reveal")
    await expect(phone.locator("#result")).to_contain_text("Right!")
    await expect(phone.locator("#me-score")).to_have_text(score)
    await expect(phone.locator("#me-rank")).to_have_text("1st")
    new_code = await phone.locator(".rejoin-note .me-rejoin").inner_text()
    assert re.fullmatch(r"[A-HJ-NP-Z2-9]{6}", new_code) and new_code != rejoin_code
    await shots(phone, "player-rejoined")

    # She plays on from the new phone; the old code brings nobody back any more.
    await act(host, "next", "Question open")
    await expect(phone.locator("#q-number")).to_have_text("Question 2 of 5")
    await mallory.fill("#rejoin-code", rejoin_code)
    await mallory.click("#rejoin-button")
    await expect(mallory.locator("#rejoin-error")).to_have_text(
        "This rejoin code does not match this nickname."
    )


# -- every page, on a phone and on a laptop ----------------------------------------------------

VIEWPORTS = {"phone": (390, 844), "laptop": (1280, 720)}


class PageCheck:
    """Each page at each size: a screenshot in ``artifacts/browser/pages/``, no horizontal
    overflow, and no error in its console (collected from the moment it opened)."""

    def __init__(self) -> None:
        self.directory = ARTIFACTS / "pages"
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True)
        self.console: list[str] = []
        self.checked: list[str] = []

    def watch(self, page: Page) -> Page:
        page.on(
            "console",
            lambda message: self.console.append(f"{page.url}: {message.text}")
            if message.type == "error"
            else None,
        )
        return page

    async def __call__(self, page: Page, viewport: str, name: str) -> None:
        await page.screenshot(
            path=self.directory / f"{viewport}-{name}.png", full_page=True, animations="disabled"
        )
        await assert_fits(page)
        assert not self.console, f"console errors by {viewport}-{name}:\n" + "\n".join(self.console)
        self.checked.append(f"{viewport}-{name}")


async def test_every_page_fits_a_phone_and_a_laptop_with_no_console_error(pages: Pages, demo: Demo) -> None:
    check = PageCheck()
    print(f"\nscreenshots: {check.directory}")
    staff: dict[str, dict[str, Page]] = {}
    players: dict[str, Page] = {}
    for viewport, size in VIEWPORTS.items():
        anonymous = await pages.context(*size)
        landing = check.watch(await pages.open(anonymous, "/quiz/"))
        await check(landing, viewport, "landing")

        home = await log_in(pages, demo, "/quiz/host/", size)
        check.watch(home)
        await check(home, viewport, "host-home")
        host = check.watch(await pages.open(home.context, f"/quiz/{demo.code}/host/"))
        await expect(host.locator("#conn")).to_have_text("live")
        screen = check.watch(await pages.open(home.context, f"/quiz/{demo.code}/screen/"))
        await expect(screen.locator("#conn")).to_have_text("live")
        staff[viewport] = {"host": host, "screen": screen}

        player = check.watch(await pages.open(await pages.context(*size), f"/quiz/{demo.code}/"))
        await expect(player.locator("#view-join")).to_be_visible()
        await check(player, viewport, "play-join")
        await player.fill("#nickname", {"phone": "Ada", "laptop": "Grace"}[viewport])
        await player.click("#join-button")
        await expect(player.locator("#conn")).to_have_text("live")
        players[viewport] = player

    driver = staff["laptop"]["host"]
    for state, label, phase in (
        ("lobby", "Lobby", "lobby"),
        ("question", "Question open", "question"),
        ("reveal", "Answer revealed", "reveal"),
        ("finished", "Finished", "finished"),
    ):
        if state != "lobby":
            await act(driver, {"question": "start", "reveal": "reveal", "finished": "finish"}[state], label)
        if state == "question":
            await players["phone"].get_by_role("button", name="WebSocket").click()
            await expect(players["phone"].locator("#answer-status")).to_have_text("Answer locked in")
        for viewport in VIEWPORTS:
            host, screen, player = staff[viewport]["host"], staff[viewport]["screen"], players[viewport]
            await expect(host.locator("#state")).to_have_text(label)
            await expect(player.locator("#stage")).to_have_attribute("data-phase", phase)
            view = {"lobby": "lobby", "question": "question", "reveal": "question", "finished": "finished"}[
                state
            ]
            await expect(screen.locator(f"#view-{view}")).to_be_visible()
            if state == "reveal":
                await expect(screen.locator("#tiles.revealed")).to_be_visible()
            for name, page in (("host", host), ("screen", screen), ("play", player)):
                await check(page, viewport, f"{name}-{state}")
    assert len(check.checked) == 2 * (3 + 3 * 4)


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
