"""A third-party project installs ``realtime`` exactly as the README says, and it works.

The wheel is built once per module, with pip, from a copy of every file git tracks (what a
clone holds), so package discovery sees ``bench/``, ``quiz/``, ``config/`` and ``tests/`` too.

- Its file list is exactly the tracked non-test files under ``realtime/``, plus the dist-info:
  a file missing from the package data, or one that should not ship, fails the test.
- It is installed into a fresh virtualenv; a new project made with ``django-admin
  startproject`` gets the README's "Use realtime in your project" snippets verbatim (they
  are read from README.md), and daphne serving it passes a subscribe/publish round trip.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from .conftest import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SNIPPET = re.compile(r"<!-- install:(\w+) -->\s*```\w*\n(.*?)```", re.S)


def readme_snippets() -> dict[str, str]:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Use realtime in your project", 1)[1].split("\n## ", 1)[0]
    snippets = {}
    for name, body in SNIPPET.findall(section):
        # The snippets sit in a numbered list: drop the list's indentation.
        lines = body.splitlines()
        indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
        snippets[name] = "\n".join(line[indent:] for line in lines) + "\n"
    return snippets


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=400
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def tracked_files() -> list[str]:
    """The repository's files as git tracks them (relative, POSIX), present in the working tree."""
    listing = run("git", "ls-files", "-z", cwd=REPO_ROOT)
    return [name for name in listing.split("\0") if name and (REPO_ROOT / name).is_file()]


def is_test_file(name: str) -> bool:
    parts = name.split("/")
    return "tests" in parts[:-1] or parts[-1].startswith("test_") or parts[-1] == "conftest.py"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The distribution's wheel, built by pip from a copy of the tracked files."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    for name in tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp / "dist", source, cwd=tmp)
    (built,) = (tmp / "dist").glob("django_realtime_events-*.whl")
    return built


def test_the_wheel_holds_the_realtime_package_and_nothing_else(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = {name for name in archive.namelist() if not name.endswith("/")}
    (dist_info,) = {name.split("/", 1)[0] for name in names if ".dist-info/" in name}
    assert {"METADATA", "WHEEL", "RECORD"} <= {
        name.split("/", 1)[1] for name in names if name.startswith(dist_info + "/")
    }
    shipped = {name for name in names if not name.startswith(dist_info + "/")}
    # Nothing from the repository's other packages (bench/, quiz/, config/, tests/).
    assert {name.split("/", 1)[0] for name in shipped} == {"realtime"}

    expected = {
        name
        for name in tracked_files()
        if name.startswith("realtime/") and "__pycache__" not in name.split("/") and not is_test_file(name)
    }

    def subdirectories(files: set[str]) -> set[str]:
        return {name.split("/")[1] for name in files if name.count("/") >= 2}

    assert subdirectories(shipped) == subdirectories(expected)
    assert not expected - shipped, f"missing from the wheel: {sorted(expected - shipped)}"
    assert not shipped - expected, f"in the wheel, not a tracked package file: {sorted(shipped - expected)}"

    # What an installing project runs: models' migrations, the management commands, the
    # pages' templates, the browser client, and the typing marker.
    assert "realtime/py.typed" in shipped
    for folder, suffix in [
        ("realtime/migrations/", ".py"),
        ("realtime/management/commands/", ".py"),
        ("realtime/templates/realtime/", ".html"),
        ("realtime/static/realtime/", ".js"),
    ]:
        assert any(
            name.startswith(folder) and name.endswith(suffix) and not name.endswith("__init__.py")
            for name in shipped
        ), f"no {folder}*{suffix} in the wheel"
    assert not [name for name in shipped if is_test_file(name)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_new_project_wired_as_the_readme_says_serves_realtime(tmp_path: Path, wheel: Path) -> None:
    snippets = readme_snippets()
    assert set(snippets) == {"settings", "asgi", "urls", "run"}

    python = getattr(sys, "_base_executable", sys.executable)
    venv = tmp_path / "venv"
    run(python, "-m", "venv", venv, cwd=tmp_path)
    pip = venv / "bin" / "pip"
    # The tested pins as constraints (pip refuses extras there).
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(re.sub(r"\[[^\]]*\]", "", (REPO_ROOT / "requirements.txt").read_text()))
    run(pip, "install", "--quiet", f"{wheel}[server]", "-c", constraints, cwd=tmp_path)

    # A new project, wired with the README's snippets.
    project = tmp_path / "proj"
    project.mkdir()
    run(venv / "bin" / "django-admin", "startproject", "mysite", project, cwd=tmp_path)
    with open(project / "mysite" / "settings.py", "a") as settings:
        settings.write("\n" + snippets["settings"])
    (project / "mysite" / "asgi.py").write_text(snippets["asgi"])
    with open(project / "mysite" / "urls.py", "a") as urls:
        urls.write("\n" + snippets["urls"])

    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    for name in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(name, None)
    port = free_port()
    commands = [line for line in snippets["run"].splitlines() if line.strip()]
    assert commands[-1] == "daphne mysite.asgi:application"
    key = ""
    for command in commands[:-1]:
        args = shlex.split(command)
        assert args[0] == "python"
        stdout = run(venv / "bin" / "python", *args[1:], cwd=project, env=env)
        if "realtime_apikey" in args:
            key = stdout.strip().splitlines()[-1]
    assert key.startswith("rt-")

    server = subprocess.Popen(
        [str(venv / "bin" / "daphne"), "-b", "127.0.0.1", "-p", str(port), "mysite.asgi:application"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_port(port, server)
        asyncio.run(_round_trip(port, key))
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=10)
    assert "Traceback" not in output, output


def _wait_for_port(port: int, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stdout.read() if server.stdout else "daphne exited"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("daphne did not start")


async def _round_trip(port: int, key: str) -> None:
    auth = base64.urlsafe_b64encode(json.dumps({"x-api-key": key, "host": f"127.0.0.1:{port}"}).encode())
    subprotocols = ["aws-appsync-event-ws", "header-" + auth.decode().rstrip("=")]
    async with connect(f"ws://127.0.0.1:{port}/event/realtime", subprotocols=subprotocols) as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        assert json.loads(await ws.recv()) == {"type": "ka"}
        await ws.send(json.dumps({"type": "subscribe", "id": "s1", "channel": "/default/*"}))
        assert json.loads(await ws.recv()) == {"type": "subscribe_success", "id": "s1"}

        body = json.dumps({"channel": "/default/news", "events": ['{"hello":"world"}']}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/event",
            data=body,
            headers={"content-type": "application/json", "x-api-key": key},
        )
        response = await asyncio.to_thread(urllib.request.urlopen, request, timeout=10)
        result = json.loads(response.read())
        assert [entry["index"] for entry in result["successful"]] == [0] and result["failed"] == []
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {
            "type": "data",
            "id": "s1",
            "event": '{"hello":"world"}',
        }
