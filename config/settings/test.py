"""Settings for the test suite: the embedded default, made fast."""

from .base import *  # noqa: F403

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["*"]

# Tests that need the scoring worker start it themselves (tests/quiz/conftest.py),
# so no other test shares the database with a polling worker.
QUIZ = {"WORKER": "external"}
# Likewise the relay: tests that need one start it (tests/realtime/test_relay.py, tests/quiz/conftest.py).
# Rate limits count in the process: tests that share them through Redis say so.
REALTIME = {**REALTIME, "RELAY": "external", "LIMITS_REDIS_URL": None}  # noqa: F405
