"""Settings for the test suite: the embedded default, made fast."""

import atexit
import os
import shutil
import tempfile
from urllib.parse import urlsplit, urlunsplit


def _worker_redis_url(url: str, worker: str) -> str:
    """The Redis database of one test worker: the URL's database number minus the worker's index.

    Workers running side by side (``pytest -n 2``) each get their own database, as pytest-django
    gives each its own test database; base.py and the tests that start processes read ``REDIS_URL``,
    so the environment itself is changed before base.py reads it.
    """
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0) - int(worker.removeprefix("gw"))
    if database < 0:
        raise ValueError(f"REDIS_URL {url} leaves no database for test worker {worker}")
    return urlunsplit(parts._replace(path=f"/{database}"))


if os.environ.get("REDIS_URL", "").startswith("redis://") and os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["REDIS_URL"] = _worker_redis_url(os.environ["REDIS_URL"], os.environ["PYTEST_XDIST_WORKER"])

from .base import *  # noqa: E402, F403

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["*"]

# Tests that need the scoring worker start it themselves (tests/quiz/conftest.py),
# so no other test shares the database with a polling worker.
QUIZ = {"WORKER": "external"}
# Likewise the relay: tests that need one start it (tests/realtime/test_relay.py, tests/quiz/conftest.py).
# Rate limits count in the process: tests that share them through Redis say so.
REALTIME = {**REALTIME, "RELAY": "external", "LIMITS_REDIS_URL": None}  # noqa: F405

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, as the embedded default keeps its data, not Django's in-memory test database:
    # in memory, SQLite's shared cache locks whole tables, and a read that meets another
    # thread's open write (the scoring worker's, a group commit's) fails at once with "database
    # table is locked" instead of waiting as WAL readers do. One file per test process (each
    # xdist worker adds its own suffix) in a directory of its own, removed with the WAL's files
    # when the process ends.
    _test_database_dir = tempfile.mkdtemp(prefix="realtime-test-")
    atexit.register(shutil.rmtree, _test_database_dir, ignore_errors=True)
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(_test_database_dir, "db.sqlite3")}  # noqa: F405
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":  # noqa: F405
    # The same backend, flushing with DELETE between transactional tests (see the module).
    DATABASES["default"]["ENGINE"] = "tests.postgresql_delete"  # noqa: F405
