"""Measurement tools run from a checkout of this repository; not part of the installable package.

- ``python -m bench.fanout``: the side-by-side WebSocket fan-out benchmark.
- ``python -m bench.soak``: many subscribers under steady publishing for minutes; memory and losses.

Both start the servers under test as subprocesses from the repository root (``manage.py``,
``config.asgi``). Results and how to read them: docs/BENCHMARKS.md.
"""
