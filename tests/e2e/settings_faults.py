"""Server settings for the fault-injection tests (``test_faults.py``).

``DJANGO_SETTINGS_MODULE=tests.e2e.settings_faults`` (processes run from the repository root).
Everything else comes from the environment, as with ``config.settings.base``:

- a small connect budget, so a storm of a few hundred connections overruns it;
- an external scoring worker (``manage.py quiz_worker``) with small batches, so a worker killed
  while it scores dies inside a batch's transaction.
"""

from config.settings.base import *  # noqa: F403
from config.settings.base import QUIZ as _BASE_QUIZ
from config.settings.base import REALTIME as _BASE_REALTIME

# New WebSocket connections accepted per second by one process (bursts up to as many).
CONNECT_RATE = 50

REALTIME = {**_BASE_REALTIME, "CONNECT_RATE": f"{CONNECT_RATE}/s"}

# Answers scored per transaction by the worker.
WORKER_BATCH = 50

QUIZ = {**_BASE_QUIZ, "WORKER": "external", "WORKER_BATCH": WORKER_BATCH}
